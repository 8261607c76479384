// The host: boots a split-kernel machine (S, then M, then P's CPUs and kernel threads) on worker
// threads, runs a program on it, drains the kernel log, runs the watchdog, and shuts everything down.
// A Machine is driven from the host thread only (its event loop: boot, run, the 20 ms tick, shutdown).
// Plain writes of shared words happen only in boot() before any worker exists, and for the main
// thread's kThreadPid in run() before its task is posted; everything else is Atomics, as layout.ts
// assigns: the host-only words (kCtlShutdown, kCtlSpawnTail, kPrintkTail, kRepTail), the consumer side
// of the spawn, printk and report rings, kCtlLiveThreads (Atomics.add), a tid per process it starts
// (allocTid), kMmKilled by CAS
// from 0 (interrupt), and the per-CPU and mm words the watchdog reads lockless. It takes no kernel
// lock; --check periodic enters stopMachine (kCtlStopMachine CAS) from the host with none held.
import { BroadcastChannel, Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';

import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Piscina } from 'piscina';
import type { MachineConfig } from '../kernel/config.ts';
import { Env } from '../kernel/env.ts';
import { Fabric } from '../fabric/ibapi.ts';
import {
  allocateShared,
  geometryFor,
  kCpuKernelEnterMs,
  kCpuLockKind,
  kCpuLockWait,
  kCpuPid,
  kCpuState,
  kCpuStateKernel,
  kCpuLockLastTaken,
  kCpuLockLastTakenKind,
  kCtlCpusOnline,
  kMmCpumask,
  kMmKilled,
  kMmPid,
  kMmSem,
  kMmSemOwner,
  kMmShootdowns,
  kCtlHostDoorbell,
  kCtlLiveThreads,
  kCtlNextTid,
  kThreadExec,
  kThreadParent,
  kCtlPgtableNext,
  kCtlShutdown,
  kCtlSpawnHead,
  kCtlSpawnTail,
  kMaxProcs,
  kMmMovingEnd,
  kMmMovingStart,
  kPrintkDropped,
  kPrintkHead,
  kPrintkSlotBytes,
  kPrintkSlots,
  kPrintkTail,
  kRecvDoorbell,
  kSpawnRing,
  kMaxTasks,
  kThreadPid,
  kNrNodes,
  Shared,
  CS_ENDED,
  ST_MEMORY,
  ST_STORAGE,
  ST_SWEEP,
  stCpu,
  type SharedBuffers,
} from '../kernel/layout.ts';
import { pcacheEarlyInit } from '../processor/pcache/init.ts';
import { stopMachine } from '../processor/stop.ts';
import { callSingleQueued } from '../processor/tlb.ts';
import { checkQuiescent } from '../processor/pcache/debug.ts';
import { Kern } from '../processor/kern.ts';
import { allocTid } from '../processor/pid.ts';
import type { CpuTask, CpuTaskResult } from '../processor/task.ts';
import { drainReports, reportsDropped, violationCount, type Violation } from '../kernel/report.ts';
import { LOCK_KIND } from '../kernel/sync.ts';
import { consoleChannel, type WorkerInit, type WorkerMsg } from '../kernel/workerdata.ts';
import {
  csAdmitTask,
  csDrain,
  csHalted,
  csMode,
  csParked,
  csPrepare,
  csStart,
  describeEvent,
  describeSthreads,
  eventPoint,
  eventYielder,
  sthreadName,
} from '../kernel/ctlsched.ts';
import { pointName } from '../kernel/points.ts';
import { kPrintkSlotLen, kPrintkSlotLevel, kPrintkSlotSeq, kPrintkTextOff } from '../kernel/layout.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const workersDir = path.resolve(here, '..', '..', 'workers');

/** An internal failure of the emulator (exit code 3). */
export class EmulatorFailure extends Error {}

export interface RunOutcome {
  pid: number;
  main: CpuTaskResult;
  threads: CpuTaskResult[];
  wallMs: number;
}

export interface ConsoleSink {
  /** program output (fd 1/2 of the workload) */
  console(fd: number, pid: number, data: Uint8Array): void;
  /** one kernel log line (already dmesg-stamped) */
  log(line: string, level: number): void;
  /** a thread's progress (programs that report it) */
  progress?(tid: number, done: number, total: number): void;
}

