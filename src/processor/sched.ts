// The scheduler of the processor component (kernel/sched/core.c, much simplified): tasks are not CPUs.
//
// A task (user thread) runs in a worker of its own, since a JS stack cannot be switched; a CPU is
// state in shared memory: its runqueue, its current task (kCpuCurr), its TLB row, its IPI queue and
// its cpu_tlbstate. A task executes kernel or user code only while it owns a CPU, and then it *is*
// that CPU: its Env takes the CPU's context (mailbox, stats row, per-CPU words), its MMU that CPU's TLB.
// When no task owns a CPU, the CPU's idle context (its own worker, processor/cpu.ts) does: it answers
// IPIs and hands the CPU to the first task its runqueue gets.
//
// Policy: round robin with a time slice (--timeslice-ms). A task gives its CPU away
//   - when it sleeps (futex wait, join, barrier, exit_group's wait): schedule() in TASK_INTERRUPTIBLE;
//   - at the timer tick (the MMU's interrupt point in user mode) and at syscall return, when its slice
//     is used up and its runqueue is not empty (need_resched): it goes to the tail of a runqueue;
//   - at sched_yield, if anyone waits;
//   - at exit, for good.
// The kernel is not preemptible (CONFIG_PREEMPT_NONE): a task never switches out holding a kernel lock,
// in the middle of an RPC or with a csd in flight, so everything a CPU context owns stays consistent
// across a switch. Wake-up placement (select_task_rq): the CPU the task last ran on if it is idle, else
// the lowest idle CPU, else the CPU with the fewest tasks (ties go to the last one). A woken task queues
// itself (the waker only makes its condition true and notifies it), then waits for a CPU owner to hand
// it the CPU. A preempted or yielding task goes back to the tail of its CPU's runqueue before it gives
// the CPU away; an idle CPU whose runqueue is empty takes the first task of the longest one.
//
// switch_mm follows Linux 4.9 arch/x86/mm/tlb.c without PCID, which LegoOS's tlb.c (cpu_tlbstate, its
// "follow the linux mm and borrowed active_mm way" note) copies: switching to another mm sets this CPU
// in next's mm_cpumask, reloads CR3 (a full local TLB flush) and then clears it from prev's mask;
// switching back to the same mm keeps the TLB unless a flush made the CPU leave that mm meanwhile. An
// idle CPU is lazy (enter_lazy_tlb): it keeps the last mm's translations and its mm_cpumask bit; a flush
// IPI for that mm makes it leave_mm (tlb.ts flushTlbFunc) instead of flushing pages.
//
// Locks and words: rq->lock (kCpuRqLock, a leaf spinlock) guards kCpuRqHead/Tail/Len and the queued
// tasks' kThreadRqNext. The CPU's owner hands it over: it stores kCpuCurr, then the new owner's
// kThreadOnCpu (Atomics.store + notify); whoever owns the CPU writes its per-CPU words (kCpuState,
// kCpuPid, kCpuTid, kCpuActiveMm/Pid, kCpuTlbState) and its bit of kCtlCpusBusy. mm_cpumask by
// Atomics or/and (tlb.ts). Callers hold no kernel lock at a schedule point.
import {
  kCpuActiveMm,
  kCpuActivePid,
  kCpuCurr,
  kCpuDoorbell,
  kCpuKernelEnterMs,
  kCpuPid,
  kCpuRqHead,
  kCpuRqLen,
  kCpuRqLock,
  kCpuRqTail,
  kCpuState,
  kCpuStateIdle,
  kCpuStateKernel,
  kCpuTid,
  kCpuTlbState,
  kCtlCpusBusy,
  kCtlShutdown,
  kMmCpumask,
  kMmPid,
  kMaxThreads,
  kThreadAffinity,
  kThreadCpu,
  kThreadOnCpu,
  kThreadRqNext,
  TLBSTATE_LAZY,
  TLBSTATE_OK,
  type Shared,
} from '../kernel/layout.ts';
import type { Env } from '../kernel/env.ts';
import { S } from '../kernel/stats.ts';
import { spinLock, spinUnlock } from '../kernel/sync.ts';
import type { Kern, TaskHooks } from './kern.ts';
import type { CpuMmu } from './mmu.ts';
import { safePoint } from './stop.ts';
import { handleIpis, tlbFlushAllLocal } from './tlb.ts';

