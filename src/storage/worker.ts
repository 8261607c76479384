// Entry of the S worker: views over the shared buffers, the kernel environment, then S's loop.
import { workerData } from 'node:worker_threads';
import { Env } from '../kernel/env.ts';
import { hostPort, type WorkerInit, type WorkerMsg } from '../kernel/workerdata.ts';
import { Shared } from '../kernel/layout.ts';
import { storageMain } from './server.ts';

export function main(): void {
  const port = hostPort();
  const init = workerData as WorkerInit;
  const sh = new Shared(init.bufs);
  const env = new Env(sh, {
    ctx: sh.geo.ctx.storage,
    cpu: -1,
    name: 'storage',
    bootEpochMs: init.bootEpochMs,
    config: init.config,
  });
  storageMain(env, init, (m: WorkerMsg) => port.postMessage(m));
}
