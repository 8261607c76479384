// The memory component M (src/memory/worker.ts). This entry touches no shared memory and takes no lock;
// it runs in the M worker thread the host started, and reports a failure of main() to the host as 'fatal'.
'use strict';
require('./tsx-boot.cjs')
  .importTs('src/memory/worker.ts')
  .then((m) => m.main())
  .catch((e) => {
    require('node:worker_threads').parentPort.postMessage({
      type: 'fatal',
      who: 'memory',
      message: String((e && e.stack) || e),
    });
    process.exit(1);
  });