/** What CPUs post on the console channel. */
type ConsoleMsg =
  | { type: 'console'; fd: number; pid: number; data: Uint8Array }
  | { type: 'progress'; tid: number; done: number; total: number }
  | { type: 'exec'; pid: number; n: number; program: string; argv: string[] };

export class Machine {
  readonly sh: Shared;
  readonly bufs: SharedBuffers;
  readonly bootEpochMs: number;
  readonly env: Env;
  readonly k: Kern;
  /** the violation records read so far; violationCount is how many were reported */
  readonly violations: Violation[] = [];
  /** violations every context counted: the exit code's truth, whatever records were read */
  get violationCount(): number {
    return violationCount(this.sh);
  }
  /** records lost to a full report ring (their violations are counted) */
  get violationsDropped(): number {
    return reportsDropped(this.sh);
  }
  /** final contents of files the workload wrote on S */
  readonly files = new Map<string, Uint8Array>();
  private pool: Piscina | undefined;
  private readonly workers = new Map<string, Worker>();
  private timer: NodeJS.Timeout | undefined;
  private console: BroadcastChannel | undefined;
  private failure: EmulatorFailure | undefined;
  private failWaiters: Array<(e: EmulatorFailure) => void> = [];
  /** tasks in the pool, by start order (a tid can be freed and handed out again while a promise settles) */
  private running = new Map<number, { task: CpuTask; promise: Promise<CpuTaskResult> }>();
  private taskSeq = 0;
  private results: CpuTaskResult[] = [];
  private readonly dec = new TextDecoder();
  bootMs = 0;
  logDropped = 0;

  constructor(
    readonly cfg: MachineConfig,
    private readonly sink: ConsoleSink,
    private readonly memFiles: Record<string, Uint8Array> = {},
    /** --sched replay: the decisions to follow */
    private readonly replay?: Uint32Array,
  ) {
    const geo = geometryFor(
      { pcacheBytes: cfg.pcacheBytes, ways: cfg.ways, victim: cfg.victim, cpus: cfg.cpus, sched: cfg.sched },
      replay?.length ?? 0,
    );
    this.bufs = allocateShared(geo);
    this.sh = new Shared(this.bufs);
    this.bootEpochMs = performance.timeOrigin + performance.now();
    this.env = new Env(this.sh, {
      ctx: geo.ctx.host,
      cpu: -1,
      name: 'host',
      bootEpochMs: this.bootEpochMs,
      config: cfg,
    });
    this.k = new Kern(this.env, new Fabric(this.env));
  }

  private init(): WorkerInit {
    return { bufs: this.bufs, config: this.cfg, bootEpochMs: this.bootEpochMs };
  }

