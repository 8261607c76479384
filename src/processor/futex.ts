// Fast user-space mutexes (kernel/futex.c): FUTEX_WAIT and FUTEX_WAKE, private and shared alike keyed
// by (mm, uaddr) since no two mms share memory yet. futex_hash() picks a bucket of kFutexHashSize;
// its hb->lock (kFhbLock, a leaf spinlock) guards the bucket's list (kFhbHead) and, for every task
// queued there, its futex_q words in the thread table (kThreadFutexNext/Mm/Timed, threadF's
// kThreadFFutexAddr).
// A waiter reads the user word under hb->lock without faulting (get_futex_value_locked); if the page
// is not present it drops the lock, faults it in and retries, as Linux does. A waker unqueues under
// hb->lock (kThreadFutexMm becomes 0: q->lock_ptr = NULL) and notifies that word after dropping it
// (wake_up_q); the waiter sleeps on it (off its CPU: hang.ts sleepOn), and was woken iff a waker unqueued it, so a
// late notify is only a spurious wake-up of a later wait, which re-checks. An untimed waiter counts
// itself in kMmSleepers under the bucket lock, and whoever unqueues it uncounts it there: the hang
// check (hang.ts) sees it as asleep exactly while it is queued. Callers hold no lock; the calling CPU runs a thread of
// the mm in k.mmSlot.
import {
  kFhbHead,
  kFhbLock,
  kFutexHashSize,
  kMaxThreads,
  kMmKilled,
  kMmSleepers,
  kThreadFFutexAddr,
  kThreadFutexMm,
  kThreadFutexNext,
  kThreadFutexTimed,
  kThreadSleep,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { LOCK_KIND, spinLock, spinUnlock } from '../kernel/sync.ts';
import { EAGAIN, EFAULT, EINVAL, ETIMEDOUT } from '../uapi/abi.ts';
import type { Kern } from './kern.ts';
import { checkHung, cpuSleeps, cpuWakes, sleepOn, SLEEP_FUTEX, SLEEP_NONE } from './hang.ts';

/** How the futex code reaches user memory: the CPU's MMU, as get_user and the fault path see it. */
export interface FutexUser {
  /** get_futex_value_locked: the u32 at va if its page is mapped now, else -1 (never faults) */
  loadWordNoFault(va: number): number;
  /** fault_in_user_readable (get_user): bring the page in; false if the address is bad (-EFAULT) */
  faultInReadable(va: number): boolean;
}

/** futex_hash(key): the bucket of (mm, uaddr). Whole addresses stay numbers: no 32-bit operators. */
export function futexHash(mmSlot: number, uaddr: number): number {
  return (Math.floor(uaddr / 4) + mmSlot * 7919) % kFutexHashSize;
}

function hbLock(k: Kern, hb: number): void {
  spinLock(k.env, k.sh.futexHb.a, k.sh.futexHb.idx(hb, kFhbLock), hb);
}
function hbUnlock(k: Kern, hb: number): void {
  spinUnlock(k.sh.futexHb.a, k.sh.futexHb.idx(hb, kFhbLock));
}

/** __queue_me: append tid at the bucket's tail (FIFO, like the plist at one priority). Under hb->lock. */
function queueMe(k: Kern, hb: number, tid: number, uaddr: number, timed: boolean): void {
  const sh = k.sh;
  sh.threads.store(tid, kThreadFutexNext, 0);
  sh.threadF.set(tid, kThreadFFutexAddr, uaddr);
  sh.threads.store(tid, kThreadFutexTimed, timed ? 1 : 0);
  sh.threads.store(tid, kThreadFutexMm, k.mmSlot + 1);
  let cur = sh.futexHb.load(hb, kFhbHead);
  if (cur === 0) {
    sh.futexHb.store(hb, kFhbHead, tid);
    return;
  }
  for (let n = 0; ; n++) {
    if (n > kMaxThreads) throw new Error(`futex: hash bucket ${hb} loops`);
    const next = sh.threads.load(cur, kThreadFutexNext);
    if (next === 0) break;
    cur = next;
  }
  sh.threads.store(cur, kThreadFutexNext, tid);
}

/** __unqueue_futex: unlink tid from its bucket; false if it was not queued. Under hb->lock. */
function unqueue(k: Kern, hb: number, tid: number): boolean {
  const sh = k.sh;
  let prev = 0;
  for (let cur = sh.futexHb.load(hb, kFhbHead), n = 0; cur !== 0; n++) {
    if (n > kMaxThreads) throw new Error(`futex: hash bucket ${hb} loops`);
    const next = sh.threads.load(cur, kThreadFutexNext);
    if (cur === tid) {
      if (prev === 0) sh.futexHb.store(hb, kFhbHead, next);
      else sh.threads.store(prev, kThreadFutexNext, next);
      sh.threads.store(tid, kThreadFutexNext, 0);
      sh.threads.store(tid, kThreadFutexMm, 0);
      if (sh.threads.load(tid, kThreadFutexTimed) === 0) sh.mm.sub(k.mmSlot, kMmSleepers, 1);
      return true;
    }
    prev = cur;
    cur = next;
  }
  return false;
}

/**
 * futex_wait(uaddr, val, timeout): sleep if *uaddr == val, until a FUTEX_WAKE on uaddr (0), the
 * timeout (-ETIMEDOUT) or a fatal signal of the process (the caller's interrupt point unwinds).
 * -EAGAIN (EWOULDBLOCK) if the word differs, -EFAULT for a bad address, -EINVAL if misaligned.
 */
export function futexWait(k: Kern, user: FutexUser, uaddr: number, val: number, timeoutMs: number): number {
  const sh = k.sh;
  const tid = k.tid;
  if (uaddr % 4 !== 0 || uaddr < 0) return -EINVAL;
  const hb = futexHash(k.mmSlot, uaddr);
  const timed = timeoutMs >= 0;
  for (;;) {
    hbLock(k, hb);
    const uval = user.loadWordNoFault(uaddr);
    if (uval < 0) {
      hbUnlock(k, hb);
      if (!user.faultInReadable(uaddr)) return -EFAULT;
      continue;
    }
    if (uval !== val >>> 0) {
      hbUnlock(k, hb);
      return -EAGAIN;
    }
    queueMe(k, hb, tid, uaddr, timed);
    sh.threads.store(tid, kThreadSleep, SLEEP_FUTEX);
    const sleepers = timed ? 0 : sh.mm.add(k.mmSlot, kMmSleepers, 1) + 1;
    hbUnlock(k, hb);
    if (!timed) checkHung(k, sleepers);
    break;
  }
  k.env.stat(S.futex_wait);
  k.env.sched('futex:queued');
  const deadline = timed ? k.env.nowMs() + timeoutMs : Infinity;
  const killed = (): boolean => sh.mm.load(k.mmSlot, kMmKilled) !== 0;
  const queued = (): boolean => sh.threads.load(tid, kThreadFutexMm) !== 0;
  let late = false;
  cpuSleeps(k);
  try {
    sleepOn(
      k,
      sh.threads.a,
      sh.threads.idx(tid, kThreadFutexMm),
      () => {
        if (!queued() || killed()) return true;
        if (timed && k.env.nowMs() >= deadline) late = true;
        return late;
      },
      hb, // what the watchdog's CPU dump names: "waiting for futex <hash bucket>" (an address is not an Int32)
      LOCK_KIND.futex,
    );
  } finally {
    cpuWakes(k);
  }
  sh.threads.store(tid, kThreadSleep, SLEEP_NONE);
  if (!queued()) return 0;
  // unqueue_me: timed out or killed. A waker that unqueued us first wins: then this was a wake-up.
  hbLock(k, hb);
  const wasQueued = unqueue(k, hb, tid);
  hbUnlock(k, hb);
  if (!wasQueued) return 0;
  if (!late) return 0; // killed: the syscall's interrupt point unwinds the thread
  k.env.stat(S.futex_timedout);
  return -ETIMEDOUT;
}

/** futex_wake(uaddr, nr): wake up to nr waiters on (mm, uaddr), in queue order; returns how many. */
export function futexWake(k: Kern, uaddr: number, nr: number): number {
  const sh = k.sh;
  if (uaddr % 4 !== 0 || uaddr < 0) return -EINVAL;
  if (nr <= 0) return 0;
  const hb = futexHash(k.mmSlot, uaddr);
  const woken: number[] = [];
  hbLock(k, hb);
  for (let cur = sh.futexHb.load(hb, kFhbHead), n = 0; cur !== 0 && woken.length < nr; n++) {
    if (n > kMaxThreads) throw new Error(`futex: hash bucket ${hb} loops`);
    const next = sh.threads.load(cur, kThreadFutexNext);
    if (sh.threads.load(cur, kThreadFutexMm) === k.mmSlot + 1 && sh.threadF.get(cur, kThreadFFutexAddr) === uaddr) {
      unqueue(k, hb, cur);
      woken.push(cur);
    }
    cur = next;
  }
  hbUnlock(k, hb);
  k.env.sched('futex:wake');
  // wake_up_q: after the lock, as Linux wakes the tasks it collected
  for (const t of woken) sh.threads.notify(t, kThreadFutexMm);
  k.env.stat(S.futex_wake, woken.length);
  return woken.length;
}
