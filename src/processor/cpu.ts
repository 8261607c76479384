// One CPU of the processor component: bring-up (cpuhp-style callbacks registered by subsystems) and
// the task runner (a piscina task = one user thread, pinned to this CPU until it ends).
// Called from the CPU worker's own thread only (the constructor at worker start, run() once per task,
// one task at a time). Locks: mmap_sem for write around the exit teardown (P2M_EXIT, releasePgtable),
// and with --ib-serialize the kCtlIbLock spinlock it installs around every fabric RPC of this CPU.
// Everything else is Atomics by layout.ts's guards: its own per-CPU words and its bits of
// kCtlCpusOnline/kCtlCpusBusy, the kMmPid claim by CAS at execve, kMmKilled by CAS (the winner writes
// kMmSiCode/kMmFaultAddr), kMmUsers, and kThreadState (store + notify after kThreadExit/kThreadSignal).
// It enters safePoint/stopMachine only with no kernel lock held.
import { BroadcastChannel } from 'node:worker_threads';
import { Env } from '../kernel/env.ts';
import { Fabric } from '../fabric/ibapi.ts';
import { P2M_EXECVE, P2M_EXIT, P2S_CLOSE } from '../fabric/opcodes.ts';
import { zExitReply, type CloseReq, type ExecveReq } from '../fabric/proto.ts';
import { consoleChannel, type WorkerInit } from '../kernel/workerdata.ts';
import {
  kCpuKernelEnterMs,
  kCpuPid,
  kCpuState,
  kCpuStateIdle,
  kCpuStateKernel,
  kCpuStateUser,
  kCpuTid,
  kCtlCpuBootCounter,
  kCtlCpusBusy,
  kCtlIbLock,
  kCtlCpusOnline,
  kCtlLiveThreads,
  kMaxProcs,
  kMmCpumask,
  kMmFaultAddr,
  kMmSleepers,
  kMmKilled,
  kMmSiCode,
  kMmMovingEnd,
  kMmMovingStart,
  kMmPgd,
  kMmPid,
  kMmSem,
  kMmShootdowns,
  kMmUsers,
  kNodeMemory,
  kNodeStorage,
  kStatsPerContext,
  kThreadCpu,
  kThreadEntry,
  kThreadExit,
  kThreadFClearTid,
  kThreadPid,
  kThreadSignal,
  kThreadState,
  Shared,
  THREAD_EXITED,
  THREAD_RUNNING,
  MM_SI_HUNG,
} from '../kernel/layout.ts';
import { downWrite, LOCK_KIND, spinLock, spinUnlock, upWrite, waitUntil } from '../kernel/sync.ts';
import type { Program, UserContext } from '../uapi/program.ts';
import { ThreadExit, UserSignal } from '../uapi/program.ts';
import { checkQuiescent } from './pcache/debug.ts';
import { reportViolation } from '../kernel/report.ts';
import { safePoint, stopMachine } from './stop.ts';
import { Kern } from './kern.ts';
import { releasePgtable } from './mm.ts';
import { CpuMmu, SIGKILL } from './mmu.ts';
import { allocTablePage } from './pgtable.ts';
import { ProcSyscalls } from './syscalls.ts';
import { futexWake } from './futex.ts';
import { checkHung, HUNG_WHY } from './hang.ts';
import { handleIpis, smpcfdPrepareCpu, smpcfdPrepared, switchMmIn, switchMmOut, tlbFlushAllLocal } from './tlb.ts';
import { at } from '../lib/at.ts';

export interface CpuTask {
  tid: number;
  pid: number;
  /** the program's name in the registry the CPU was started with (the worker entry's, user/programs/index.ts) */
  program: string;
  argv: string[];
  /** the first thread of a new process (execve) rather than a clone */
  main: boolean;
}

export interface CpuTaskResult {
  tid: number;
  pid: number;
  cpu: number;
  /** exit value of the thread (main: the process's exit code) */
  exit: number;
  /** fatal signal that ended the thread (main: the process), 0 if none */
  signal: number;
  faultAddr?: number;
  why?: string;
  reports: unknown[];
}

/** A subsystem's per-CPU bring-up callback (cpuhp_setup_state): name as Linux logs it. */
interface CpuhpStep {
  name: string;
  startup: (c: Cpu) => void;
}

