// Kernel locks over shared Int32 words.
//
// Every lock wait services IPIs (env.irq) — Linux's spin_lock does not disable interrupts, and a CPU
// that spins without answering a TLB-shootdown IPI deadlocks against a lock holder that is waiting for
// that ack. On 2 host cores we must never spin long: after a short poll the waiter sleeps on the lock
// word with a short timeout (to keep answering IPIs), futex style.
//
// It owns no lock word: the caller passes the word (its guard is declared in layout.ts) and the id the
// watchdog prints. The only words it writes itself are the calling CPU's own kCpuLockWait/kCpuLockKind
// and kCpuLockLastTaken/kCpuLockLastTakenKind (owner, Atomics.store; skipped when env.cpu < 0). Callers
// pass their own context's Env and call on their own thread. No lock is recursive and no unlock checks
// its owner: only the holder may call spinUnlock, bitUnlock, upRead or upWrite.
import type { Env } from './env.ts';
import { kCpuLockLastTaken, kCpuLockLastTakenKind, kCpuLockKind, kCpuLockWait } from './layout.ts';

const kSpinPolls = 64;
const kSleepMs = 0.2;

export const LOCK_KIND = {
  spinlock: 1,
  pcache: 2,
  mmap_sem_read: 3,
  mmap_sem_write: 4,
  fabric: 5,
  csd: 6,
  join: 7,
  barrier: 8,
  evict: 9,
  futex: 10,
} as const;

function noteWait(env: Env, id: number, kind: number): void {
  if (env.cpu < 0) return;
  env.sh.cpu.store(env.ctx, kCpuLockWait, id + 1);
  env.sh.cpu.store(env.ctx, kCpuLockKind, kind);
}
function clearWait(env: Env): void {
  if (env.cpu < 0) return;
  env.sh.cpu.store(env.ctx, kCpuLockWait, 0);
}

function noteHeld(env: Env, id: number, kind: number): void {
  if (env.cpu < 0) return;
  env.sh.cpu.store(env.ctx, kCpuLockLastTaken, id + 1);
  env.sh.cpu.store(env.ctx, kCpuLockLastTakenKind, kind);
}

/** spin_trylock: 0 = unlocked, 1 = locked, 2 = locked with sleepers. */
export function spinTrylock(a: Int32Array, i: number): boolean {
  return Atomics.compareExchange(a, i, 0, 1) === 0;
}

/** spin_lock (futex-style mutex, Drepper's "mutex2"), servicing IPIs while waiting. */
export function spinLock(env: Env, a: Int32Array, i: number, id = i): void {
  let c = Atomics.compareExchange(a, i, 0, 1);
  if (c === 0) {
    noteHeld(env, id, LOCK_KIND.spinlock);
    return;
  }
  noteWait(env, id, LOCK_KIND.spinlock);
  for (let n = 0; n < kSpinPolls; n++) {
    if ((n & 15) === 0) env.irq();
    if (Atomics.load(a, i) === 0 && Atomics.compareExchange(a, i, 0, 1) === 0) {
      clearWait(env);
      noteHeld(env, id, LOCK_KIND.spinlock);
      return;
    }
  }
  if (c !== 2) c = Atomics.exchange(a, i, 2);
  while (c !== 0) {
    env.irq();
    env.wait(a, i, 2, kSleepMs, 'wait:spinlock');
    c = Atomics.exchange(a, i, 2);
  }
  clearWait(env);
  noteHeld(env, id, LOCK_KIND.spinlock);
}

export function spinUnlock(a: Int32Array, i: number): void {
  if (Atomics.exchange(a, i, 0) === 2) Atomics.notify(a, i, 1);
}

// ---- bit locks (PC_locked in pcache_meta.bits) ----

export function bitTrylock(a: Int32Array, i: number, bit: number): boolean {
  return (Atomics.or(a, i, bit) & bit) === 0;
}

