// A task of the processor component: one piscina worker runs one user thread at a time
// (src/processor/task.ts), on whatever CPU the scheduler gives it. This entry touches no shared memory
// and takes no lock itself; piscina hands it one thread at a time.
'use strict';
const { workerData } = require('node:worker_threads');
const { importTs } = require('./tsx-boot.cjs');

// The task learns which programs it can run from the registry handed to it here: the kernel imports
// no user program.
const task = Promise.all([importTs('src/processor/task.ts'), importTs('src/user/programs/index.ts')]).then(
  ([m, user]) => new m.Task(workerData, user.programs),
);
// Keep a failed start from becoming an unhandled rejection before the first thread reports it.
task.catch((e) => {
  process.stderr.write(`task worker start failed: ${(e && e.stack) || e}\n`);
});

module.exports = async function runThread(thread) {
  const t = await task;
  // the host warms each worker it starts with at boot: the task is ready to run threads
  if (thread === 'warm-up') return 'ready';
  return t.run(thread);
};