  /** Boot S, then M, then P (CPUs, then kernel threads). */
  async boot(): Promise<void> {
    const { sh, env, cfg } = this;
    const t0 = performance.now();
    pcacheEarlyInit(sh);
    sh.ctl.store(kCtlPgtableNext, 1);
    sh.ctl.store(kCtlNextTid, 1);
    for (let s = 0; s < kMaxProcs; s++) {
      sh.mmF.set(s, kMmMovingStart, -1);
      sh.mmF.set(s, kMmMovingEnd, -1);
    }
    const geo = sh.geo;
    env.printk(
      'notice',
      `splitkern: booting ${cfg.topology} with ${cfg.cpus} CPU${cfg.cpus > 1 ? 's' : ''}, seed ${cfg.seed}`,
    );
    env.printk(
      'notice',
      `pcache: ${fmtBytes(cfg.pcacheBytes)}, ${geo.nrLines} lines of 4 KiB, ${geo.ways}-way, ${geo.nrSets} sets, set_mask 0x${geo.setMask.toString(16)}, evict ${cfg.evict}, victim ${cfg.victim ? `${cfg.victim} entries` : 'off'}`,
    );
    this.timer = setInterval(() => this.tick(), 20);
    this.timer.unref();
    this.console = new BroadcastChannel(consoleChannel(this.bootEpochMs));
    this.console.onmessage = (ev: unknown) => {
      const m = (ev as { data: ConsoleMsg }).data;
      if (m.type === 'progress') this.sink.progress?.(m.tid, m.done, m.total);
      else if (m.type === 'exec') this.execed(m.pid, m.n, m.program, m.argv);
      else this.sink.console(m.fd, m.pid, m.data);
    };
    if (cfg.topology === '1P-1M-1S')
      await this.startWorker('storage', 'storage.cjs', { ...this.init(), memFiles: this.memFiles });
    else env.printk('notice', 'storage: none in this topology (1P-1M): file system calls fail with ENODEV');
    await this.startWorker('memory', 'memory.cjs', this.init());
    // P: each CPU's idle context brings its CPU up; then the task pool, one worker per live user thread
    await Promise.all([...Array(cfg.cpus).keys()].map((c) => this.startWorker(`cpu${c}`, 'cpu.cjs', this.init())));
    const all = (1 << cfg.cpus) - 1;
    await this.waitFor(() => (sh.ctl.load(kCtlCpusOnline) & all) === all, 60_000, 'CPU bring-up');
    this.pool = new Piscina({
      filename: path.join(workersDir, 'task.cjs'),
      minThreads: cfg.cpus,
      maxThreads: kMaxTasks,
      concurrentTasksPerWorker: 1,
      // A task worker sets itself up asynchronously when it starts (piscina's default Atomics.wait
      // between tasks would block that).
      atomics: 'disabled',
      idleTimeout: 2 ** 31 - 1,
      workerData: this.init(),
    });
    this.pool.on('error', (e: unknown) => this.fail(`a task worker crashed: ${errText(e)}`));
    // the first workers are ready before the machine is up (later ones start with their thread)
    const pool = this.pool;
    await Promise.race([Promise.all([...Array(cfg.cpus).keys()].map(() => pool.run('warm-up'))), this.failed()]);
    if (cfg.sweep) await this.startWorker('sweep', 'sweep.cjs', this.init());
    if (this.env.cs) await this.gather();
    this.bootMs = performance.now() - t0;
    env.printk('notice', `splitkern: ${cfg.topology} up in ${this.bootMs.toFixed(0)} ms: ${cfg.cpus} CPUs online`);
    this.drainLog();
  }

  /** The system sthreads of a controlled schedule, in the live list's fixed order. */
  private systemSthreads(): number[] {
    const cfg = this.cfg;
    return [
      ST_MEMORY,
      ...(cfg.topology === '1P-1M-1S' ? [ST_STORAGE] : []),
      ...[...Array(cfg.cpus).keys()].map(stCpu),
      ...(cfg.sweep ? [ST_SWEEP] : []),
    ];
  }

  /** A controlled schedule: every system sthread parks at its idle wait before the first decision. */
  private async gather(): Promise<void> {
    const system = this.systemSthreads();
    const s = this.cfg.sched;
    csPrepare(this.sh, {
      seed: this.cfg.seed,
      system,
      pctDepth: s.mode === 'pct' ? s.pctDepth : 0,
      pctSteps: s.pctSteps,
      replay: this.replay ? Int32Array.from(this.replay, (w) => w | 0) : undefined,
    });
    await this.waitFor(() => csParked(this.sh) === system.length, 30_000, 'the controlled schedule gather');
  }

  /** The decisions of the controlled schedule so far (drained from its ring by the host). */
  readonly schedEvents: number[] = [];
  /**
   * sha256 of the machine's state where a controlled schedule ended or halted (the pcache, its
   * metadata, rmaps, page tables, mms, TLBs, victim cache, thread table), taken while it is frozen.
   */
  stateHash: string | undefined;

  private hashState(): void {
    const b = this.bufs;
    const h = createHash('sha256');
    for (const buf of [
      b.pcdata,
      b.pcmeta,
      b.pcset,
      b.pcsetEvictAddr,
      b.rmap,
      b.rmapAddr,
      b.pgtable,
      b.ptl,
      b.mm,
      b.mmF,
      b.tlbVpn,
      b.tlbVal,
      b.victim,
      b.victimAddr,
      b.victimData,
      b.threads,
    ])
      h.update(new Uint8Array(buf));
    this.stateHash = h.digest('hex');
  }

  private startWorker(name: string, file: string, data: WorkerInit): Promise<void> {
    return Promise.race([this.spawnWorker(name, file, data), this.failed()]);
  }

