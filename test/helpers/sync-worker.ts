// The two workers of test/sync.test.ts (started through ts-worker.cjs). Each is one CPU context (ctx 0 or
// 1) with its own Env over the same Shared. On a message {mode, iterations, round} it meets the other
// worker at a barrier (so both hammer the lock at the same time), runs the loop, and posts 'done'.
//
// Modes (all counters are PLAIN, non-atomic reads and writes, protected only by the lock under test):
//   spin          spinLock / counter++ / spinUnlock
//   bit           bitLock / counter++ / bitUnlock on one bit of a word whose other bits stay set
//   rwsem-write   downWrite / counter++ / upWrite
//   rwsem-mixed   ctx 0 writes (A = A + 1, a window, B = A, inside flag), ctx 1 reads under downRead and
//                 counts every time it sees A != B or the writer's inside flag (must never happen)
import { parentPort, workerData } from 'node:worker_threads';
import type { MachineConfig } from '../../src/kernel/config.ts';
import { Env } from '../../src/kernel/env.ts';
import { Shared, type SharedBuffers } from '../../src/kernel/layout.ts';
import {
  bitLock,
  bitUnlock,
  downRead,
  downWrite,
  spinLock,
  spinUnlock,
  upRead,
  upWrite,
} from '../../src/kernel/sync.ts';

export type SyncMode = 'spin' | 'bit' | 'rwsem-write' | 'rwsem-mixed';

export interface SyncWorkerInit {
  module: string;
  bufs: SharedBuffers;
  config: MachineConfig;
  ctx: number;
  /** the test's own words (indices W_*) */
  words: SharedArrayBuffer;
}

export interface SyncRun {
  mode: SyncMode;
  iterations: number;
  round: number;
}

export type SyncWorkerMsg =
  { type: 'ready'; ctx: number } | { type: 'done'; ctx: number; mode: SyncMode; mismatches: number; reads: number };

// Word indices in `words`, one 64-byte line apart.
export const W_ARRIVED = 0; // barrier: Atomics.add by each worker per round
export const W_LOCK = 16; // spinlock word
export const W_BITS = 32; // bit-lock word
export const W_SEM = 48; // rw semaphore word
export const W_COUNT = 64; // the plain counter
export const W_A = 80; // rwsem-mixed: A, B and the writer's inside flag
export const W_B = 96;
export const W_INSIDE = 112;
export const W_SCRATCH = 120; // read inside the critical sections to widen them
export const kWords = 128;
export const BIT = 1 << 3;

export function main(): void {
  const init = workerData as SyncWorkerInit;
  const sh = new Shared(init.bufs);
  const env = new Env(sh, {
    ctx: init.ctx,
    cpu: init.ctx,
    name: `cpu${init.ctx}`,
    bootEpochMs: performance.timeOrigin,
    config: init.config,
  });
  const w = new Int32Array(init.words);
  const port = parentPort!;

  port.on('message', (run: SyncRun) => {
    try {
      // barrier: both workers start together
      Atomics.add(w, W_ARRIVED, 1);
      Atomics.notify(w, W_ARRIVED);
      // spin (not sleep) at the barrier: a worker woken from Atomics.wait starts ~0.1 ms late, long enough
      // for the other one to finish an unlocked loop; spinning makes the two loops really overlap
      let spins = 0;
      for (let v = Atomics.load(w, W_ARRIVED); v < 2 * run.round; v = Atomics.load(w, W_ARRIVED)) {
        if (++spins > 1_000_000) Atomics.wait(w, W_ARRIVED, v, 1);
      }
      const r = loop(env, w, run);
      const done: SyncWorkerMsg = { type: 'done', ctx: init.ctx, mode: run.mode, ...r };
      port.postMessage(done);
    } catch (e) {
      port.postMessage({ type: 'error', message: String((e as Error).stack ?? e) });
    }
  });
  const ready: SyncWorkerMsg = { type: 'ready', ctx: init.ctx };
  port.postMessage(ready);
}

/** counter++ as a plain load ... plain store, with a few shared-memory reads in between (the race window) */
function increment(w: Int32Array): void {
  const v = w[W_COUNT]!;
  let x = 0;
  for (let s = 0; s < 16; s++) x += Atomics.load(w, W_SCRATCH);
  w[W_COUNT] = v + 1 + x;
}

function loop(env: Env, w: Int32Array, run: SyncRun): { mismatches: number; reads: number } {
  const n = run.iterations;
  const id = 1000 + env.ctx;
  let mismatches = 0;
  let reads = 0;
  switch (run.mode) {
    case 'spin':
      for (let i = 0; i < n; i++) {
        spinLock(env, w, W_LOCK);
        increment(w);
        spinUnlock(w, W_LOCK);
      }
      break;
    case 'bit':
      for (let i = 0; i < n; i++) {
        bitLock(env, w, W_BITS, BIT, id);
        increment(w);
        bitUnlock(w, W_BITS, BIT);
      }
      break;
    case 'rwsem-write':
      for (let i = 0; i < n; i++) {
        downWrite(env, w, W_SEM, id);
        increment(w);
        upWrite(w, W_SEM);
      }
      break;
    case 'rwsem-mixed':
      if (env.ctx === 0) {
        for (let i = 0; i < n; i++) {
          downWrite(env, w, W_SEM, id);
          w[W_INSIDE] = 1;
          const a = w[W_A]! + 1;
          w[W_A] = a;
          for (let s = 0; s < 20; s++) if (w[W_INSIDE] !== 1) mismatches++; // a window for a reader to slip in
          w[W_B] = a;
          w[W_INSIDE] = 0;
          upWrite(w, W_SEM);
        }
      } else {
        for (let i = 0; i < n; i++) {
          downRead(env, w, W_SEM, id);
          if (w[W_A] !== w[W_B] || w[W_INSIDE] !== 0) mismatches++;
          reads++;
          upRead(w, W_SEM);
        }
      }
      break;
  }
  return { mismatches, reads };
}
