// The storage component S (src/storage/worker.ts). This entry touches no shared memory and takes no lock;
// it runs in the S worker thread the host started, and reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs')
  .importTs('src/storage/worker.ts')
  .then((m) => m.main())
  .catch((e) => {
    require('node:worker_threads').parentPort.postMessage({
      type: 'fatal',
      who: 'storage',
      message: String((e && e.stack) || e),
    });
    process.exit(1);
  });
