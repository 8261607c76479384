// The hang check: a process whose every live thread sleeps in a wait only another of its threads can
// end (FUTEX_WAIT with no timeout, join, barrier) never runs again. Linux leaves such a process asleep
// for ever (khungtaskd only reports D-state sleeps); splitkern kills it with SIGKILL and names every
// sleeper, so a deadlocked program ends a run with a report (exit 1) instead of hanging it, and the
// soft-lockup watchdog, which a sleeping CPU no longer trips, is left for CPUs stuck in the kernel.
//
// Each sleeper records what it sleeps in (kThreadSleep, with kThreadSleepArg/Gen) and counts itself in
// kMmSleepers before it sleeps; a futex waiter does it under its hash-bucket lock and is uncounted by
// whoever unqueues it (futex.ts), a join or barrier sleeper (sleepUntil) uncounts itself when it wakes. The count
// only triggers the check, from the thread that has just gone to sleep or from a thread leaving the
// mm: it may count a thread that is already waking, and is read apart from kMmUsers. The check itself
// runs in a stopped world, where every other context is at a safe point (holding no lock): there each
// live thread's own state says whether it still sleeps. Locks: none held by callers; stopMachine.
import {
  kBarrierGen,
  kCpuKernelEnterMs,
  kMaxThreads,
  kMmFaultAddr,
  kMmKilled,
  kMmPid,
  kMmSiCode,
  kMmSleepers,
  kMmUsers,
  kThreadFFutexAddr,
  kThreadFutexMm,
  kThreadFutexTimed,
  kThreadPid,
  kThreadSleep,
  kThreadSleepArg,
  kThreadSleepGen,
  kThreadState,
  MM_SI_HUNG,
  THREAD_DEAD,
  THREAD_EXITED,
  THREAD_FREE,
} from '../kernel/layout.ts';
import type { Kern } from './kern.ts';
import { SIGKILL } from './mmu.ts';
import { waitUntil } from '../kernel/sync.ts';
import { safePoint, stopMachine } from './stop.ts';

export const SLEEP_NONE = 0;
export const SLEEP_FUTEX = 1;
export const SLEEP_JOIN = 2;
export const SLEEP_BARRIER = 3;

/** What the hang check says of a process it killed (kMmSiCode MM_SI_HUNG). */
export const HUNG_WHY = 'hung: every live thread sleeps and none is left to wake another';

/**
 * TASK_INTERRUPTIBLE, as the soft-lockup watchdog sees it: it watches kernel time since the CPU last
 * scheduled, and a CPU whose task sleeps has scheduled (kCpuKernelEnterMs -1 until cpuWakes). The
 * CPU's own word; every sleep of a task calls both, whether or not it counts for the hang check.
 */
export function cpuSleeps(k: Kern): void {
  k.sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, -1);
}
export function cpuWakes(k: Kern): void {
  k.sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, Math.floor(k.env.nowMs()));
}

/**
 * Sleep until done(), woken by a notify on a[i]: on a task, off its CPU (the scheduler gives the CPU
 * away and takes one back, maybe another); elsewhere (tests, a Kern without a scheduler) on the CPU,
 * answering IPIs at safe points. `id`/`kind` name the wait for the watchdog's CPU dump.
 */
export function sleepOn(k: Kern, a: Int32Array, i: number, done: () => boolean, id: number, kind: number): void {
  if (k.task) {
    k.task.sleep(a, i, done);
    return;
  }
  waitUntil(
    k.env,
    a,
    i,
    () => {
      safePoint(k.env);
      return done();
    },
    id,
    kind,
  );
}

/**
 * A join or barrier sleep: record what the thread sleeps in (`arg`: the joined tid or the barrier
 * slot; `gen`: the barrier generation it waits to end), count it and check the process, then sleep
 * (sleepOn) until done(), the CPU scheduled for the watchdog meanwhile.
 */
