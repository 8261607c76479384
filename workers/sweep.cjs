// kevict_sweepd, a kernel thread of the processor component (src/processor/pcache/sweep.ts).
'use strict';
require('./tsx-boot.cjs')
  .importTs('src/processor/pcache/sweep.ts')
  .then((m) => m.main())
  .catch((e) => {
    require('node:worker_threads').parentPort.postMessage({
      type: 'fatal',
      who: 'sweep',
      message: String((e && e.stack) || e),
    });
    process.exit(1);
  });
