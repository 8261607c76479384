// pthread.h over the kernel's clone and futex, glibc-style (nptl):
//   pthread_t         the VA of a struct pthread that pthread_create mallocs: its PD_TID word is the
//                     clone's CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID word, which the kernel sets to
//                     the tid and clears (with a FUTEX_WAKE) when the thread exits;
//   pthread_join      FUTEX_WAIT on PD_TID until it is 0 (glibc's lll_wait_tid), then the exit value
//                     from the kernel's join (splitkern's thread entries return their value to the
//                     kernel, not into struct pthread as glibc's start_thread stores it), then free;
//   pthread_mutex_t   one u32, Drepper's "mutex2" (glibc lll_lock): 0 unlocked, 1 locked, 2 locked
//                     with waiters; lock by cmpxchg 0 -> 1, else mark 2 and FUTEX_WAIT while it is 2;
//                     unlock by exchanging in 0, and on 2 FUTEX_WAKE one;
//   pthread_cond_t    one u32 sequence counter (the pre-2.25 glibc / musl idea): a waiter reads it
//                     under the mutex, unlocks, and FUTEX_WAITs while it is unchanged; signal and
//                     broadcast bump it and wake one or all. The waiter re-locks with state 2 (as
//                     glibc's condvar does) so a wake-up meant for others is not lost at unlock.
// All futex calls are FUTEX_PRIVATE. No JS state: every word lives in emulated memory, changed only by
// cas32/xadd32 or by the kernel. Callers hold nothing but the mutexes the pthread API says they hold.
import {
  EAGAIN,
  EBUSY,
  EDEADLK,
  EINVAL,
  EPERM,
  ETIMEDOUT,
  FUTEX_WAIT_PRIVATE,
  FUTEX_WAKE_ALL,
  FUTEX_WAKE_PRIVATE,
} from '../../uapi/abi.ts';
import { Stdio } from './stdio.ts';

// struct pthread (our part of it)
export const PD_TID = 0; //   u32: the kernel's tid while the thread lives, 0 once it has exited
export const PD_KTID = 4; //  u32: the tid, kept for the join after PD_TID is cleared
export const PTHREAD_SIZE = 16;
/** sizeof(pthread_mutex_t) and sizeof(pthread_cond_t) here: one aligned u32 each; zero is the initializer */
export const PTHREAD_MUTEX_SIZE = 4;
export const PTHREAD_COND_SIZE = 4;

export class Pthread extends Stdio {
  // ================================================================================================
  // threads
  // ================================================================================================

  /** pthread_create: starts the program's thread entry `entry` with arg; returns a pthread_t (> 0) or -errno. */
  pthreadCreate(entry: string, arg: number): number {
    const pd = this.calloc(1, PTHREAD_SIZE);
    if (pd === 0) return -EAGAIN; // as glibc when it cannot allocate the thread
    const tid = this.sys.clone(entry, arg, pd + PD_TID);
    if (tid < 0) {
      this.free(pd);
      return tid;
    }
    this.mmu.store32(pd + PD_KTID, tid);
    return pd;
  }

  /** The kernel tid of a pthread_t (pthread_gettid_np). */
  pthreadTid(pt: number): number {
    return this.mmu.load32(pt + PD_KTID);
  }

  /** pthread_join: the thread's exit value, or -errno. Frees the pthread_t. */
  pthreadJoin(pt: number): number {
    const m = this.mmu;
    const ktid = m.load32(pt + PD_KTID);
    if (ktid === 0) return -EINVAL;
    if (ktid === this.u.tid) return -EDEADLK;
    // lll_wait_tid: the kernel clears PD_TID and wakes us when the thread exits
    for (let tid = m.load32(pt + PD_TID); tid !== 0; tid = m.load32(pt + PD_TID)) {
      const r = this.sys.futex(pt + PD_TID, FUTEX_WAIT_PRIVATE, tid);
      if (r < 0 && r !== -EAGAIN) return r; // EAGAIN: it changed before we slept
    }
    const ret = this.sys.join(ktid);
    this.free(pt);
    return ret;
  }

  // ================================================================================================
  // mutexes (lll_lock)
  // ================================================================================================

  /** pthread_mutex_lock */
  pthreadMutexLock(mutex: number): number {
    const m = this.mmu;
    let c = m.cas32(mutex, 0, 1);
    if (c === 0) return 0;
    // __lll_lock_wait: mark it contended, sleep while it stays contended
    if (c !== 2) c = this.xchg32(mutex, 2);
    while (c !== 0) {
      this.sys.futex(mutex, FUTEX_WAIT_PRIVATE, 2);
      c = this.xchg32(mutex, 2);
    }
    return 0;
  }

  /** pthread_mutex_trylock: 0, or EBUSY if it is held */
  pthreadMutexTrylock(mutex: number): number {
    return this.mmu.cas32(mutex, 0, 1) === 0 ? 0 : EBUSY;
  }

  /** pthread_mutex_unlock (the caller holds it) */
  pthreadMutexUnlock(mutex: number): number {
    // lll_unlock: exchange in 0, and wake one sleeper if it was marked contended
    const old = this.xchg32(mutex, 0);
    if (old === 0) return EPERM; // it was not locked (glibc's error-checking mutexes say EPERM)
    if (old === 2) this.sys.futex(mutex, FUTEX_WAKE_PRIVATE, 1);
    return 0;
  }

  /** Lock with the contended mark set: after a condvar wake-up, others may be waiting (glibc does so). */
  private mutexLockContended(mutex: number): void {
    while (this.xchg32(mutex, 2) !== 0) this.sys.futex(mutex, FUTEX_WAIT_PRIVATE, 2);
  }

  /** xchg on an aligned u32 (lock xchg), by a cmpxchg loop; returns the old value. */
  private xchg32(va: number, v: number): number {
    const m = this.mmu;
    for (;;) {
      const old = m.load32(va);
      if (m.cas32(va, old, v) === old) return old;
    }
  }

  // ================================================================================================
  // condition variables
  // ================================================================================================

  /**
   * pthread_cond_wait / pthread_cond_timedwait (timeoutMs relative; negative = none). The caller holds
   * `mutex`, and holds it again on return. 0, or ETIMEDOUT. Wake-ups may be spurious, as POSIX allows:
   * callers re-check their predicate.
   */
  pthreadCondWait(cond: number, mutex: number, timeoutMs = -1): number {
    const m = this.mmu;
    const seq = m.load32(cond);
    this.pthreadMutexUnlock(mutex);
    const r = this.sys.futex(cond, FUTEX_WAIT_PRIVATE, seq, timeoutMs);
    this.mutexLockContended(mutex);
    return r === -ETIMEDOUT ? ETIMEDOUT : 0;
  }

  /** pthread_cond_signal: wake one waiter */
  pthreadCondSignal(cond: number): number {
    this.mmu.xadd32(cond, 1);
    this.sys.futex(cond, FUTEX_WAKE_PRIVATE, 1);
    return 0;
  }

  /** pthread_cond_broadcast: wake every waiter */
  pthreadCondBroadcast(cond: number): number {
    this.mmu.xadd32(cond, 1);
    this.sys.futex(cond, FUTEX_WAKE_PRIVATE, FUTEX_WAKE_ALL);
    return 0;
  }
}
