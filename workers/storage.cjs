// The storage component S (src/storage/worker.ts).
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