/** How often a task off its CPU looks again at what it waits for (a kill notifies no sleeper). */
const kOffCpuPollMs = 10;

// ---- runqueues ----
function rqLock(env: Env, sh: Shared, cpu: number): void {
  spinLock(env, sh.cpu.a, sh.cpu.idx(cpu, kCpuRqLock), cpu);
}
function rqUnlock(sh: Shared, cpu: number): void {
  spinUnlock(sh.cpu.a, sh.cpu.idx(cpu, kCpuRqLock));
}

/** Under rq->lock: queue tid at the tail of cpu's runqueue. */
function rqAppend(sh: Shared, cpu: number, tid: number): void {
  sh.threads.store(tid, kThreadRqNext, 0);
  const tail = sh.cpu.load(cpu, kCpuRqTail);
  if (tail === 0) sh.cpu.store(cpu, kCpuRqHead, tid);
  else sh.threads.store(tail, kThreadRqNext, tid);
  sh.cpu.store(cpu, kCpuRqTail, tid);
  sh.cpu.store(cpu, kCpuRqLen, sh.cpu.load(cpu, kCpuRqLen) + 1);
}

/** Under rq->lock: unlink t, which follows prev (0: t is the head), from cpu's runqueue. */
function rqUnlink(sh: Shared, cpu: number, prev: number, t: number): void {
  const next = sh.threads.load(t, kThreadRqNext);
  if (prev === 0) sh.cpu.store(cpu, kCpuRqHead, next);
  else sh.threads.store(prev, kThreadRqNext, next);
  if (next === 0) sh.cpu.store(cpu, kCpuRqTail, prev);
  sh.threads.store(t, kThreadRqNext, 0);
  sh.cpu.store(cpu, kCpuRqLen, sh.cpu.load(cpu, kCpuRqLen) - 1);
}

/** Under rq->lock: unlink and return the head of cpu's runqueue, 0 if it is empty. */
function rqPopHead(sh: Shared, cpu: number): number {
  const t = sh.cpu.load(cpu, kCpuRqHead);
  if (t !== 0) rqUnlink(sh, cpu, 0, t);
  return t;
}

/** enqueue_task at the tail of cpu's runqueue, and ring the CPU (its idle context may sleep). */
export function enqueueTask(env: Env, sh: Shared, cpu: number, tid: number): void {
  rqLock(env, sh, cpu);
  rqAppend(sh, cpu, tid);
  rqUnlock(sh, cpu);
  ring(sh, cpu);
  if (sh.cpu.load(cpu, kCpuCurr) !== 0) kickIdleCpu(sh, cpu);
}

function ring(sh: Shared, cpu: number): void {
  sh.cpu.add(cpu, kCpuDoorbell, 1);
  sh.cpu.notify(cpu, kCpuDoorbell, 1);
}

/** A task waits on a busy CPU's runqueue: ring the first idle CPU, whose idle loop will steal it. */
function kickIdleCpu(sh: Shared, busy: number): void {
  for (let c = 0; c < sh.geo.ctx.cpus; c++)
    if (c !== busy && cpuIdle(sh, c)) {
      ring(sh, c);
      return;
    }
}

/** pick_next_task: dequeue the head of cpu's runqueue, 0 if it is empty. */
export function pickNextTask(env: Env, sh: Shared, cpu: number): number {
  if (sh.cpu.load(cpu, kCpuRqLen) === 0) return 0;
  rqLock(env, sh, cpu);
  const t = rqPopHead(sh, cpu);
  rqUnlock(sh, cpu);
  return t;
}