  private spawnWorker(name: string, file: string, data: WorkerInit): Promise<void> {
    return new Promise((resolve, reject) => {
      const w = new Worker(path.join(workersDir, file), { workerData: data });
      this.workers.set(name, w);
      let online = false;
      w.on('message', (m: WorkerMsg) => {
        if (m.type === 'online') {
          online = true;
          resolve();
        } else this.onMessage(m);
      });
      w.on('error', (e) => {
        const f = this.fail(`${name} worker crashed: ${errText(e)}`);
        if (!online) reject(f);
      });
      w.on('exit', (code) => {
        this.workers.delete(name);
        if (this.sh.ctl.load(kCtlShutdown) === 0) {
          const f = this.fail(`${name} worker exited unexpectedly (code ${code})`);
          if (!online) reject(f);
        }
      });
    });
  }

  private onMessage(m: WorkerMsg): void {
    if (m.type === 'console') this.sink.console(m.fd, m.pid, m.data);
    else if (m.type === 'file') this.files.set(m.path, m.data);
    else if (m.type === 'fatal') this.fail(`${m.who}: ${m.message}`);
  }

  /** Record the first internal failure; everything waiting on the machine rejects with it. */
  fail(msg: string): EmulatorFailure {
    if (!this.failure) {
      this.failure = new EmulatorFailure(msg);
      this.sh.ctl.store(kCtlShutdown, 2);
      for (const w of this.failWaiters) w(this.failure);
      this.failWaiters = [];
    }
    return this.failure;
  }

  private failed(): Promise<never> {
    return new Promise((_, reject) => {
      if (this.failure) reject(this.failure);
      else this.failWaiters.push(reject);
    });
  }

