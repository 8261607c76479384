// alloc_pid and release_task over the thread table (kernel/pid.c, kernel/exit.c): a tid is a row of
// the table; a pid is the tid of its process's leader. Rows are claimed by CAS of kThreadState from
// THREAD_FREE to THREAD_CREATED, scanning cyclically from the kCtlNextTid cursor (Atomics.add), as
// alloc_pid hands out pids cyclically, so a freed tid is not handed out again at once.
// A row is freed like a task_struct, when its usage drops to nothing (kThreadUsage, Atomics.and):
//   - kUsageTask: the task itself, dropped after it has left its CPU for good (task.ts), so no
//     scheduler word of the row is written once another thread may own it;
//   - kUsageReap: whoever consumes the exit: for a thread, its process's teardown (join reads the row
//     until then); for a leader, its parent's wait4, or its own exit as an orphan (reparented to
//     init). A leader started by the host (kThreadParent 0) keeps it for the run, so its pid stays
//     unique in the run's results.
// Callable from any thread holding no lock; every word is written by Atomics.
import {
  kCtlNextTid,
  kMaxThreads,
  kParentInit,
  kThreadAffinity,
  kThreadChldGen,
  kThreadCpu,
  kThreadEntry,
  kThreadExit,
  kThreadOnCpu,
  kThreadParent,
  kThreadPid,
  kThreadRqNext,
  kThreadSignal,
  kThreadSleep,
  kThreadState,
  kThreadUsage,
  kUsageReap,
  kUsageTask,
  THREAD_CREATED,
  THREAD_DEAD,
  THREAD_EXITED,
  THREAD_FREE,
  type Shared,
} from '../kernel/layout.ts';

/** what a new row starts with at 0 (clone and fork then set what they pass on) */
const ROW_WORDS = [
  kThreadPid,
  kThreadEntry,
  kThreadExit,
  kThreadSignal,
  kThreadCpu,
  kThreadAffinity,
  kThreadParent,
  kThreadSleep,
  kThreadRqNext,
  kThreadOnCpu,
];

/** alloc_pid: claim a free row; -1 if the table is full (the caller returns -EAGAIN). */
export function allocTid(sh: Shared): number {
  const rows = kMaxThreads - 1; // tid 0 is no thread
  for (let n = 0; n < rows; n++) {
    const cursor = sh.ctl.add(kCtlNextTid, 1) - 1; // from 0 (boot stores 1)
    const tid = 1 + (((cursor % rows) + rows) % rows);
    if (sh.threads.cas(tid, kThreadState, THREAD_FREE, THREAD_CREATED) !== THREAD_FREE) continue;
    for (const f of ROW_WORDS) sh.threads.store(tid, f, 0);
    sh.threads.store(tid, kThreadUsage, kUsageTask | kUsageReap);
    return tid;
  }
  return -1;
}

/** A claimed row whose task never started (copy_process failed): free it at once. */
export function abandonTid(sh: Shared, tid: number): void {
  sh.threads.store(tid, kThreadUsage, 0);
  sh.threads.store(tid, kThreadState, THREAD_FREE);
}

/**
 * put_task_struct of one usage bit; the last one frees the row (release_task). Dropping a bit that
 * is already clear does nothing, so a late teardown cannot free a row twice.
 */
export function putTask(sh: Shared, tid: number, bit: number): void {
  const old = Atomics.and(sh.threads.a, sh.threads.idx(tid, kThreadUsage), ~bit);
  if ((old & bit) !== 0 && (old & ~bit) === 0) sh.threads.store(tid, kThreadState, THREAD_FREE);
}

/**
 * The end of a process, from its leader after the teardown: its threads' rows need no join any more
 * (their reap usage goes), and its children are reparented to init (forget_original_parent), which
 * reaps at once those already dead. The parent word changes by CAS, so a row that a fork elsewhere
 * has just claimed and rewritten is left alone.
 */
export function forgetThreadsAndChildren(sh: Shared, pid: number): void {
  for (let t = 1; t < kMaxThreads; t++) {
    if (t !== pid && sh.threads.load(t, kThreadPid) === pid) putTask(sh, t, kUsageReap);
    if (sh.threads.cas(t, kThreadParent, pid, kParentInit) === pid) reapIfExited(sh, t);
  }
}

/**
 * exit_notify of a leader whose state is THREAD_EXITED: SIGCHLD to its parent (wakes its wait4), or,
 * for an orphan, init's reap. Pairs with forgetThreadsAndChildren: each side writes its word before it
 * reads the other's, so at least one of them sees both and reaps (once: a CAS).
 */
export function exitNotify(sh: Shared, pid: number): void {
  const parent = sh.threads.load(pid, kThreadParent);
  if (parent > 0) {
    sh.threads.add(parent, kThreadChldGen, 1);
    sh.threads.notify(parent, kThreadChldGen);
  } else if (parent === kParentInit) reapIfExited(sh, pid);
}

/** EXIT_ZOMBIE -> EXIT_DEAD, once; true for the caller that won (it may read the exit status). */
export function reapIfExited(sh: Shared, tid: number): boolean {
  if (sh.threads.cas(tid, kThreadState, THREAD_EXITED, THREAD_DEAD) !== THREAD_EXITED) return false;
  putTask(sh, tid, kUsageReap);
  return true;
}