/**
 * put_prev_task + pick_next_task for a task that stays runnable (preemption, yield): if anyone waits on
 * cpu's runqueue, dequeue the first and queue `tid` at the tail, under one hold of the lock, so the task
 * is back on the runqueue before it gives the CPU away. Returns the next task, 0 (and queues nothing)
 * if nobody waits.
 */
export function requeueAndPick(env: Env, sh: Shared, cpu: number, tid: number): number {
  if (sh.cpu.load(cpu, kCpuRqLen) === 0) return 0;
  rqLock(env, sh, cpu);
  const t = rqPopHead(sh, cpu);
  if (t !== 0) rqAppend(sh, cpu, tid);
  rqUnlock(sh, cpu);
  if (t !== 0) kickIdleCpu(sh, cpu);
  return t;
}

/** May tid run on cpu (its cpus_allowed; 0 = every CPU)? A CPU bitmask of at most 16 bits. */
export function cpuAllowed(sh: Shared, tid: number, cpu: number): boolean {
  const mask = sh.threads.load(tid, kThreadAffinity);
  return mask === 0 || ((mask >>> cpu) & 1) === 1;
}

/**
 * Idle balancing (newidle_balance, in miniature): an idle CPU with an empty runqueue takes the first
 * task allowed on it from the longest other runqueue. Returns it, 0 if there is none.
 */
function stealTask(env: Env, sh: Shared, cpu: number): number {
  let busiest = -1;
  for (let c = 0; c < sh.geo.ctx.cpus; c++)
    if (c !== cpu && sh.cpu.load(c, kCpuRqLen) > (busiest < 0 ? 0 : sh.cpu.load(busiest, kCpuRqLen))) busiest = c;
  if (busiest < 0) return 0;
  rqLock(env, sh, busiest);
  let prev = 0;
  let t = sh.cpu.load(busiest, kCpuRqHead);
  for (let n = 0; t !== 0 && !cpuAllowed(sh, t, cpu); n++) {
    if (n > kMaxThreads) throw new Error(`sched: runqueue of CPU${busiest} loops`);
    prev = t;
    t = sh.threads.load(t, kThreadRqNext);
  }
  if (t !== 0) rqUnlink(sh, busiest, prev, t);
  rqUnlock(sh, busiest);
  return t;
}

/** An idle CPU: its idle context owns it and nobody waits for it. */
function cpuIdle(sh: Shared, cpu: number): boolean {
  return sh.cpu.load(cpu, kCpuCurr) === 0 && sh.cpu.load(cpu, kCpuRqLen) === 0;
}

/** select_task_rq: where a task that becomes runnable queues (the policy in the header). */
export function selectTaskRq(sh: Shared, tid: number): number {
  const cpus = sh.geo.ctx.cpus;
  const ok = (c: number) => cpuAllowed(sh, tid, c);
  const prev = sh.threads.load(tid, kThreadCpu);
  if (prev >= 0 && prev < cpus && ok(prev) && cpuIdle(sh, prev)) return prev;
  for (let c = 0; c < cpus; c++) if (ok(c) && cpuIdle(sh, c)) return c;
  let best = prev >= 0 && prev < cpus && ok(prev) ? prev : -1;
  const load = (c: number) => sh.cpu.load(c, kCpuRqLen) + (sh.cpu.load(c, kCpuCurr) !== 0 ? 1 : 0);
  for (let c = 0; c < cpus; c++) if (ok(c) && (best < 0 || load(c) < load(best))) best = c;
  if (best < 0) throw new Error(`sched: tid ${tid} is allowed on no CPU`); // sched_setaffinity refuses that
  return best;
}

/**
 * context_switch by the CPU's owner: give the CPU to `next` (a tid), or to the idle context (0).
 * The caller has written everything it owed the CPU; after this it must not touch the CPU's state.
 */
