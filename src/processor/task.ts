// One task of the processor component: a user thread, in a worker of its own (workers/task.cjs). It
// runs kernel and user code only while it owns a CPU (sched.ts): it gets one before it starts, gives it
// away when it sleeps, is preempted or yields, and leaves it for good when it has exited.
// Called from the task worker's own thread only (the constructor at worker start, run() once per
// thread, one at a time). Locks: mmap_sem for write around the exit teardown (P2M_EXIT, releasePgtable),
// and with --ib-serialize the kCtlIbLock spinlock it installs around every fabric RPC it sends.
// Everything else is Atomics by layout.ts's guards: the kMmPid claim by CAS at execve, kMmKilled by
// CAS (the winner writes kMmSiCode/kMmFaultAddr), kMmUsers, kThreadState (store + notify after
// kThreadExit/kThreadSignal), and the per-CPU words of the CPU it owns. It enters safePoint/stopMachine
// only with no kernel lock held.
import { BroadcastChannel } from 'node:worker_threads';
import { Env } from '../kernel/env.ts';
import { Fabric } from '../fabric/ibapi.ts';
import { P2M_EXECVE, P2M_EXIT, P2S_CLOSE } from '../fabric/opcodes.ts';
import { zExitReply, type CloseReq, type ExecveReq } from '../fabric/proto.ts';
import { consoleChannel, type WorkerInit } from '../kernel/workerdata.ts';
import {
  kCpuKernelEnterMs,
  kCpuState,
  kCpuStateKernel,
  kCpuStateUser,
  kCtlIbLock,
  kCtlLiveThreads,
  kMaxProcs,
  kMmCpumask,
  kMmFaultAddr,
  kMmSleepers,
  kMmKilled,
  kMmSiCode,
  kMmSem,
  kMmShootdowns,
  kMmUsers,
  kNodeMemory,
  kNodeStorage,
  kThreadEntry,
  kThreadExit,
  kThreadFClearTid,
  kThreadPid,
  kThreadSignal,
  kThreadState,
  Shared,
  THREAD_EXITED,
  THREAD_RUNNING,
  kUsageTask,
  MM_SI_HUNG,
} from '../kernel/layout.ts';
import { downWrite, LOCK_KIND, spinLock, spinUnlock, upWrite, waitUntil } from '../kernel/sync.ts';
import type { Program, UserContext } from '../uapi/program.ts';
import { ExecImage, ThreadExit, UserSignal } from '../uapi/program.ts';
import { TASK_SIZE } from '../uapi/abi.ts';
import { checkQuiescent } from './pcache/debug.ts';
import { reportViolation } from '../kernel/report.ts';
import { stopMachine } from './stop.ts';
import { Kern } from './kern.ts';
import { releasePgtable } from './mm.ts';
import { CpuMmu, SIGKILL } from './mmu.ts';
import { mmSlotAlloc, mmSlotFree } from './fork.ts';
import { exitNotify, forgetThreadsAndChildren, putTask } from './pid.ts';
import { ProcSyscalls } from './syscalls.ts';
import { futexWake } from './futex.ts';
import { checkHung, HUNG_WHY, sleepOn } from './hang.ts';
import { dropActiveMm, switchMm, TaskSched } from './sched.ts';
import { flushTlbMmRange } from './tlb.ts';
import { at } from '../lib/at.ts';

export interface CpuTask {
  tid: number;
  pid: number;
  /** the program's name in the registry the task worker was started with (user/programs/index.ts) */
  program: string;
  argv: string[];
  /** the first thread of a new process (execve) rather than a clone */
  main: boolean;
}

export interface CpuTaskResult {
  tid: number;
  pid: number;
  /** the CPU the thread last ran on */
  cpu: number;
  /** exit value of the thread (main: the process's exit code) */
  exit: number;
  /** fatal signal that ended the thread (main: the process), 0 if none */
  signal: number;
  faultAddr?: number;
  why?: string;
  reports: unknown[];
}

export class Task {
  readonly sh: Shared;
  readonly env: Env;
  readonly k: Kern;
  readonly mmu: CpuMmu;
  private readonly console: BroadcastChannel;

