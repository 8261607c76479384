// Main-thread side of the worker-thread tests: start a TypeScript module in a worker (through
// ts-worker.cjs), then read its messages in order. A worker error (a message of type 'error', an
// uncaught exception, an unexpected exit) rejects the pending and every later read.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const entry = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ts-worker.cjs');

export interface WorkerErrorMsg {
  type: 'error';
  message: string;
}

export class TestWorker<M extends { type: string }> {
  readonly worker: Worker;
  private readonly queue: M[] = [];
  private readonly waiters: Array<{ resolve: (m: M) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;
  private stopping = false;
  /** resolves with the exit code when the thread ends */
  readonly exited: Promise<number>;

  /** `init.module`: the worker's TypeScript module, a path from the repository root */
  constructor(
    readonly name: string,
    init: { module: string },
  ) {
    this.worker = new Worker(entry, { workerData: init });
    this.worker.on('message', (m: M | WorkerErrorMsg) => {
      if (m.type === 'error') {
        this.fail(new Error(`${name}: ${(m as WorkerErrorMsg).message}`));
        return;
      }
      const w = this.waiters.shift();
      if (w) w.resolve(m as M);
      else this.queue.push(m as M);
    });
    this.worker.on('error', (e: Error) => this.fail(new Error(`${name}: ${e.stack ?? e.message}`)));
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code: number) => {
        if (!this.stopping) this.fail(new Error(`${name}: worker exited (code ${code})`));
        resolve(code);
      });
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  /** the next message, in order */
  next(): Promise<M> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** the next message, which must be of `type` */
  async expect<T extends M['type']>(type: T): Promise<Extract<M, { type: T }>> {
    const m = await this.next();
    if (m.type !== type) throw new Error(`${this.name}: expected a '${type}' message, got ${JSON.stringify(m)}`);
    return m as Extract<M, { type: T }>;
  }

  post(msg: unknown): void {
    this.worker.postMessage(msg);
  }

  /** the worker is expected to end by itself now (no error on a clean exit) */
  expectExit(): void {
    this.stopping = true;
  }

  async terminate(): Promise<void> {
    this.stopping = true;
    await this.worker.terminate();
  }
}