export function handOver(sh: Shared, cpu: number, next: number): void {
  sh.cpu.store(cpu, kCpuCurr, next);
  if (next !== 0) {
    sh.threads.store(next, kThreadOnCpu, cpu + 1);
    sh.threads.notify(next, kThreadOnCpu);
  } else sh.cpu.notify(cpu, kCpuCurr);
}

// ---- switch_mm and lazy TLB ----
/**
 * switch_mm_irqs_off(prev, next): make this CPU's TLB hold translations of k.mmSlot's mm only. A task
 * without an mm yet (before execve) leaves the CPU as it is, lazily.
 */
export function switchMm(k: Kern): void {
  const sh = k.sh;
  const c = k.cpu;
  const bit = 1 << c;
  const slot = k.mmSlot;
  if (slot < 0) return;
  const active = sh.cpu.load(c, kCpuActiveMm);
  const activePid = sh.cpu.load(c, kCpuActivePid);
  sh.cpu.store(c, kCpuTlbState, TLBSTATE_OK);
  if (active !== slot + 1 || activePid !== k.pid) {
    // prev != next (a slot reused by a new process is another mm: its pid differs)
    sh.cpu.store(c, kCpuActiveMm, slot + 1);
    sh.cpu.store(c, kCpuActivePid, k.pid);
    loadCr3(k, slot);
    // stop flush IPIs for prev (unless prev is gone: its exit flushed every lazy CPU out of its mask)
    if (active !== 0 && active !== slot + 1 && sh.mm.load(active - 1, kMmPid) === activePid)
      sh.mm.and(active - 1, kMmCpumask, ~bit);
  } else if ((sh.mm.load(slot, kMmCpumask) & bit) === 0) {
    // we were lazy in this mm and a flush made us leave it: nothing in the TLB can be trusted
    loadCr3(k, slot);
  }
}

/**
 * Join next's mm_cpumask, then load its PGD (no PCID: the whole TLB goes). The bit must be visible
 * before the PGD is loaded (Linux 71b3c126e611, CVE-2016-2069): loading CR3 lets the CPU start filling
 * its TLB from the new page tables, and a CPU that changes a PTE after this one may have walked it must
 * see the bit, or it sends no flush.
 */
function loadCr3(k: Kern, slot: number): void {
  k.sh.mm.or(slot, kMmCpumask, 1 << k.cpu);
  k.env.sched('switch_mm:cpumask');
  tlbFlushAllLocal(k);
}

/** enter_lazy_tlb: the CPU goes idle keeping the last mm's TLB and mm_cpumask bit. */
function enterLazyTlb(k: Kern): void {
  const sh = k.sh;
  if (sh.cpu.load(k.cpu, kCpuActiveMm) !== 0 && sh.cpu.load(k.cpu, kCpuTlbState) === TLBSTATE_OK) {
    sh.cpu.store(k.cpu, kCpuTlbState, TLBSTATE_LAZY);
    k.env.stat(S.nr_lazy_tlb);
  }
}

/**
 * exit_mm of the last user, on its CPU: leave the mm for init_mm (flush, clear the bit). Lazy CPUs
 * still in the mask are the caller's to flush (they leave on that IPI).
 */
export function dropActiveMm(k: Kern, slot: number): void {
  const sh = k.sh;
  tlbFlushAllLocal(k);
  sh.mm.and(slot, kMmCpumask, ~(1 << k.cpu));
  if (sh.cpu.load(k.cpu, kCpuActiveMm) === slot + 1) {
    sh.cpu.store(k.cpu, kCpuActiveMm, 0);
    sh.cpu.store(k.cpu, kCpuActivePid, 0);
  }
}

// ---- the idle context ----
/**
 * cpu_idle of CPU k.cpu (its own worker): while the CPU is its own, answer IPIs, park for stop_machine,
 * and hand the CPU to the first runnable task; sleep on the CPU's doorbell when there is none. Returns
 * at shutdown.
 */
