// The storage component S (src/storage/worker.ts). This entry touches no shared memory and takes no lock;
// it runs in the S worker thread the host started, and reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs').startWorker('storage', 'src/storage/worker.ts');
