// The controlled scheduler (--sched random | pct:D | replay:FILE): exactly one schedulable thread
// ("sthread": M, S, kevict_sweepd, a CPU's idle context, a task) runs at a time, the one holding the
// turn, and at every schedule point the holder decides who runs next. The decision depends only on
// shared state and the run's seed (random, PCT) or on a recorded schedule (replay), so a run is
// repeated exactly. This is the mechanism sched.ts's CPUs use to hand a CPU on, one level up: a
// CPU is handed from task to task, the turn from sthread to sthread.
//
// A schedule point is Env.sched (a named race window: a decision, the holder may keep the turn) or
// Env.wait (the holder blocks: it watches one word, and a CPU context also its doorbell, with a
// timeout in logical time, and is runnable again when one of them changes or the timeout passes). If
// every sthread is blocked the clock jumps to the earliest timeout; if none has one, that is a deadlock
// and the schedule halts. Logical time: each decision is kSchedStepUs µs; every clock of the kernel
// (printk stamps, the watchdog, timeouts, the time slice, clock_gettime) reads it.
//
// Life of a controlled run: boot runs free; the host lists the system sthreads (live list, fixed
// order) and sets CS_GATHER; each parks at its next wait (its idle wait); the host admits the main
// tasks and sets CS_RUN and makes the first decision. A task's worker enters when it is handed the
// turn; clone and fork admit their new task (its worker arrives when it is chosen: the giver waits
// for it). The last task to exit sets CS_ENDED and hands the turn to nobody: the machine stays frozen
// for the host to hash, and the system sthreads go back to free running at shutdown. A halt (deadlock,
// watchdog, a replay that diverged) freezes it the same way for the host to report.
//
// Words (layout.ts kCs*, kSt*, csTime, csLog): written by the turn holder; the host writes them only
// while nobody holds the turn (before the first decision). The host drains the event ring (kCsLogTail);
// a holder that finds it full waits for the host without giving the turn away. No kernel lock is taken,
// so a decision can be made under any lock: the holder keeps its locks while another sthread runs, as a
// CPU that is merely slower would.
import {
  CS_ENDED,
  CS_GATHER,
  CS_HALTED,
  CS_HALT_DEADLOCK,
  CS_HALT_DIVERGED,
  CS_HALT_WATCHDOG,
  CS_RUN,
  kCpuDoorbell,
  kCpuKernelEnterMs,
  kCpuState,
  kCpuStateKernel,
  kCsHalt,
  kCsHaltArg,
  kCsHash,
  kCsJumps,
  kCsLiveBase,
  kCsLiveTasks,
  kCsLogEntries,
  kCsLogHead,
  kCsLogTail,
  kCsMode,
  kCsNLive,
  kCsParked,
  kCsPctChangeBase,
  kCsPctDepth,
  kCsPctMaxChanges,
  kCsReplayLen,
  kCsReplayPos,
  kCsRng,
  kCsStep,
  kCsSwitches,
  kCsTurn,
  kCtlHostDoorbell,
  kCtlShutdown,
  kStBuf,
  kStBuf2,
  kStGo,
  kStIdx,
  kStIdx2,
  kStPoint,
  kStPrio,
  kStState,
  kStVal,
  kStVal2,
  perCpuBase,
  ST_ABSENT,
  ST_BLOCKED,
  ST_HOST,
  ST_MEMORY,
  ST_READY,
  ST_STORAGE,
  ST_SWEEP,
  stCpu,
  stTask,
  type Shared,
} from './layout.ts';
import { kSchedStepUs, type MachineConfig } from './config.ts';
import { pointId, pointName, type SchedPoint } from './points.ts';

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

// ---- event words: what a schedule file stores per decision ----
/** yielder (9 bits) | point (7 bits) << 9 | chosen (9 bits) << 16 */
export const packEvent = (yielder: number, point: number, chosen: number): number =>
  (yielder & 0x1ff) | ((point & 0x7f) << 9) | ((chosen & 0x1ff) << 16);
export const eventYielder = (w: number): number => w & 0x1ff;
export const eventPoint = (w: number): number => (w >>> 9) & 0x7f;
export const eventChosen = (w: number): number => (w >>> 16) & 0x1ff;
/** "nobody": the chosen field of a halt's actual event */
export const kNobody = 0x1ff;