  private async waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
    const t0 = performance.now();
    while (!cond()) {
      if (this.failure) throw this.failure;
      if (performance.now() - t0 > ms) throw this.fail(`${what} did not finish within ${ms / 1000} s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Run `program argv` as a new process; resolves when it and all its threads are done. */
  async run(program: string, argv: string[]): Promise<RunOutcome> {
    const [one] = await this.runAll([{ program, argv }]);
    if (!one) throw new Error('machine: runAll returned no outcome');
    return one;
  }

  /**
   * Run several programs as independent processes at once (each its own mm, sharing the CPUs and the
   * pcache); resolves with each one's outcome, in the order given, when all of them and all their
   * threads are done. Their main threads start in that order.
   */
  async runAll(procs: ReadonlyArray<{ program: string; argv: string[] }>): Promise<RunOutcome[]> {
    const { sh } = this;
    this.results = [];
    const mains: Array<{ pid: number; ended: Promise<{ r: CpuTaskResult; at: number }>; t0: number }> = [];
    const spawnLoop = this.spawnLoop();
    try {
      for (const { program, argv } of procs) {
        const pid = allocTid(sh);
        if (pid < 0) throw new Error('machine: no free tid for a new process');
        csAdmitTask(sh, pid);
        sh.ctl.add(kCtlLiveThreads, 1);
        sh.threads.set(pid, kThreadPid, pid);
        this.procs.set(pid, { program, argv });
        const running = this.startTask({ tid: pid, pid, program, argv, main: true });
        // each main's own end, stamped when it settles (not when the loop below gets to it)
        const ended = running.promise.then((r) => ({ r, at: performance.now() }));
        ended.catch(() => {}); // a failed task fails the machine: the race below reports that
        mains.push({ pid, ended, t0: performance.now() });
      }
      if (this.env.cs) csStart(sh, this.env.cs);
      const outcomes: RunOutcome[] = [];
      for (const m of mains) {
        const { r: main, at } = await Promise.race([m.ended, this.failed()]);
        outcomes.push({ pid: m.pid, main, threads: [], wallMs: at - m.t0 });
      }
      // Threads end before their main does (exit_group waits for them), but their promises settle after.
      while (this.running.size > 0)
        await Promise.race([Promise.all([...this.running.values()].map((r) => r.promise)), this.failed()]);
      for (const o of outcomes) o.threads = this.results.filter((r) => r.pid === o.pid && r.tid !== o.pid);
      if (this.env.cs) {
        // the schedule ended with the last task: the machine is frozen until shutdown
        await this.waitFor(() => csMode(sh) === CS_ENDED, 10_000, 'the end of the controlled schedule');
        csDrain(sh, this.schedEvents);
        this.hashState();
      }
      this.drainLog();
      return outcomes;
    } finally {
      this.spawning = false;
      sh.ctl.add(kCtlHostDoorbell, 1);
      sh.ctl.notify(kCtlHostDoorbell);
      await spawnLoop;
    }
  }

  private spawning = false;
  /** what each process runs, by pid: its threads run the same program */
  private readonly procs = new Map<number, { program: string; argv: string[] }>();

  private startTask(task: CpuTask): { task: CpuTask; promise: Promise<CpuTaskResult> } {
    if (!this.pool) throw new Error('machine: a task was started before the task pool');
    const seq = this.taskSeq++;
    const promise = (this.pool.run(task) as Promise<CpuTaskResult>).then(
      (r) => {
        this.results.push(r);
        this.running.delete(seq);
        return r;
      },
      (e: unknown) => {
        this.running.delete(seq);
        throw this.fail(`task of tid ${task.tid} failed: ${errText(e)}`);
      },
    );
    promise.catch(() => {});
    const entry = { task, promise };
    this.running.set(seq, entry);
    return entry;
  }

  /**
   * A process exec'd image n of `program`: its threads from now on run that program (the kThreadExec
   * handshake, processor/syscalls.ts execve). The exec'ing thread waits for this acknowledgement.
   */
  private execed(pid: number, n: number, program: string, argv: string[]): void {
    this.procs.set(pid, { program, argv });
    this.sh.threads.store(pid, kThreadExec, n);
    this.sh.threads.notify(pid, kThreadExec);
  }

  /** Threads created by clone() reach the host through the spawn ring. */
  private async spawnLoop(): Promise<void> {
    const { sh } = this;
    this.spawning = true;
    while (this.spawning && !this.failure) {
      const seen = sh.ctl.load(kCtlHostDoorbell);
      let tail = sh.ctl.load(kCtlSpawnTail);
      while (tail < sh.ctl.load(kCtlSpawnHead)) {
        const entry = tail % kSpawnRing;
        const tid = sh.spawn.load(entry);
        if (tid === 0) break; // reserved, not yet written
        sh.spawn.store(entry, 0);
        tail++;
        sh.ctl.store(kCtlSpawnTail, tail);
        const pid = sh.threads.get(tid, kThreadPid);
        // a fork's child leads a new process that runs its parent's program (until it calls execve)
        const parent = tid === pid ? sh.threads.get(tid, kThreadParent) : 0;
        const proc = this.procs.get(parent !== 0 ? parent : pid);
        if (!proc) throw this.fail(`clone: tid ${tid} belongs to pid ${pid}, which the host never started`);
        if (parent !== 0) this.procs.set(pid, proc);
        this.startTask({ tid, pid, program: proc.program, argv: proc.argv, main: false });
      }
      const w = sh.ctl.waitAsync(kCtlHostDoorbell, seen, 50);
      if (w.async) await w.value;
    }
  }

  /** Periodic host work: kernel log, watchdog, --check periodic, the controlled schedule's ring. */
  private tick(): void {
    this.drainLog();
    if (this.env.cs) {
      csDrain(this.sh, this.schedEvents);
      this.scheduleHalted();
    } else this.watchdog();
    if (
      this.cfg.check === 'periodic' &&
      this.running.size > 0 &&
      !this.failure &&
      performance.now() - this.lastCheck >= 100
    ) {
      this.lastCheck = performance.now();
      // stop_machine from the host: every CPU parks at a safe point, the checker runs, they resume.
      stopMachine(this.env, this.cfg.sweep, () => checkQuiescent(this.k, 'periodic'));
      this.periodicChecks++;
    }
  }
  private lastCheck = 0;
  periodicChecks = 0;

  /** Move the kernel log to the sink and the violation records into `violations`. */
  drainLog(final = false): void {
    const { sh } = this;
    drainReports(sh, this.violations, final);
    const hdr = sh.printkHdr;
    const slots = sh.printkSlots;
    let tail = hdr.load(kPrintkTail);
    const head = hdr.load(kPrintkHead);
    if (head - tail > kPrintkSlots) {
      this.logDropped += head - tail - kPrintkSlots;
      tail = head - kPrintkSlots;
    }
    while (tail < head) {
      const slot = tail % kPrintkSlots;
      const seq = slots.load(slot, kPrintkSlotSeq);
      if (seq !== tail + 1) {
        if (seq > tail + 1) {
          this.logDropped++;
          tail++;
          continue;
        } // overwritten
        break; // not committed yet
      }
      const len = slots.load(slot, kPrintkSlotLen);
      const level = slots.load(slot, kPrintkSlotLevel);
      const base = slot * kPrintkSlotBytes + kPrintkTextOff;
      const line = this.dec.decode(sh.printkBytes.slice(base, base + len));
      slots.store(slot, kPrintkSlotSeq, 0);
      tail++;
      this.sink.log(line, level);
    }
    hdr.store(kPrintkTail, tail);
    this.logDropped += hdr.xchg(kPrintkDropped, 0);
  }

  /**
   * A controlled schedule halted (ctlsched.ts): the machine is frozen where it stopped. A stuck CPU is
   * the watchdog's report, as in free running; a deadlock or a replay that left its schedule is an
   * internal failure, said with the step and who waited where.
   */
  private scheduleHalted(): void {
    const h = csHalted(this.sh);
    if (!h || this.failure) return;
    csDrain(this.sh, this.schedEvents);
    this.hashState();
    if (h.why === 'watchdog') {
      this.watchdog(h.arg);
      return;
    }
    if (h.why === 'deadlock') {
      for (const line of describeSthreads(this.sh)) this.env.printk('error', `ctlsched: ${line}`);
      this.drainLog();
      this.fail(
        `controlled schedule: deadlock at step ${h.step}: every context is blocked and none has a timeout (${describeEvent(h.actual)} was the last to block)`,
      );
      return;
    }
    const expected =
      h.expected < 0 ? 'the schedule had no more decisions' : `the schedule expected ${describeEvent(h.expected)}`;
    this.fail(
      `replay diverged at step ${h.step}: ${sthreadName(eventYielder(h.actual))} reached ${pointName(eventPoint(h.actual))}, but ${expected}${h.expected >= 0 && eventYielder(h.expected) === eventYielder(h.actual) && eventPoint(h.expected) === eventPoint(h.actual) ? ` (which could not run: ${h.arg} could)` : ''}`,
    );
  }

  /**
   * Soft-lockup detector (kernel/watchdog.c): a CPU in the kernel for longer than --watchdog. Under a
   * controlled schedule the decision loop finds it (in logical time) and names the CPU: `only`.
   */
  private watchdog(only = -1): void {
    if (this.failure) return;
    const { sh, cfg } = this;
    const now = this.env.nowMs();
    for (let c = 0; c < cfg.cpus; c++) {
      if (only >= 0 && c !== only) continue;
      const since = sh.cpu.load(c, kCpuKernelEnterMs);
      if (sh.cpu.load(c, kCpuState) !== kCpuStateKernel || since < 0) continue;
      const stuck = (now - since) / 1000;
      if (stuck < cfg.watchdogSec) continue;
      const pid = sh.cpu.load(c, kCpuPid);
      this.env.printk('error', `watchdog: BUG: soft lockup - CPU#${c} stuck for ${Math.floor(stuck)}s! [pid:${pid}]`);
      // Like an NMI backtrace of every CPU: what each one is doing.
      for (let o = 0; o < cfg.cpus; o++) this.env.printk('error', `watchdog: ${this.describeCpu(o)}`);
      for (let s = 0; s < kMaxProcs; s++) {
        const pidS = sh.mm.load(s, kMmPid);
        const owner = sh.mm.load(s, kMmSemOwner);
        if (pidS)
          this.env.printk(
            'error',
            `watchdog: mm of pid ${pidS}: mmap_sem 0x${sh.mm.load(s, kMmSem).toString(16)}${owner ? ` (held for write by CPU#${owner - 1})` : ''} cpumask 0x${sh.mm.load(s, kMmCpumask).toString(16)} shootdowns in flight ${sh.mm.load(s, kMmShootdowns)}`,
          );
      }
      this.drainLog();
      const waitKind = sh.cpu.load(c, kCpuLockWait) ? lockKindName(sh.cpu.load(c, kCpuLockKind)) : '';
      this.fail(
        `soft lockup: CPU#${c} stuck in the kernel for ${Math.floor(stuck)} s${waitKind ? ` waiting for ${waitKind}` : ''} (--watchdog ${cfg.watchdogSec})`,
      );
      return;
    }
  }

  describeCpu(c: number): string {
    const { sh } = this;
    const state = ['idle', 'user', 'kernel'][sh.cpu.load(c, kCpuState)] ?? '?';
    const wait = sh.cpu.load(c, kCpuLockWait);
    const kind = sh.cpu.load(c, kCpuLockKind);
    const kindName = lockKindName(kind);
    const pid = sh.cpu.load(c, kCpuPid);
    const pending = callSingleQueued(sh, c);
    // the last lock this CPU took (it may have released it since: unlocks are not tracked)
    const held = sh.cpu.load(c, kCpuLockLastTaken);
    const heldKind = lockKindName(sh.cpu.load(c, kCpuLockLastTakenKind));
    const holders = wait
      ? [...Array(this.cfg.cpus).keys()].filter(
          (o) =>
            o !== c && sh.cpu.load(o, kCpuLockLastTaken) === wait && sh.cpu.load(o, kCpuLockLastTakenKind) === kind,
        )
      : [];
    return `CPU#${c} ${state}${pid ? ` pid ${pid}` : ''}${wait ? `, waiting for ${kindName} ${wait - 1}${holders.length ? ` (last taken by CPU#${holders.join(', CPU#')})` : ''}` : ''}${held ? `, last lock taken: ${heldKind} ${held - 1}` : ''}${pending ? ', call_single_queue not empty' : ''}`;
  }

  /**
   * SIGINT/SIGTERM on the host: every live process takes that fatal signal, as if the kernel had sent
   * it. Its threads unwind at their next interrupt point or kernel wait (kMmKilled is what every wait
   * loop and the MMU's interrupt check), main's exit_group tears the process down, and run() returns.
   */
  interrupt(signo: number): void {
    const { sh } = this;
    for (let s = 0; s < kMaxProcs; s++) {
      if (sh.mm.load(s, kMmPid) === 0) continue;
      const ki = sh.mm.idx(s, kMmKilled);
      Atomics.compareExchange(sh.mm.a, ki, 0, signo);
      Atomics.notify(sh.mm.a, ki);
    }
  }

  /** Stop every worker. Never leaves one behind, whatever state the machine is in. */
  async shutdown(): Promise<void> {
    const { sh } = this;
    if (sh.ctl.load(kCtlShutdown) === 0) sh.ctl.store(kCtlShutdown, 1);
    for (let n = 0; n < kNrNodes; n++) {
      sh.recv.add(n, kRecvDoorbell, 1);
      sh.recv.notify(n, kRecvDoorbell);
    }
    const clean = !this.failure;
    const exits = [...this.workers.values()].map(
      (w) =>
        new Promise<void>((r) => {
          if (w.threadId < 0) {
            r();
            return;
          }
          w.once('exit', () => r());
        }),
    );
    if (clean) {
      // Give M, S and the kthreads a moment to leave their loops (S sends final file contents).
      const t = setTimeout(() => {
        for (const w of this.workers.values()) void w.terminate();
      }, 2000);
      await Promise.all(exits);
      clearTimeout(t);
    } else {
      for (const w of this.workers.values()) void w.terminate();
      await Promise.all(exits);
    }
    if (this.pool) {
      const pool = this.pool;
      this.pool = undefined;
      // A CPU stuck in a kernel loop never returns its task: terminate its worker thread.
      if (!clean) for (const t of pool.threads) void t.terminate();
      await pool.destroy().catch(() => {});
    }
    if (this.timer) clearInterval(this.timer);
    // Console messages posted by CPUs just before they finished are delivered on the next turns.
    await new Promise((r) => setTimeout(r, 10));
    this.console?.close();
    this.drainLog(true);
  }
}

export function errText(e: unknown): string {
  if (e instanceof Error) return e.stack ?? e.message;
  return String(e);
}

export function fmtBytes(n: number): string {
  if (n >= 1 << 30 && n % (1 << 30) === 0) return `${n / (1 << 30)} GiB`;
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** LOCK_KIND's name of a kind number, as the watchdog prints it. */
function lockKindName(kind: number): string {
  return Object.entries(LOCK_KIND).find(([, v]) => v === kind)?.[0] ?? 'lock';
}