  /**
   * `programs` is the registry of runnable programs, handed in by the worker entry
   * (workers/task.cjs): the kernel knows programs only by the Program interface of uapi/program.ts.
   */
  constructor(
    init: WorkerInit,
    private readonly programs: Readonly<Record<string, Program>>,
  ) {
    this.sh = new Shared(init.bufs);
    // no CPU yet: the scheduler binds the Env to the CPU the task gets
    this.env = new Env(this.sh, { ctx: -1, cpu: -1, name: 'task', bootEpochMs: init.bootEpochMs, config: init.config });
    this.k = new Kern(this.env, new Fabric(this.env));
    if (init.config.ibSerialize) {
      // --ib-serialize: one lock around every ibapi_send_reply of P (CONFIG_FIT_SEQUENTIAL_IBAPI).
      const ctl = this.sh.ctl.a;
      this.k.fab.serializeLock = (take) => {
        if (take) spinLock(this.env, ctl, kCtlIbLock);
        else spinUnlock(ctl, kCtlIbLock);
      };
    }
    this.mmu = new CpuMmu(this.k);
    this.console = new BroadcastChannel(consoleChannel(init.bootEpochMs));
    this.console.unref();
  }

  /** Run one user thread to completion, on whatever CPUs the scheduler gives it. */
  run(task: CpuTask): CpuTaskResult {
    const { sh, env, k } = this;
    // Test hooks for the emulator's own failure handling (never a kernel behaviour): see README "Testing".
    const inject = process.env.SPLITKERN_INJECT;
    if (inject === 'cpu-crash') throw new Error('injected CPU worker crash (SPLITKERN_INJECT)');
    const prog = this.programs[task.program];
    if (!prog) throw new Error(`no program "${task.program}"`);
    k.seedRandom(task.tid);
    env.cs?.enter(task.tid); // a controlled schedule: run once handed the turn
    const sched = new TaskSched(k, this.mmu, task.tid);
    sched.acquire();
    k.task = sched;
    const flood = /^report-flood:(\d+)$/.exec(inject ?? '');
    if (flood) {
      // the report channel under a flood: more records than its ring holds, each with a long text
      for (let i = 0; i < Number(flood[1]); i++)
        reportViolation(this.k, 'injected', {
          text: `injected report ${i} on CPU${env.cpu} ${'x'.repeat(3000)}`,
          facts: [`n=${i}`],
        });
    }
    if (inject === 'cpu-hang') {
      sh.cpu.store(env.ctx, kCpuKernelEnterMs, Math.floor(env.nowMs()));
      sh.cpu.store(env.ctx, kCpuState, kCpuStateKernel);
      const never = new Int32Array(new SharedArrayBuffer(4));
      for (;;) env.wait(never, 0, 0, 1000, 'wait:stuck'); // stuck in the kernel: the watchdog must fire
    }
    const res: CpuTaskResult = { tid: task.tid, pid: task.pid, cpu: env.cpu, exit: 0, signal: 0, reports: [] };
    const entries = threadEntries(prog);
    const comm = prog.name.slice(0, 15);
    let slot = -1;
    try {
      k.setCurrent(task.pid, -1, task.tid, comm);
      // a fork's child has the mm its parent copied (fork.ts): only a new program makes one
      slot = task.main ? this.execve(task.pid, comm) : this.mmSlotOrThrow(task.pid);
      k.setCurrent(task.pid, slot, task.tid, comm);
      sh.threads.store(task.tid, kThreadState, THREAD_RUNNING);
      switchMm(k);
      const sys = new ProcSyscalls(k, this.mmu, entries, this.console, this.images);
      let lastProgress = 0;
      if (env.config.check === 'syscall') {
        sys.afterAddressSpaceCall = (name) =>
          stopMachine(env, env.config.sweep, () => checkQuiescent(k, `after ${name}`));
      }
      const u: UserContext = {
        mmu: this.mmu,
        sys,
        pid: task.pid,
        tid: task.tid,
        get cpu() {
          return env.cpu;
        },
        argv: task.argv,
        seed: env.config.seed,
        report: (v) => {
          res.reports.push(v);
        },
        progress: (done, total) => {
          const now = performance.now();
          if (now - lastProgress < 100 && done < total) return;
          lastProgress = now;
          this.console.postMessage({ type: 'progress', tid: task.tid, done, total });
        },
      };
      sh.cpu.store(env.ctx, kCpuState, kCpuStateUser);
      res.exit = this.runUser(prog, u, task, entries, res);
    } finally {
      sh.cpu.store(env.ctx, kCpuState, kCpuStateKernel);
      if (slot >= 0) this.threadExit(task, slot, res);
      res.cpu = env.cpu;
      k.task = undefined;
      k.setCurrent(0, -1, 0, '');
      sched.exit();
      putTask(sh, task.tid, kUsageTask); // off its CPU for good: the row may be freed now
      env.cs?.exit();
    }
    return res;
  }

