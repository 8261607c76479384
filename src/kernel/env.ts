// The per-worker kernel environment: which context this worker is, its shared views, the kernel log,
// its statistics row, and the two hooks every wait loop calls: `irq` (service incoming IPIs: a CPU
// waiting for anything must keep answering TLB shootdowns, or two CPUs deadlock) and `sched` (named
// schedule points in the race paths; no-ops unless jitter or a controlled scheduler is installed), and
// `wait`, through which every kernel wait goes, so that a controlled scheduler can make it a schedule point.
// An Env belongs to one worker and is used only on its own thread (the host has its own). printk
// reserves a ring slot with Atomics.add on kPrintkHead and commits it by the Atomics.store of its seq;
// stat/statMax write this context's stats row plainly (its only writer). No lock is taken, so callers
// may hold any kernel lock.
import { workerData } from 'node:worker_threads';
import {
  Shared,
  kPrintkDropped,
  kPrintkHead,
  kPrintkSlotBytes,
  kPrintkSlotLen,
  kPrintkSlotLevel,
  kPrintkSlotSeq,
  kPrintkSlots,
  kPrintkTextOff,
  type Contexts,
} from './layout.ts';
import type { BugFlag, MachineConfig } from './config.ts';
import { BUG_FLAGS } from './config.ts';
import { bugStatName, S } from './stats.ts';
import type { WorkerInit } from './workerdata.ts';
import { CtlSched, type WaitResult } from './ctlsched.ts';
import type { SchedPoint } from './points.ts';

const S_BUG = Object.fromEntries(BUG_FLAGS.map((f) => [f, S[bugStatName(f)]])) as Record<BugFlag, number>;

/** `notice` is shown at every --log-level (boot messages), like errors. */
export const LOGLEVEL = { notice: 0, error: 0, warn: 1, info: 2, debug: 3 } as const;
export type Level = keyof typeof LOGLEVEL;

export interface EnvInit {
  ctx: number;
  cpu: number; // -1 for non-CPU contexts
  name: string; // "cpu0", "memory", "storage", "kevict_sweepd", "host"
  bootEpochMs: number; // performance.timeOrigin + now() of the host at boot
  config: MachineConfig;
}

export class Env {
  /**
   * The context and CPU this worker runs as. Fixed for M, S, kernel threads and a CPU's idle context;
   * a task (processor/sched.ts) takes the CPU's context while it owns that CPU and holds -1 off-CPU,
   * where it touches no per-context state.
   */
  ctx: number;
  cpu: number;
  /** "cpu0", "memory", …; a task takes its CPU's name while it runs there */
  name: string;
  readonly bootEpochMs: number;
  readonly config: MachineConfig;
  readonly logLevel: number;
  private readonly enc = new TextEncoder();
  /** service pending IPIs; replaced by the CPU's handler once it is online */
  irq: () => void = () => {};
  /** named schedule point; replaced when --jitter or a controlled scheduler is active */
  sched: (point: SchedPoint) => void = () => {};
  /** the controlled scheduler (--sched random|pct|replay), undefined when the machine runs free */
  readonly cs: CtlSched | undefined;
  readonly bugs: ReadonlySet<BugFlag>;

  constructor(
    readonly sh: Shared,
    init: EnvInit,
  ) {
    this.ctx = init.ctx;
    this.cpu = init.cpu;
    this.name = init.name;
    this.bootEpochMs = init.bootEpochMs;
    this.config = init.config;
    this.logLevel = LOGLEVEL[init.config.logLevel];
    this.bugs = new Set(init.config.bugs);
    if (init.config.jitter > 0) this.sched = jitter(init.config.jitter, init.config.seed, init.ctx);
    if (init.config.sched.mode !== 'free') {
      const cs = new CtlSched(sh, init.config);
      this.cs = cs;
      this.sched = (p) => cs.yield(p);
    }
  }

  /**
   * milliseconds since boot, shared clock across workers; in a controlled mode the logical clock of
   * the schedule (kSchedStepUs per decision), which every timeout and stamp of the kernel then follows
   */
  nowMs(): number {
    if (this.cs) return this.cs.nowMs();
    return performance.timeOrigin + performance.now() - this.bootEpochMs;
  }