/** FNV-1a step over one event word (the schedule's rolling hash, kCsHash) */
export function fnvWord(h: number, w: number): number {
  let x = h >>> 0;
  for (let b = 0; b < 4; b++) {
    x ^= (w >>> (8 * b)) & 0xff;
    x = Math.imul(x, 16777619) >>> 0;
  }
  return x;
}
export const kFnvBasis = 2166136261;

/** sfc32 over the four kCsRng words: the decisions' generator, seeded from --seed by the host */
function rngNext(sh: Shared): number {
  const a = sh.cs.get(kCsRng);
  const b = sh.cs.get(kCsRng + 1);
  const c = sh.cs.get(kCsRng + 2);
  const d = sh.cs.get(kCsRng + 3);
  const t = (((a + b) | 0) + d) | 0;
  sh.cs.set(kCsRng + 3, (d + 1) | 0);
  sh.cs.set(kCsRng, b ^ (b >>> 9));
  sh.cs.set(kCsRng + 1, (c + (c << 3)) | 0);
  const c2 = (c << 21) | (c >>> 11);
  sh.cs.set(kCsRng + 2, (c2 + t) | 0);
  return t >>> 0;
}
function seedRng(sh: Shared, seed: number): void {
  sh.cs.set(kCsRng, 0x9e3779b9 ^ seed);
  sh.cs.set(kCsRng + 1, 0x243f6a88);
  sh.cs.set(kCsRng + 2, 0xb7e15162 ^ Math.imul(seed, 0x85ebca6b));
  sh.cs.set(kCsRng + 3, 1);
  for (let i = 0; i < 15; i++) rngNext(sh);
}

const nowUs = (sh: Shared): number => sh.csTime.get(0);
const deadlineOf = (sh: Shared, st: number): number => sh.csTime.get(1 + st);

/**
 * One worker's side of the controlled scheduler: which sthread it is (`self`, -1 while it is none:
 * a task worker between tasks, the host), and the operations a schedule point performs.
 */
export class CtlSched {
  /** this worker's sthread id, -1 when none */
  self = -1;
  /** the runnable sthreads of the decision being made (reused: a decision allocates nothing) */
  private readonly cands: number[] = [];
  private readonly mode: MachineConfig['sched']['mode'];
  private readonly watchdogMs: number;
  private readonly ctlId: number;

  constructor(
    private readonly sh: Shared,
    cfg: MachineConfig,
  ) {
    this.mode = cfg.sched.mode;
    this.watchdogMs = cfg.watchdogSec * 1000;
    this.ctlId = sh.waitIds.get(sh.bufs.ctl) ?? -1;
  }

  /** the logical clock, in ms since the schedule began */
  nowMs(): number {
    return nowUs(this.sh) / 1000;
  }

  /** Is this worker, now, under the controlled schedule (it holds the turn whenever it runs)? */
  get scheduled(): boolean {
    return this.self >= 0 && this.sh.cs.load(kCsMode) === CS_RUN && this.sh.ctl.load(kCtlShutdown) === 0;
  }

  /** A named schedule point: the holder decides who runs next, itself included. */
  yield(point: SchedPoint): void {
    if (!this.scheduled) return;
    const sh = this.sh;
    sh.csThreads.set(this.self, kStState, ST_READY);
    sh.csThreads.set(this.self, kStPoint, pointId(point));
    this.handOff(this.decide(this.self, point));
  }

