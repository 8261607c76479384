// Worker entry of test/fabric.bench.ts: register tsx in this thread (workers/tsx-boot.cjs), then run
// test/helpers/fabric-bench-worker.ts (role and shared buffers in workerData).
'use strict';
const { parentPort } = require('node:worker_threads');
require('../../workers/tsx-boot.cjs').importTs('test/helpers/fabric-bench-worker.ts').then((m) => m.main()).catch((e) => {
  parentPort.postMessage({ type: 'error', message: String((e && e.stack) || e) });
  process.exit(1);
});