export function cpuIdleLoop(k: Kern): void {
  const sh = k.sh;
  const env = k.env;
  const c = k.cpu;
  while (sh.ctl.load(kCtlShutdown) === 0) {
    const cur = sh.cpu.load(c, kCpuCurr);
    if (cur !== 0) {
      env.wait(sh.cpu.a, sh.cpu.idx(c, kCpuCurr), cur, 100, 'wait:cpu_taken', false);
      continue;
    }
    handleIpis(k);
    safePoint(env);
    const seen = sh.cpu.load(c, kCpuDoorbell);
    const next = pickNextTask(env, sh, c) || stealTask(env, sh, c);
    if (next !== 0) {
      env.stat(S.nr_switches);
      handOver(sh, c, next);
      continue;
    }
    env.wait(sh.cpu.a, sh.cpu.idx(c, kCpuDoorbell), seen, 20, 'wait:idle', false);
  }
}

// ---- the task side ----
/**
 * One task's view of the scheduler (its worker's): getting a CPU, giving it away, and the schedule
 * points the kernel calls through Kern.task.
 */
export class TaskSched implements TaskHooks {
  private sliceStart = 0;
  private readonly sliceMs: number;
  /** the last CPU this task ran on, -1 before its first */
  private last = -1;

  constructor(
    private readonly k: Kern,
    private readonly mmu: CpuMmu,
    private readonly tid: number,
  ) {
    this.sliceMs = k.env.config.timesliceMs;
  }

  /** Off-CPU -> on a CPU: queue on the runqueue select_task_rq picks, wait to be handed a CPU, take it. */
  acquire(): void {
    const { k, tid } = this;
    enqueueTask(k.env, k.sh, selectTaskRq(k.sh, tid), tid);
    this.waitForCpu();
  }

  /** Queued: wait until a CPU's owner hands this task its CPU, and take it. */
  private waitForCpu(): void {
    const { k, tid } = this;
    const sh = k.sh;
    const oi = sh.threads.idx(tid, kThreadOnCpu);
    while (Atomics.load(sh.threads.a, oi) === 0) {
      if (sh.ctl.load(kCtlShutdown) === 2) throw new Error(`sched: shutdown while tid ${tid} waited for a CPU`);
      k.env.wait(sh.threads.a, oi, 0, 100, 'wait:runqueue');
    }
    this.bind(Atomics.load(sh.threads.a, oi) - 1);
    // its affinity changed while it was queued: this CPU is no longer one of its own
    if (!cpuAllowed(sh, tid, k.cpu)) this.migrate();
  }

  /** Leave a CPU the task may no longer run on, for one it may (the migration stopper's job in Linux). */
  private migrate(): void {
    this.release(false);
    this.acquire();
  }

  /** sched_setaffinity of the task itself: move now if its CPU is no longer allowed. */
  checkAffinity(): void {
    const k = this.k;
    if (cpuAllowed(k.sh, this.tid, k.cpu)) return;
    this.keepingState(() => {
      this.migrate();
      return true;
    });
  }

  /**
   * Around a switch inside a syscall or at the tick: what the task was doing (kCpuState) goes with it
   * to the CPU it comes back on, whose bind wrote "kernel". `switchOut` says whether it switched.
   */
  private keepingState(switchOut: () => boolean): void {
    const k = this.k;
    const state = k.sh.cpu.load(k.cpu, kCpuState);
    if (switchOut()) k.sh.cpu.store(k.cpu, kCpuState, state);
  }

  private bind(c: number): void {
    const { k, tid } = this;
    const sh = k.sh;
    const env = k.env;
    env.ctx = c;
    env.cpu = c;
    env.name = `cpu${c}`;
    env.irq = () => handleIpis(k);
    this.mmu.bindCpu();
    sh.ctl.or(kCtlCpusBusy, 1 << c);
    // a checker may be stopping the machine: this CPU was idle to it, so touch nothing before parking
    safePoint(env);
    if (this.last >= 0 && this.last !== c) env.stat(S.nr_migrations);
    this.last = c;
    sh.threads.store(tid, kThreadCpu, c);
    sh.cpu.store(c, kCpuState, kCpuStateKernel);
    sh.cpu.store(c, kCpuTid, tid);
    sh.cpu.store(c, kCpuPid, k.pid);
    switchMm(k);
    this.sliceStart = k.env.nowMs();
  }