  /**
   * A wait (Atomics.wait semantics: while a[i] === v, at most timeoutMs). Free when this worker is not
   * scheduled; otherwise the holder blocks, watching a[i] and, for a CPU context (doorbellCtx >= 0),
   * that context's doorbell, and hands the turn on.
   */
  wait(
    a: Int32Array,
    i: number,
    v: number,
    timeoutMs: number | undefined,
    point: SchedPoint,
    doorbellCtx: number,
  ): WaitResult {
    const sh = this.sh;
    const mode = sh.cs.load(kCsMode);
    const gather = mode === CS_GATHER && this.self >= 0 && this.self < stTask(0);
    if (!gather && !this.scheduled) return Atomics.wait(a, i, v, timeoutMs);
    if (Atomics.load(a, i) !== v) return 'not-equal';
    const t = sh.csThreads;
    const me = this.self;
    t.set(me, kStBuf, sh.waitIds.get(a.buffer) ?? -1);
    t.set(me, kStIdx, a.byteOffset / 4 + i);
    t.set(me, kStVal, v);
    if (doorbellCtx >= 0) {
      const di = perCpuBase(doorbellCtx) + kCpuDoorbell;
      t.set(me, kStBuf2, this.ctlId);
      t.set(me, kStIdx2, di);
      t.set(me, kStVal2, sh.waitViews[this.ctlId]?.[di] ?? 0);
    } else t.set(me, kStBuf2, -1);
    const ms = timeoutMs === undefined || !Number.isFinite(timeoutMs) ? Infinity : timeoutMs;
    sh.csTime.set(1 + me, nowUs(sh) + ms * 1000);
    t.set(me, kStPoint, pointId(point));
    t.store(me, kStState, ST_BLOCKED);
    if (gather) {
      // park: the host starts the schedule once every system sthread is here
      sh.cs.add(kCsParked, 1);
      sh.cs.notify(kCsParked);
      this.waitTurn();
    } else this.handOff(this.decide(me, point));
    t.set(me, kStState, ST_READY);
    return Atomics.load(a, i) !== v ? 'ok' : 'timed-out';
  }

  /** A task's worker starts the task: it runs once it is handed the turn. */
  enter(tid: number): void {
    this.self = stTask(tid);
    const mode = this.sh.cs.load(kCsMode);
    // a main task may arrive before the host's first decision (CS_GATHER): it waits for its turn too
    if (mode !== CS_RUN && mode !== CS_GATHER) {
      this.self = -1; // a task after the schedule ended (a kill at shutdown): free
      return;
    }
    this.waitTurn();
  }

  /** The task has exited: off the live list; hand the turn on, or end the schedule if it was the last. */
  exit(): void {
    const sh = this.sh;
    const me = this.self;
    this.self = -1;
    if (me < 0 || sh.cs.load(kCsMode) !== CS_RUN || sh.ctl.load(kCtlShutdown) !== 0) return;
    sh.csThreads.set(me, kStState, ST_ABSENT);
    liveRemove(sh, me);
    const left = sh.cs.get(kCsLiveTasks) - 1;
    sh.cs.set(kCsLiveTasks, left);
    if (left === 0) {
      sh.cs.store(kCsTurn, -1);
      setMode(sh, CS_ENDED);
      return;
    }
    const next = this.decide(me, 'task:exit');
    if (next >= 0) grant(sh, next);
  }

  /**
   * The decision at a schedule point of `yielder` (the holder, or ST_HOST for the first one): who runs
   * next, by the mode's policy, among the runnable sthreads. Logs it; -1 when the schedule halts.
   */
  decide(yielder: number, point: SchedPoint): number {
    const sh = this.sh;
    const step = sh.cs.get(kCsStep) + 1;
    sh.cs.store(kCsStep, step);
    sh.csTime.set(0, nowUs(sh) + kSchedStepUs);
    const pid = pointId(point);
    let cands = this.runnable();
    while (cands.length === 0) {
      const next = this.earliestDeadline();
      if (!Number.isFinite(next)) {
        halt(sh, CS_HALT_DEADLOCK, [step, packEvent(yielder, pid, kNobody), 0, 0]);
        return -1;
      }
      sh.csTime.set(0, next);
      sh.cs.set(kCsJumps, sh.cs.get(kCsJumps) + 1);
      cands = this.runnable();
    }
    const stuck = this.watchdog();
    if (stuck >= 0) {
      halt(sh, CS_HALT_WATCHDOG, [step, packEvent(yielder, pid, kNobody), stuck, 0]);
      return -1;
    }
    let chosen: number;
    if (this.mode === 'replay') {
      const pos = sh.cs.get(kCsReplayPos);
      const actual = packEvent(yielder, pid, kNobody);
      const want = pos < sh.cs.get(kCsReplayLen) ? (sh.csReplay[pos] ?? -1) : -1;
      if (
        want < 0 ||
        eventYielder(want) !== yielder ||
        eventPoint(want) !== pid ||
        !cands.includes(eventChosen(want))
      ) {
        halt(sh, CS_HALT_DIVERGED, [step, want, actual, cands.length]);
        return -1;
      }
      sh.cs.set(kCsReplayPos, pos + 1);
      chosen = eventChosen(want);
    } else if (this.mode === 'pct') chosen = this.pctPick(yielder, step, cands);
    else chosen = cands[rngNext(sh) % cands.length] ?? -1;
    const w = packEvent(yielder, pid, chosen);
    this.log(w);
    sh.cs.set(kCsHash, fnvWord(sh.cs.get(kCsHash), w) | 0);
    if (chosen !== yielder) sh.cs.set(kCsSwitches, sh.cs.get(kCsSwitches) + 1);
    return chosen;
  }

