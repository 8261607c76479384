// kevict_sweepd, a kernel thread of the processor component (src/processor/pcache/sweep.ts). This entry
// touches no shared memory and takes no lock; it runs in the worker thread the host started for it, and
// reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs').startWorker('sweep', 'src/processor/pcache/sweep.ts');
