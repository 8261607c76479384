// The memory component M (src/memory/worker.ts).
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