export function bitLock(env: Env, a: Int32Array, i: number, bit: number, id: number): void {
  if (bitTrylock(a, i, bit)) {
    noteHeld(env, id, LOCK_KIND.pcache);
    return;
  }
  noteWait(env, id, LOCK_KIND.pcache);
  let n = 0;
  for (;;) {
    if ((n++ & 15) === 0) env.irq();
    const v = Atomics.load(a, i);
    if ((v & bit) === 0) {
      if (bitTrylock(a, i, bit)) {
        clearWait(env);
        noteHeld(env, id, LOCK_KIND.pcache);
        return;
      }
      continue;
    }
    if (n > kSpinPolls) env.wait(a, i, v, kSleepMs, 'wait:pcache_lock');
  }
}

export function bitUnlock(a: Int32Array, i: number, bit: number): void {
  Atomics.and(a, i, ~bit);
  Atomics.notify(a, i);
}

// ---- rw semaphore (mmap_sem): bit 30 writer, bit 29 writer waiting, low bits reader count ----
import { RWSEM_READER_MASK, RWSEM_WRITER, RWSEM_WRITER_WAITING } from './layout.ts';

/** down_read_trylock: succeeds unless a writer holds the lock (ignores waiting writers, so a
 *  reader may nest a trylock inside its own read section without deadlocking). */
export function downReadTrylock(a: Int32Array, i: number): boolean {
  for (;;) {
    const v = Atomics.load(a, i);
    if (v & RWSEM_WRITER) return false;
    if (Atomics.compareExchange(a, i, v, v + 1) === v) return true;
  }
}

export function downRead(env: Env, a: Int32Array, i: number, id: number): void {
  let n = 0;
  for (;;) {
    const v = Atomics.load(a, i);
    if ((v & (RWSEM_WRITER | RWSEM_WRITER_WAITING)) === 0) {
      if (Atomics.compareExchange(a, i, v, v + 1) === v) {
        if (n) clearWait(env);
        return;
      }
      continue;
    }
    if (n++ === 0) noteWait(env, id, LOCK_KIND.mmap_sem_read);
    env.irq();
    if (n > kSpinPolls) env.wait(a, i, v, kSleepMs, 'wait:mmap_sem_read');
  }
}

export function upRead(a: Int32Array, i: number): void {
  const v = Atomics.sub(a, i, 1);
  if (((v - 1) & RWSEM_READER_MASK) === 0) Atomics.notify(a, i);
}

export function downWrite(env: Env, a: Int32Array, i: number, id: number): void {
  let n = 0;
  for (;;) {
    const v = Atomics.load(a, i);
    if ((v & (RWSEM_WRITER | RWSEM_READER_MASK)) === 0) {
      if (Atomics.compareExchange(a, i, v, RWSEM_WRITER) === v) {
        if (n) clearWait(env);
        return;
      }
      continue;
    }
    if ((v & RWSEM_WRITER_WAITING) === 0) Atomics.or(a, i, RWSEM_WRITER_WAITING);
    if (n++ === 0) noteWait(env, id, LOCK_KIND.mmap_sem_write);
    env.irq();
    if (n > kSpinPolls) env.wait(a, i, Atomics.load(a, i), kSleepMs, 'wait:mmap_sem_write');
  }
}

export function upWrite(a: Int32Array, i: number): void {
  Atomics.store(a, i, 0);
  Atomics.notify(a, i);
}

/** Wait (servicing IPIs) until `done()` holds, sleeping on a[i] changing. */
export function waitUntil(
  env: Env,
  a: Int32Array,
  i: number,
  done: () => boolean,
  id = 0,
  kind: number = LOCK_KIND.join,
): void {
  if (done()) return;
  noteWait(env, id, kind);
  let n = 0;
  while (!done()) {
    env.irq();
    const v = Atomics.load(a, i);
    if (done()) break;
    if (n++ > kSpinPolls) env.wait(a, i, v, 1, 'wait:until');
  }
  clearWait(env);
}