export function sleepUntil(
  k: Kern,
  what: { kind: number; arg: number; gen?: number },
  a: Int32Array,
  i: number,
  done: () => boolean,
  lockKind: number,
): void {
  const sh = k.sh;
  sh.threads.store(k.tid, kThreadSleepArg, what.arg);
  sh.threads.store(k.tid, kThreadSleepGen, what.gen ?? 0);
  sh.threads.store(k.tid, kThreadSleep, what.kind);
  checkHung(k, sh.mm.add(k.mmSlot, kMmSleepers, 1) + 1);
  cpuSleeps(k);
  try {
    sleepOn(k, a, i, done, what.arg, lockKind);
  } finally {
    cpuWakes(k);
    sh.threads.store(k.tid, kThreadSleep, SLEEP_NONE);
    sh.mm.sub(k.mmSlot, kMmSleepers, 1);
  }
}

/** In a stopped world: does thread t still sleep with only its process to wake it? */
function stillAsleep(k: Kern, t: number, exiting: number): string | undefined {
  const sh = k.sh;
  const arg = sh.threads.load(t, kThreadSleepArg);
  switch (sh.threads.load(t, kThreadSleep)) {
    case SLEEP_FUTEX:
      if (sh.threads.load(t, kThreadFutexMm) !== k.mmSlot + 1 || sh.threads.load(t, kThreadFutexTimed) !== 0)
        return undefined; // woken (unqueued), or it has a timeout
      return `tid ${t} in FUTEX_WAIT on 0x${sh.threadF.get(t, kThreadFFutexAddr).toString(16)}`;
    case SLEEP_JOIN:
      // the joined thread is gone, or going: this join returns
      if (arg === exiting || sh.threads.load(arg, kThreadState) === THREAD_EXITED) return undefined;
      return `tid ${t} in join of tid ${arg}`;
    case SLEEP_BARRIER:
      if (sh.barrier.load(arg, kBarrierGen) !== sh.threads.load(t, kThreadSleepGen)) return undefined;
      return `tid ${t} at barrier slot ${arg}`;
    default:
      return undefined;
  }
}

/**
 * Called with the sleeper count the caller's own increment returned (a new sleeper), or by a thread
 * leaving the mm (`exiting` = its tid, kMmUsers already decremented). Kills the process if, in a
 * stopped world, every live thread but `exiting` still sleeps.
 */
export function checkHung(k: Kern, sleepers: number, exiting = 0): void {
  const sh = k.sh;
  const slot = k.mmSlot;
  if (sleepers <= 0 || sleepers < sh.mm.load(slot, kMmUsers)) return;
  const pid = sh.mm.load(slot, kMmPid);
  const who: string[] = [];
  const hung = stopMachine(k.env, k.env.config.sweep, () => {
    if (sh.mm.load(slot, kMmKilled) !== 0) return false;
    for (let t = 1; t < kMaxThreads; t++) {
      if (t === exiting || sh.threads.load(t, kThreadPid) !== pid) continue;
      const st = sh.threads.load(t, kThreadState);
      if (st === THREAD_FREE || st === THREAD_EXITED || st === THREAD_DEAD) continue;
      const what = stillAsleep(k, t, exiting);
      if (what === undefined) return false;
      who.push(what);
    }
    if (who.length === 0 || sh.mm.cas(slot, kMmKilled, 0, SIGKILL) !== 0) return false;
    // inside the window: no thread of the process runs before the kill's details are written
    sh.mmF.set(slot, kMmFaultAddr, -1); // no address: the log line names what each thread sleeps on
    sh.mm.store(slot, kMmSiCode, MM_SI_HUNG);
    return true;
  });
  if (!hung) return;
  sh.mm.notify(slot, kMmKilled);
  k.env.printk(
    'error',
    `hang: pid ${pid} (${k.comm}): all ${who.length} live thread${who.length === 1 ? '' : 's'} sleep and none is left to wake another (${who.join(', ')}): killing it`,
  );
}