  /**
   * schedule(): give the CPU to the next task of its runqueue, or to its idle context. `requeue`: the
   * task stays runnable (preemption, yield): it goes to the tail of this CPU's runqueue and waits for a
   * CPU again (an idle CPU may take it from there); otherwise it returns off-CPU (sleep, exit), and must
   * acquire() before it touches kernel state again. Returns false, keeping the CPU, when the task would
   * be requeued and nobody waits for the CPU.
   */
  release(requeue: boolean): boolean {
    const { k, tid } = this;
    const sh = k.sh;
    const env = k.env;
    const c = k.cpu;
    // Give up the token before the task can be on a runqueue: once requeued, an idle CPU may steal it
    // and hand it a CPU at once, and that grant must not be overwritten.
    sh.threads.store(tid, kThreadOnCpu, 0);
    const next = requeue ? requeueAndPick(env, sh, c, tid) : pickNextTask(env, sh, c);
    if (next === 0 && requeue) {
      sh.threads.store(tid, kThreadOnCpu, c + 1); // not queued, so nobody could grant it: keep the CPU
      this.sliceStart = env.nowMs(); // nobody waits: a new slice
      return false;
    }
    env.stat(S.nr_switches);
    if (next === 0) {
      enterLazyTlb(k);
      sh.ctl.and(kCtlCpusBusy, ~(1 << c));
      sh.cpu.store(c, kCpuState, kCpuStateIdle);
    }
    sh.cpu.store(c, kCpuKernelEnterMs, -1);
    sh.cpu.store(c, kCpuPid, 0);
    sh.cpu.store(c, kCpuTid, 0);
    env.ctx = -1;
    env.cpu = -1;
    env.name = 'task';
    env.irq = () => {};
    handOver(sh, c, next);
    if (requeue) this.waitForCpu();
    return true;
  }

  /** Leave the CPU for good (the task has exited). */
  exit(): void {
    this.release(false);
  }

  /** need_resched at the timer tick or syscall return: the slice is used up and someone waits. */
  tick(): void {
    const k = this.k;
    if (!cpuAllowed(k.sh, this.tid, k.cpu)) {
      this.checkAffinity(); // another thread took this CPU out of the task's mask
      return;
    }
    if (k.env.nowMs() - this.sliceStart < this.sliceMs) return;
    if (k.sh.cpu.load(k.cpu, kCpuRqLen) === 0) {
      this.sliceStart = k.env.nowMs();
      return;
    }
    k.env.stat(S.nr_preempt);
    this.keepingState(() => this.release(true));
  }

  /** sched_yield: to the tail of a runqueue, if anyone waits. */
  yield(): void {
    const k = this.k;
    k.env.stat(S.nr_yield);
    this.keepingState(() => this.release(true));
  }

  /**
   * Sleep off the CPU until done() holds: schedule() away, wait on a[i] (its waker notifies it) or for
   * the poll interval (a fatal signal of the process, a timeout), then queue for a CPU again. done() is
   * evaluated off-CPU: it may read shared memory and the clock, nothing per-CPU.
   */
  sleep(a: Int32Array, i: number, done: () => boolean): void {
    const k = this.k;
    const state = k.sh.cpu.load(k.cpu, kCpuState);
    this.release(false);
    try {
      while (!done()) {
        const v = Atomics.load(a, i);
        if (done()) break;
        if (k.sh.ctl.load(kCtlShutdown) === 2) throw new Error(`sched: shutdown while tid ${this.tid} slept`);
        k.env.wait(a, i, v, kOffCpuPollMs, 'wait:sleep');
      }
    } finally {
      this.acquire();
      k.sh.cpu.store(k.cpu, kCpuState, state);
    }
  }
}