  /** PCT: at a change point the running sthread drops to a low priority; the highest runnable runs. */
  private pctPick(yielder: number, step: number, cands: number[]): number {
    const sh = this.sh;
    const d = sh.cs.get(kCsPctDepth);
    for (let i = 0; i < d - 1 && i < kCsPctMaxChanges; i++)
      if (sh.cs.get(kCsPctChangeBase + i) === step && yielder !== ST_HOST) sh.csThreads.set(yielder, kStPrio, i + 1);
    let best = -1;
    let bestPrio = -1;
    for (const c of cands) {
      const p = sh.csThreads.get(c, kStPrio);
      if (p > bestPrio) {
        best = c;
        bestPrio = p;
      }
    }
    return best;
  }

  /** The live sthreads that may run: ready, or blocked on a word that changed or a timeout that passed. */
  private runnable(): number[] {
    const sh = this.sh;
    const t = sh.csThreads;
    const now = nowUs(sh);
    const out = this.cands;
    out.length = 0;
    const n = sh.cs.get(kCsNLive);
    for (let k = 0; k < n; k++) {
      const st = sh.cs.get(kCsLiveBase + k);
      const state = t.load(st, kStState);
      if (state === ST_READY) out.push(st);
      else if (state === ST_BLOCKED) {
        const b = t.get(st, kStBuf);
        const b2 = t.get(st, kStBuf2);
        const view = sh.waitViews[b];
        const view2 = sh.waitViews[b2];
        if (
          (view !== undefined && Atomics.load(view, t.get(st, kStIdx)) !== t.get(st, kStVal)) ||
          (view2 !== undefined && Atomics.load(view2, t.get(st, kStIdx2)) !== t.get(st, kStVal2)) ||
          deadlineOf(sh, st) <= now
        )
          out.push(st);
      }
    }
    return out;
  }

  private earliestDeadline(): number {
    const sh = this.sh;
    let best = Infinity;
    const n = sh.cs.get(kCsNLive);
    for (let k = 0; k < n; k++) {
      const st = sh.cs.get(kCsLiveBase + k);
      if (sh.csThreads.load(st, kStState) === ST_BLOCKED) best = Math.min(best, deadlineOf(sh, st));
    }
    return best;
  }

  /** The soft-lockup watchdog in logical time: a CPU in the kernel for longer than --watchdog. */
  private watchdog(): number {
    const sh = this.sh;
    const now = this.nowMs();
    for (let c = 0; c < sh.geo.ctx.cpus; c++) {
      const since = sh.cpu.load(c, kCpuKernelEnterMs);
      if (sh.cpu.load(c, kCpuState) === kCpuStateKernel && since >= 0 && now - since >= this.watchdogMs) return c;
    }
    return -1;
  }

  /** Append a decision to the event ring; a full ring waits for the host (who holds no turn). */
  private log(w: number): void {
    const sh = this.sh;
    const head = sh.cs.get(kCsLogHead);
    for (;;) {
      const tail = sh.cs.load(kCsLogTail);
      if (head - tail < kCsLogEntries) break;
      sh.ctl.add(kCtlHostDoorbell, 1);
      sh.ctl.notify(kCtlHostDoorbell);
      if (sh.ctl.load(kCtlShutdown) !== 0) break;
      Atomics.wait(sh.cs.a, kCsLogTail, tail, 50);
    }
    sh.csLog[head % kCsLogEntries] = w;
    sh.cs.store(kCsLogHead, head + 1);
  }

  /** Give the turn to `next` and wait to be handed it back (nothing to do when next is this sthread). */
  private handOff(next: number): void {
    if (next === this.self) return;
    if (next >= 0) grant(this.sh, next);
    this.waitTurn();
  }