const CPUHP_STEPS: CpuhpStep[] = [
  // First: this CPU's statistics row starts from zero, so the steps below may count into it.
  {
    name: 'stats:online',
    startup: (c) => {
      for (let i = 0; i < kStatsPerContext; i++) c.sh.stats.set(c.env.ctx, i, 0);
    },
  },
  {
    // kernel/smp.c: the boot CPU's csd array comes from call_function_init, a secondary CPU's from
    // cpu_online_callback -> smpcfd_prepare_cpu. cpuhp-missing (LegoOS 2018-02-05): secondary CPUs
    // skip it, so their cfd_data.csd stays NULL and per_cpu_ptr(NULL, target) is the target's
    // call_single_queue: the first multi-target IPI they send links that queue head into itself.
    name: 'smpcfd:prepare',
    startup: (c) => {
      if (c.env.cpu !== 0 && c.env.bugs.has('cpuhp-missing')) {
        c.env.bugRan('cpuhp-missing');
        return;
      }
      smpcfdPrepareCpu(c.sh, c.env.cpu);
    },
  },
  { name: 'x86/tlb:online', startup: (c) => tlbFlushAllLocal(c.k) },
  {
    name: 'pcache/percpu:online',
    startup: (c) => {
      c.k.mmu.invalidateFast();
    },
  },
];

export class Cpu {
  readonly sh: Shared;
  readonly env: Env;
  readonly k: Kern;
  readonly mmu: CpuMmu;
  private readonly console: BroadcastChannel;

  /**
   * `programs` is the registry of runnable programs, handed in by the worker entry
   * (workers/cpu.cjs): the kernel knows programs only by the Program interface of uapi/program.ts.
   */
  constructor(
    init: WorkerInit,
    private readonly programs: Readonly<Record<string, Program>>,
  ) {
    this.sh = new Shared(init.bufs);
    const id = this.sh.ctl.add(kCtlCpuBootCounter, 1);
    if (id >= this.sh.geo.ctx.cpus)
      throw new Error(`cpu bring-up: more CPU workers than --cpus ${this.sh.geo.ctx.cpus}`);
    this.env = new Env(this.sh, {
      ctx: id,
      cpu: id,
      name: `cpu${id}`,
      bootEpochMs: init.bootEpochMs,
      config: init.config,
    });
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
    this.bringUp();
  }

  private bringUp(): void {
    const { env, sh } = this;
    sh.cpu.store(env.ctx, kCpuKernelEnterMs, -1);
    for (const step of CPUHP_STEPS) {
      step.startup(this);
      env.printk('debug', `cpuhp/${env.cpu}: ${step.name}`);
    }
    env.irq = () => handleIpis(this.k);
    sh.cpu.store(env.ctx, kCpuState, kCpuStateIdle);
    sh.ctl.or(kCtlCpusOnline, 1 << env.cpu);
    const csdDone = smpcfdPrepared(sh, env.cpu);
    env.printk(
      'notice',
      `CPU${env.cpu}: online (${CPUHP_STEPS.map((s) => (s.name === 'smpcfd:prepare' && !csdDone ? `${s.name} SKIPPED` : s.name)).join(', ')})`,
    );
  }

