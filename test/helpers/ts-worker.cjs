// Worker entry of the worker-thread tests and benchmarks (test/sync.test.ts, test/fabric.test.ts,
// test/*.bench.ts): register tsx in this thread exactly as the machine's own workers do
// (workers/tsx-boot.cjs), then run `main()` of the TypeScript module named by workerData.module (a path
// from the repository root). Code measured through it is compiled like the CPU, M and S workers' code,
// not through vitest's module transform.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
require('../../workers/tsx-boot.cjs')
  .importTs(workerData.module)
  .then((m) => m.main())
  .catch((e) => {
    parentPort.postMessage({ type: 'error', message: String((e && e.stack) || e) });
    process.exit(1);
  });