  /** Wait for the turn. Returns false when the machine shuts down instead (then this worker runs free). */
  private waitTurn(): boolean {
    const sh = this.sh;
    const gi = sh.csThreads.idx(this.self, kStGo);
    const go = sh.csThreads.a;
    for (;;) {
      if (Atomics.load(go, gi) === 1) {
        Atomics.store(go, gi, 0);
        return true;
      }
      if (sh.ctl.load(kCtlShutdown) !== 0) return false;
      Atomics.wait(go, gi, 0, 50);
    }
  }
}

function grant(sh: Shared, next: number): void {
  sh.cs.store(kCsTurn, next);
  sh.csThreads.store(next, kStGo, 1);
  sh.csThreads.notify(next, kStGo);
}

function halt(sh: Shared, why: number, args: number[]): void {
  sh.cs.set(kCsHalt, why);
  args.forEach((v, i) => sh.cs.set(kCsHaltArg + i, v));
  sh.cs.store(kCsTurn, -1);
  setMode(sh, CS_HALTED);
}

function setMode(sh: Shared, mode: number): void {
  sh.cs.store(kCsMode, mode);
  sh.cs.notify(kCsMode);
  sh.ctl.add(kCtlHostDoorbell, 1);
  sh.ctl.notify(kCtlHostDoorbell);
}

function liveAppend(sh: Shared, st: number): void {
  const n = sh.cs.get(kCsNLive);
  sh.cs.set(kCsLiveBase + n, st);
  sh.cs.set(kCsNLive, n + 1);
}

/** Remove st from the live list, keeping the others' order (the candidates' order is part of a decision). */
function liveRemove(sh: Shared, st: number): void {
  const n = sh.cs.get(kCsNLive);
  let k = 0;
  while (k < n && sh.cs.get(kCsLiveBase + k) !== st) k++;
  if (k === n) return;
  for (; k < n - 1; k++) sh.cs.set(kCsLiveBase + k, sh.cs.get(kCsLiveBase + k + 1));
  sh.cs.set(kCsNLive, n - 1);
}

/**
 * wake_up_new_task, for the schedule: a new task (clone, fork, or a main the host starts) joins the
 * live list, runnable; under PCT it draws its priority. Called by the turn holder, or by the host
 * before the first decision. No-op when no controlled schedule runs.
 */
export function csAdmitTask(sh: Shared, tid: number): void {
  const mode = sh.cs.load(kCsMode);
  if (mode !== CS_RUN && mode !== CS_GATHER) return;
  const st = stTask(tid);
  sh.csThreads.set(st, kStGo, 0);
  sh.csThreads.set(st, kStPrio, sh.cs.get(kCsPctDepth) + (rngNext(sh) % (1 << 20)));
  sh.csThreads.store(st, kStState, ST_READY);
  liveAppend(sh, st);
  sh.cs.set(kCsLiveTasks, sh.cs.get(kCsLiveTasks) + 1);
}

// ---- the host's side (called on the host thread while nobody holds the turn) ----

/** What a controlled schedule is started with. */
export interface CsStart {
  seed: number;
  /** the system sthreads, in the fixed order of the live list */
  system: number[];
  pctDepth: number;
  pctSteps: number;
  /** the decisions to replay */
  replay?: Int32Array;
}

/** Before the gather: the generator, PCT's change points, the replay schedule, the live list. */
export function csPrepare(sh: Shared, o: CsStart): void {
  seedRng(sh, o.seed);
  sh.cs.set(kCsHash, kFnvBasis | 0);
  if (o.pctDepth > 0) {
    const d = Math.min(o.pctDepth, kCsPctMaxChanges + 1);
    sh.cs.set(kCsPctDepth, d);
    const pts: number[] = [];
    for (let i = 0; i < d - 1; i++) pts.push(1 + (rngNext(sh) % Math.max(1, o.pctSteps)));
    pts.sort((x, y) => x - y).forEach((p, i) => sh.cs.set(kCsPctChangeBase + i, p));
  }
  if (o.replay) {
    sh.csReplay.set(o.replay);
    sh.cs.set(kCsReplayLen, o.replay.length);
  }
  for (const st of o.system) {
    sh.csThreads.set(st, kStState, ST_ABSENT);
    sh.csThreads.set(st, kStPrio, o.pctDepth + (rngNext(sh) % (1 << 20)));
    liveAppend(sh, st);
  }
  sh.cs.store(kCsMode, CS_GATHER);
}

