// Entry of the M worker: views over the shared buffers, the kernel environment, then M's loop.
// main() runs once, on the M worker's own thread (workers/memory.cjs); it takes no lock and touches
// shared memory only through memoryMain (server.ts).
import { workerEnv } from '../kernel/env.ts';
import { ST_MEMORY } from '../kernel/layout.ts';
import { hostPort, type WorkerMsg } from '../kernel/workerdata.ts';
import { memoryMain } from './server.ts';

export function main(): void {
  const port = hostPort();
  const { init, env } = workerEnv((c) => c.memory, 'memory', ST_MEMORY);
  const post = (m: WorkerMsg) => port.postMessage(m);
  memoryMain(env, init.config.memoryBytes, () => post({ type: 'online', who: 'memory' }));
}
