// The memory component M (src/memory/worker.ts). This entry touches no shared memory and takes no lock;
// it runs in the M worker thread the host started, and reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs').startWorker('memory', 'src/memory/worker.ts');
