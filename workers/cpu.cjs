// A CPU of the processor component: one piscina worker. Brings the CPU up when the worker starts;
// each task is one user thread (src/processor/cpu.ts). This entry touches no shared memory and takes no
// lock itself; it runs in the CPU's worker thread, and piscina hands it one task at a time.
'use strict';
const { workerData } = require('node:worker_threads');
const { importTs } = require('./tsx-boot.cjs');

// The CPU learns which programs it can run from the registry handed to it here: the kernel imports no
// user program.
const cpu = Promise.all([importTs('src/processor/cpu.ts'), importTs('src/user/programs/index.ts')]).then(
  ([m, user]) => new m.Cpu(workerData, user.programs),
);
// Keep a failed bring-up from becoming an unhandled rejection before the first task reports it.
cpu.catch((e) => {
  process.stderr.write(`cpu bring-up failed: ${(e && e.stack) || e}\n`);
});

module.exports = async function runTask(task) {
  return (await cpu).run(task);
};
