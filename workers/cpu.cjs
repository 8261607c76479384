// A CPU of the processor component, as its idle context (src/processor/cpu.ts): brings the CPU up, then
// owns it whenever no task does. This entry touches no shared memory and takes no lock; it runs in the
// worker thread the host started for that CPU, and reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs').startWorker('cpu', 'src/processor/cpu.ts');
