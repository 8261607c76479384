// Entry of the M worker: views over the shared buffers, the kernel environment, then M's loop.
import { workerData } from 'node:worker_threads';
import { Env } from '../kernel/env.ts';
import { hostPort, type WorkerInit, type WorkerMsg } from '../kernel/workerdata.ts';
import { Shared } from '../kernel/layout.ts';
import { memoryMain } from './server.ts';

export function main(): void {
  const port = hostPort();
  const init = workerData as WorkerInit;
  const sh = new Shared(init.bufs);
  const env = new Env(sh, {
    ctx: sh.geo.ctx.memory,
    cpu: -1,
    name: 'memory',
    bootEpochMs: init.bootEpochMs,
    config: init.config,
  });
  const post = (m: WorkerMsg) => port.postMessage(m);
  memoryMain(env, init.config.memoryBytes, () => post({ type: 'online', who: 'memory' }));
}