  /** The programs execve may start, with their thread entries in clone's order. */
  private get images(): ReadonlyMap<string, readonly string[]> {
    this.imageMap ??= new Map(Object.entries(this.programs).map(([n, p]) => [n, threadEntries(p)]));
    return this.imageMap;
  }
  private imageMap: Map<string, readonly string[]> | undefined;

  private runUser(prog: Program, u: UserContext, task: CpuTask, entries: string[], res: CpuTaskResult): number {
    const { sh } = this;
    let image: Program | undefined; // the program an execve of this thread started
    for (;;) {
      try {
        if (image) return image.main(u, u.argv);
        if (task.main) return prog.main(u, task.argv);
        const name = at(entries, sh.threads.get(task.tid, kThreadEntry));
        const fn = prog.threads?.[name];
        if (!fn) throw new Error(`program ${prog.name} has no thread entry "${name}"`);
        return fn(u, sh.threadArgs.get(task.tid));
      } catch (e) {
        if (!(e instanceof ExecImage)) return this.userEnded(e, res);
        // execve succeeded: the old image is gone; this thread runs the new program's main
        image = this.programs[e.program];
        if (!image) throw new Error(`execve: no program "${e.program}" after the kernel accepted it`, { cause: e });
        u.argv = [...e.argv];
      }
    }
  }

  /** How a user thread's code ended: exit, or a fatal signal (the first one of the process wins). */
  private userEnded(e: unknown, res: CpuTaskResult): number {
    const { sh, k } = this;
    if (e instanceof ThreadExit) return e.code;
    if (!(e instanceof UserSignal)) throw e;
    // The first fatal signal of the process wins and kills every thread of it.
    const ki = sh.mm.idx(k.mmSlot, kMmKilled);
    if (Atomics.compareExchange(sh.mm.a, ki, 0, e.signo) === 0) {
      sh.mmF.set(k.mmSlot, kMmFaultAddr, e.addr);
      sh.mm.store(k.mmSlot, kMmSiCode, e.why === 'SEGV_MAPERR' ? 1 : e.why === 'SEGV_ACCERR' ? 2 : 0);
    }
    res.signal = e.signo;
    res.faultAddr = e.addr;
    res.why = e.why;
    return 128 + e.signo;
  }

  private mmSlotOrThrow(pid: number): number {
    const s = this.k.mmSlotOf(pid);
    if (s < 0) throw new Error(`thread of pid ${pid} started after its process ended`);
    return s;
  }

  /** do_execve: a P-side mm (PGD, mmap_sem) and the M-side one (P2M_EXECVE). */
  private execve(pid: number, comm: string): number {
    const { sh, k } = this;
    const slot = mmSlotAlloc(k, pid);
    if (slot < 0) throw new Error(`too many processes (${kMaxProcs})`);
    sh.threads.set(pid, kThreadPid, pid);
    const rep = k.fab.sendReply(kNodeMemory, P2M_EXECVE, { pid, payload: { comm } satisfies ExecveReq });
    if (rep.status < 0) throw new Error(`P2M_EXECVE failed: ${rep.status}`);
    this.env.printk('debug', `execve: pid ${pid} (${comm}) on cpu${this.env.cpu}, mm slot ${slot}`);
    return slot;
  }