/** How many system sthreads have parked in the gather. */
export const csParked = (sh: Shared): number => sh.cs.load(kCsParked);

/** Start the schedule: the host makes the first decision and hands the turn to it. */
export function csStart(sh: Shared, cs: CtlSched): void {
  sh.cs.store(kCsMode, CS_RUN);
  const first = cs.decide(ST_HOST, 'host:start');
  if (first >= 0) grant(sh, first);
}

export const csMode = (sh: Shared): number => sh.cs.load(kCsMode);

/** The events logged since the last drain, appended to `into`; the ring's space is given back. */
export function csDrain(sh: Shared, into: number[]): void {
  const head = sh.cs.load(kCsLogHead);
  let tail = sh.cs.load(kCsLogTail);
  for (; tail < head; tail++) into.push(sh.csLog[tail % kCsLogEntries] ?? 0);
  sh.cs.store(kCsLogTail, tail);
  sh.cs.notify(kCsLogTail);
}

/** Why and where the schedule halted. */
export interface CsHalt {
  why: 'deadlock' | 'watchdog' | 'diverged';
  step: number;
  /** replay: the decision the schedule expected (-1: the schedule had no more) */
  expected: number;
  /** the point reached: its yielder and point (chosen = kNobody) */
  actual: number;
  /** watchdog: the stuck CPU; diverged: how many sthreads could run */
  arg: number;
}
export function csHalted(sh: Shared): CsHalt | undefined {
  if (sh.cs.load(kCsMode) !== CS_HALTED) return undefined;
  const why = sh.cs.get(kCsHalt);
  const arg = (i: number) => sh.cs.get(kCsHaltArg + i);
  return {
    why: why === CS_HALT_DEADLOCK ? 'deadlock' : why === CS_HALT_WATCHDOG ? 'watchdog' : 'diverged',
    step: arg(0),
    expected: why === CS_HALT_DIVERGED ? arg(1) : -1,
    actual: why === CS_HALT_DIVERGED ? arg(2) : arg(1),
    arg: why === CS_HALT_DIVERGED ? arg(3) : arg(2),
  };
}

/** The schedule's counters, for the summary and the record. */
export function csCounters(sh: Shared): {
  steps: number;
  switches: number;
  jumps: number;
  hash: number;
  nowMs: number;
} {
  return {
    steps: sh.cs.load(kCsStep),
    switches: sh.cs.get(kCsSwitches),
    jumps: sh.cs.get(kCsJumps),
    hash: sh.cs.get(kCsHash) >>> 0,
    nowMs: nowUs(sh) / 1000,
  };
}

// ---- names, for reports and stories ----

/** The name of an sthread id: "memory", "cpu0/idle", "tid 3". */
export function sthreadName(st: number): string {
  if (st === ST_HOST) return 'host';
  if (st === ST_MEMORY) return 'memory';
  if (st === ST_STORAGE) return 'storage';
  if (st === ST_SWEEP) return 'kevict_sweepd';
  if (st >= stCpu(0) && st < stTask(0)) return `cpu${st - stCpu(0)}/idle`;
  return `tid ${st - stTask(0)}`;
}

/** One decision as a person reads it: "tid 3 at mremap:pte_moved_before_rmap -> memory". */
export function describeEvent(w: number): string {
  const chosen = eventChosen(w);
  return `${sthreadName(eventYielder(w))} at ${pointName(eventPoint(w))} -> ${chosen === kNobody ? '?' : sthreadName(chosen)}`;
}

/** Every live sthread and where it stands, for a halt's report (host, with the machine frozen). */
export function describeSthreads(sh: Shared): string[] {
  const out: string[] = [];
  const now = nowUs(sh);
  const n = sh.cs.get(kCsNLive);
  for (let k = 0; k < n; k++) {
    const st = sh.cs.get(kCsLiveBase + k);
    const state = sh.csThreads.load(st, kStState);
    const at = pointName(sh.csThreads.get(st, kStPoint));
    const dl = deadlineOf(sh, st);
    out.push(
      `${sthreadName(st)}: ${state === ST_READY ? 'ready' : state === ST_BLOCKED ? `blocked at ${at}, ${Number.isFinite(dl) ? `timeout in ${((dl - now) / 1000).toFixed(3)} ms` : 'no timeout'}` : 'absent'}`,
    );
  }
  return out;
}
