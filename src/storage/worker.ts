// Entry of the S worker: views over the shared buffers, the kernel environment, then S's loop.
// main() runs once, on the S worker's own thread (workers/storage.cjs); it takes no lock and touches
// shared memory only through storageMain (server.ts).
import { workerEnv } from '../kernel/env.ts';
import { ST_STORAGE } from '../kernel/layout.ts';
import { hostPort, type WorkerMsg } from '../kernel/workerdata.ts';
import { storageMain } from './server.ts';

export function main(): void {
  const port = hostPort();
  const { init, env } = workerEnv((c) => c.storage, 'storage', ST_STORAGE);
  storageMain(env, init, (m: WorkerMsg) => port.postMessage(m));
}
