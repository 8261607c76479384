// Shared by every worker entry: register tsx in this worker thread, then import a TypeScript module
// (importTs), or import a component's module and run its main() (startWorker).
// (On Node 20, `execArgv: ['--import', 'tsx']` does not reach worker threads' .ts files, and
// require('tsx/esm/api') fails in this tsx; a dynamic import of the ESM API works.) Worker-local state
// only (the per-thread registration promise): no shared memory, no lock; callers hold nothing.
'use strict';
const path = require('node:path');
const { pathToFileURL } = require('node:url');

let registered;
async function importTs(rel) {
  if (!registered) {
    registered = import('tsx/esm/api').then((api) => api.register());
  }
  await registered;
  return import(pathToFileURL(path.join(__dirname, '..', rel)).href);
}

/** A component's worker entry: import its module and run main(); a failure reaches the host as 'fatal'. */
function startWorker(who, rel) {
  importTs(rel)
    .then((m) => m.main())
    .catch((e) => {
      require('node:worker_threads').parentPort.postMessage({
        type: 'fatal',
        who,
        message: String((e && e.stack) || e),
      });
      process.exit(1);
    });
}
module.exports = { importTs, startWorker };