  /**
   * A thread ends. A non-main thread just leaves; the main thread is exit_group: it kills the other
   * threads, waits for them, and tears the process down on P, M and S.
   */
  private threadExit(task: CpuTask, slot: number, res: CpuTaskResult): void {
    const { sh, k, env } = this;
    const users = sh.mm.idx(slot, kMmUsers);
    const leader = task.tid === task.pid;
    if (leader) {
      // exit_group: if main ended normally with threads left, kill them (that SIGKILL is not the
      // process's fate: its exit code is main's). Otherwise the first fatal signal any thread took
      // is what the process died of, whatever unwound main afterwards.
      const ki = sh.mm.idx(slot, kMmKilled);
      const exitGroup = res.signal === 0 && Atomics.compareExchange(sh.mm.a, ki, 0, SIGKILL) === 0;
      if (Atomics.load(sh.mm.a, users) > 1)
        sleepOn(k, sh.mm.a, users, () => Atomics.load(sh.mm.a, users) <= 1, slot, LOCK_KIND.join);
      if (!exitGroup) {
        const first = Atomics.load(sh.mm.a, ki);
        res.signal = first;
        res.faultAddr = sh.mmF.get(slot, kMmFaultAddr);
        res.exit = 128 + first;
        const code = sh.mm.load(slot, kMmSiCode);
        res.why = code === 1 ? 'SEGV_MAPERR' : code === 2 ? 'SEGV_ACCERR' : code === MM_SI_HUNG ? HUNG_WHY : res.why;
      }
      if (env.config.check !== 'none') {
        // The process is quiescent (one thread left, no syscall running): check it before it goes.
        stopMachine(env, env.config.sweep, () => checkQuiescent(k, `exit of pid ${task.pid}`));
      }
      this.teardown(task.pid, slot);
      forgetThreadsAndChildren(sh, task.pid);
    } else {
      this.mmRelease(task.tid, slot);
      Atomics.sub(sh.mm.a, users, 1);
      Atomics.notify(sh.mm.a, users);
      // the threads left may all sleep in waits that only this one could have ended
      checkHung(k, sh.mm.load(slot, kMmSleepers), task.tid);
    }
    sh.threads.set(task.tid, kThreadExit, res.exit);
    sh.threads.set(task.tid, kThreadSignal, res.signal);
    sh.threads.store(task.tid, kThreadState, THREAD_EXITED);
    sh.threads.notify(task.tid, kThreadState);
    if (leader) exitNotify(sh, task.pid);
    sh.ctl.sub(kCtlLiveThreads, 1);
  }

  /**
   * mm_release: CLONE_CHILD_CLEARTID. Store 0 at the thread's clear_child_tid and FUTEX_WAKE one waiter
   * there (pthread_join). Skipped when the process is being killed: every thread dies with it and
   * nobody is left to join. A bad address is ignored, as Linux ignores it.
   */
  private mmRelease(tid: number, slot: number): void {
    const { sh, k } = this;
    const ctid = sh.threadF.get(tid, kThreadFClearTid);
    if (ctid === 0 || sh.mm.load(slot, kMmKilled) !== 0) return;
    try {
      if (this.mmu.putUser32(ctid, 0)) futexWake(k, ctid, 1);
    } catch (e) {
      if (!(e instanceof UserSignal)) throw e; // killed while clearing: as above, nobody joins
    }
  }

  /**
   * exit_mmap and the mm's end: zap everything on P (M and S drop theirs), then leave the mm. CPUs still
   * lazily in its mm_cpumask take one last flush and leave it, and no shootdown of it may still be in
   * flight, before the slot can be another process's.
   */
  private teardown(pid: number, slot: number): void {
    const { sh, k } = this;
    const sem = sh.mm.idx(slot, kMmSem);
    downWrite(this.env, sh.mm.a, sem, slot);
    k.mmapWriteHeld = true;
    try {
      const rep = k.fab.sendReply(kNodeMemory, P2M_EXIT, { pid }, zExitReply);
      // exit_mmap: zap every mapping; dirty lines are discarded with the process.
      for (const [s, e] of rep.body?.vmas ?? []) releasePgtable(k, s, e);
      if (this.env.config.topology === '1P-1M-1S')
        k.fab.sendReply(kNodeStorage, P2S_CLOSE, { pid, payload: { fd: -1 } satisfies CloseReq });
    } finally {
      k.mmapWriteHeld = false;
      upWrite(sh.mm.a, sem);
    }
    dropActiveMm(k, slot);
    if (sh.mm.load(slot, kMmCpumask) !== 0) flushTlbMmRange(k, pid, slot, 0, TASK_SIZE);
    const inflight = sh.mm.idx(slot, kMmShootdowns);
    waitUntil(this.env, sh.mm.a, inflight, () => Atomics.load(sh.mm.a, inflight) === 0, slot, LOCK_KIND.csd);
    mmSlotFree(k, slot);
  }
}

/** A program's thread entries in the order clone and fork encode them (kThreadEntry). */
const threadEntries = (p: Program): string[] => Object.keys(p.threads ?? {}).sort();