  /**
   * Every kernel wait: Atomics.wait(a, i, v, timeoutMs) when the machine runs free; under a controlled
   * scheduler a schedule point where this context blocks on a[i] (and, on a CPU, on its doorbell, unless
   * `irqWake` is false) and hands the turn on. Callers loop on their condition, as with Atomics.wait.
   */
  wait(
    a: Int32Array,
    i: number,
    v: number,
    timeoutMs: number | undefined,
    point: SchedPoint,
    irqWake = true,
  ): WaitResult {
    if (!this.cs) return Atomics.wait(a, i, v, timeoutMs);
    return this.cs.wait(a, i, v, timeoutMs, point, irqWake && this.cpu >= 0 ? this.ctx : -1);
  }

  /** printk: one line into the shared log ring, stamped like dmesg. */
  printk(level: Level, msg: string): void {
    if (LOGLEVEL[level] > this.logLevel) return;
    for (const line of msg.split('\n')) this.printkLine(level, line);
  }

  private printkLine(level: Level, line: string): void {
    const { printkHdr, printkSlots, printkBytes } = this.sh;
    const seq = printkHdr.add(kPrintkHead, 1);
    const slot = seq % kPrintkSlots;
    // A slot still holding an unread record is overwritten; count it so the host can say so.
    if (printkSlots.load(slot, kPrintkSlotSeq) !== 0) printkHdr.add(kPrintkDropped, 1);
    const t = this.nowMs() / 1000;
    const stamp = `[${t.toFixed(6).padStart(12)}] `;
    const text = this.enc.encode(stamp + line);
    const n = Math.min(text.length, kPrintkSlotBytes - kPrintkTextOff);
    printkBytes.set(text.subarray(0, n), slot * kPrintkSlotBytes + kPrintkTextOff);
    printkSlots.store(slot, kPrintkSlotLen, n);
    printkSlots.store(slot, kPrintkSlotLevel, LOGLEVEL[level]);
    printkSlots.store(slot, kPrintkSlotSeq, seq + 1); // commit
  }

  /**
   * A bug flag's broken branch just did what the fixed kernel refuses to do: count it
   * (`nr_bug_<flag>`), so a reproduction can prove that the broken path really ran.
   */
  bugRan(flag: BugFlag, n = 1): void {
    this.stat(S_BUG[flag], n);
  }

  stat(i: number, n = 1): void {
    this.sh.stats.bump(this.ctx, i, n);
  }
  statMax(i: number, v: number): void {
    if (v > this.sh.stats.get(this.ctx, i)) this.sh.stats.set(this.ctx, i, v);
  }
}

/**
 * --jitter P: at each named schedule point, with probability P, spin for a random 1-50 µs drawn from
 * the run's seed (per context), to widen race windows the way serialising the fabric widened them for
 * LegoOS's author. Every schedule point goes through Env.sched, so a controlled scheduler can replace
 * this one later (record, replay, PCT).
 */
function jitter(p: number, seed: number, ctx: number): (point: string) => void {
  let st = (seed * 2654435761 + ctx * 97 + 13) >>> 0;
  const rnd = (): number => {
    let t = (st = (st + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => {
    if (rnd() >= p) return;
    const until = performance.now() + (1 + rnd() * 49) / 1000;
    while (performance.now() < until) {
      /* delay inside the window */
    }
  };
}

/**
 * A component worker's start (M, S, a P kernel thread): what the host handed it, the views over the
 * shared buffers, and the kernel environment of its context (`pick` names it among the contexts, and
 * `sthread` is its id under a controlled scheduler: layout.ts ST_*).
 */
export function workerEnv(
  pick: (ctx: Contexts) => number,
  name: string,
  sthread: number,
): { init: WorkerInit; sh: Shared; env: Env } {
  const init = workerData as WorkerInit;
  const sh = new Shared(init.bufs);
  const env = new Env(sh, { ctx: pick(sh.geo.ctx), cpu: -1, name, bootEpochMs: init.bootEpochMs, config: init.config });
  if (env.cs) env.cs.self = sthread;
  return { init, sh, env };
}