  /** Run one user thread to completion. */
  run(task: CpuTask): CpuTaskResult {
    const { sh, env, k } = this;
    // Test hooks for the emulator's own failure handling (never a kernel behaviour): see README "Testing".
    const inject = process.env.SPLITKERN_INJECT;
    if (inject === 'cpu-crash') throw new Error('injected CPU worker crash (SPLITKERN_INJECT)');
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
      for (;;) sh.ctl.wait(kCtlCpusOnline, -1, 1000); // stuck in the kernel: the watchdog must fire
    }
    const prog = this.programs[task.program];
    if (!prog) throw new Error(`no program "${task.program}"`);
    sh.ctl.or(kCtlCpusBusy, 1 << env.cpu);
    safePoint(env); // a checker may be stopping the machine: do not start under it
    sh.cpu.store(env.ctx, kCpuState, kCpuStateKernel);
    sh.cpu.store(env.ctx, kCpuTid, task.tid);
    const res: CpuTaskResult = { tid: task.tid, pid: task.pid, cpu: env.cpu, exit: 0, signal: 0, reports: [] };
    const entries = Object.keys(prog.threads ?? {}).sort();
    const comm = prog.name.slice(0, 15);
    let slot = -1;
    try {
      slot = task.main ? this.execve(task.pid, comm) : this.mmSlotOrThrow(task.pid);
      k.setCurrent(task.pid, slot, task.tid, comm);
      sh.threads.set(task.tid, kThreadCpu, env.cpu);
      sh.threads.store(task.tid, kThreadState, THREAD_RUNNING);
      switchMmIn(k, slot);
      const sys = new ProcSyscalls(k, this.mmu, entries, this.console);
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
        cpu: env.cpu,
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
      sh.cpu.store(env.ctx, kCpuPid, 0);
      sh.cpu.store(env.ctx, kCpuKernelEnterMs, -1);
      sh.cpu.store(env.ctx, kCpuState, kCpuStateIdle);
      sh.ctl.and(kCtlCpusBusy, ~(1 << env.cpu));
      k.setCurrent(0, -1, 0, '');
    }
    return res;
  }

  private runUser(prog: Program, u: UserContext, task: CpuTask, entries: string[], res: CpuTaskResult): number {
    const { sh, k } = this;
    try {
      if (task.main) return prog.main(u, task.argv);
      const name = at(entries, sh.threads.get(task.tid, kThreadEntry));
      const fn = prog.threads?.[name];
      if (!fn) throw new Error(`program ${prog.name} has no thread entry "${name}"`);
      return fn(u, sh.threadArgs.get(task.tid));
    } catch (e) {
      if (e instanceof ThreadExit) return e.code;
      if (e instanceof UserSignal) {
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
      throw e;
    }
  }

  private mmSlotOrThrow(pid: number): number {
    const s = this.k.mmSlotOf(pid);
    if (s < 0) throw new Error(`thread of pid ${pid} started after its process ended`);
    return s;
  }

  /** do_execve: a P-side mm (PGD, mmap_sem) and the M-side one (P2M_EXECVE). */
  private execve(pid: number, comm: string): number {
    const { sh, k } = this;
    let slot = -1;
    for (let s = 0; s < kMaxProcs; s++) {
      if (sh.mm.cas(s, kMmPid, 0, pid) === 0) {
        slot = s;
        break;
      }
    }
    if (slot < 0) throw new Error(`too many processes (${kMaxProcs})`);
    sh.mm.set(slot, kMmPgd, allocTablePage(sh));
    for (const f of [kMmSem, kMmCpumask, kMmKilled, kMmShootdowns, kMmSiCode, kMmSleepers]) sh.mm.store(slot, f, 0);
    sh.mm.store(slot, kMmUsers, 1);
    sh.mmF.set(slot, kMmMovingStart, -1);
    sh.mmF.set(slot, kMmMovingEnd, -1);
    sh.mmF.set(slot, kMmFaultAddr, -1);
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
    if (task.main) {
      // exit_group: if main ended normally with threads left, kill them (that SIGKILL is not the
      // process's fate: its exit code is main's). Otherwise the first fatal signal any thread took
      // is what the process died of, whatever unwound main afterwards.
      const ki = sh.mm.idx(slot, kMmKilled);
      const exitGroup = res.signal === 0 && Atomics.compareExchange(sh.mm.a, ki, 0, SIGKILL) === 0;
      if (Atomics.load(sh.mm.a, users) > 1)
        waitUntil(env, sh.mm.a, users, () => Atomics.load(sh.mm.a, users) <= 1, slot, LOCK_KIND.join);
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
    } else {
      this.mmRelease(task.tid, slot);
      Atomics.sub(sh.mm.a, users, 1);
      Atomics.notify(sh.mm.a, users);
      // the threads left may all sleep in waits that only this one could have ended
      checkHung(k, sh.mm.load(slot, kMmSleepers), task.tid);
      switchMmOut(k, slot);
    }
    sh.threads.set(task.tid, kThreadExit, res.exit);
    sh.threads.set(task.tid, kThreadSignal, res.signal);
    sh.threads.store(task.tid, kThreadState, THREAD_EXITED);
    sh.threads.notify(task.tid, kThreadState);
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
    switchMmOut(k, slot);
    sh.mm.store(slot, kMmPid, 0);
  }
}
