// A run under a controlled schedule, on the CLI's side: loading a schedule to replay (and checking that
// it was recorded for this machine and these processes), hashing what the run showed, recording the
// schedule with its outcome (--record), and judging a replay against the recording. Host only: it
// reads the machine's shared memory only after the schedule ended or halted (the machine is frozen
// then), through Machine and ctlsched's host functions; it takes no lock.
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { MachineConfig } from '../kernel/config.ts';
import { csCounters, describeEvent, eventChosen } from '../kernel/ctlsched.ts';
import { kCsReplayLen, kCsReplayPos } from '../kernel/layout.ts';
import { SCHED_POINTS, SCHED_POINTS_VERSION } from '../kernel/points.ts';
import { formatSignature, type Signature } from '../racelab/signature.ts';
import {
  encodeSchedule,
  readSchedule,
  SCHEDULE_FORMAT,
  SCHEDULE_VERSION,
  ScheduleFileError,
  type ScheduleFile,
} from '../racelab/schedule.ts';
import { runChild } from '../racelab/repro.ts';
import os from 'node:os';
import path from 'node:path';
import type { Machine } from './machine.ts';
import { UsageError } from './options.ts';

/** splitkern's version, from its package.json (a schedule file names the version that recorded it) */
export const SPLITKERN_VERSION: string = (
  JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** The config keys a replay must share with its recording (the rest do not change what runs). */
const kFreeKeys = new Set<keyof MachineConfig>(['json', 'logLevel', 'outPath', 'sched']);

export interface Proc {
  program: string;
  argv: string[];
}

/** --sched replay:FILE: the schedule, checked against this run's machine and processes. */
export function loadReplay(cfg: MachineConfig, procs: Proc[]): ScheduleFile {
  const file = cfg.sched.replayFile ?? '';
  let f: ScheduleFile;
  try {
    f = readSchedule(file);
  } catch (e) {
    if (e instanceof ScheduleFileError) throw new UsageError(e.message);
    throw e;
  }
  for (const key of Object.keys(f.config) as Array<keyof MachineConfig>) {
    if (kFreeKeys.has(key)) continue;
    const want = JSON.stringify(f.config[key]);
    const got = JSON.stringify(cfg[key]);
    if (want !== got)
      throw new UsageError(
        `--sched replay:${file} was recorded with ${key} ${want}, this run has ${got ?? 'none'}: replay it with \`splitkern replay ${file}\``,
      );
  }
  if (JSON.stringify(f.processes) !== JSON.stringify(procs))
    throw new UsageError(
      `--sched replay:${file} was recorded running ${f.processes.map((p) => [p.program, ...p.argv].join(' ')).join('; ')}: replay it with \`splitkern replay ${file}\``,
    );
  return f;
}

/** What the processes wrote, per (fd, pid) stream, hashed in the order each stream was written. */
export class OutputHasher {
  private readonly streams = new Map<string, ReturnType<typeof createHash>>();
  push(fd: number, pid: number, data: Uint8Array): void {
    const key = `${fd}:${pid}`;
    let h = this.streams.get(key);
    if (!h) {
      h = createHash('sha256');
      this.streams.set(key, h);
    }
    h.update(data);
  }
  digest(): string[] {
    return [...this.streams.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, h]) => `${k}:${h.digest('hex')}`);
  }
}

/** The final-state hash: the frozen machine, the outputs, the files written on S, the exit code. */
export function finalHash(machine: Machine, outputs: string[], exitCode: number): string {
  const h = createHash('sha256');
  h.update(machine.stateHash ?? 'no state');
  for (const o of outputs) h.update(o);
  for (const [p, data] of [...machine.files.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    h.update(p);
    h.update(data);
  }
  h.update(String(exitCode));
  return h.digest('hex');
}

export interface ScheduleSummary {
  mode: string;
  steps: number;
  switches: number;
  jumps: number;
  logicalMs: number;
  eventHash: string;
  finalHash: string;
  /** PCT: n sthreads, k steps, D: a bug of depth <= D is found with probability >= 1/(n k^(D-1)) */
  pct?: { n: number; k: number; d: number; bound: number };
}

export function modeName(cfg: MachineConfig): string {
  const s = cfg.sched;
  return s.mode === 'pct' ? `pct:${s.pctDepth}:${s.pctSteps}` : s.mode;
}

/** The schedule's figures once it ended or halted. */
export function scheduleSummary(machine: Machine, hash: string): ScheduleSummary {
  const c = csCounters(machine.sh);
  const cfg = machine.cfg;
  const out: ScheduleSummary = {
    mode: modeName(cfg),
    steps: c.steps,
    switches: c.switches,
    jumps: c.jumps,
    logicalMs: Math.round(c.nowMs * 1000) / 1000,
    eventHash: c.hash.toString(16).padStart(8, '0'),
    finalHash: hash,
  };
  if (cfg.sched.mode === 'pct') {
    const seen = new Set<number>();
    for (const w of machine.schedEvents) seen.add(eventChosen(w));
    const n = seen.size;
    const d = cfg.sched.pctDepth;
    out.pct = { n, k: c.steps, d, bound: 1 / (n * c.steps ** (d - 1)) };
  }
  return out;
}

export function formatScheduleLine(s: ScheduleSummary): string {
  const pct = s.pct
    ? `; pct: n=${s.pct.n} contexts, k=${s.pct.k} steps, D=${s.pct.d}: a bug of depth <= ${s.pct.d} is found by one run with probability >= 1/(n*k^${s.pct.d - 1}) = ${s.pct.bound.toExponential(2)}`
    : '';
  return `schedule: ${s.mode}, ${s.steps} decisions, ${s.switches} context switches, ${s.jumps} clock jumps, ${s.logicalMs} ms logical; events ${s.eventHash}, final state ${s.finalHash.slice(0, 16)}${pct}`;
}

/** --record FILE: write the schedule with its header and outcome. */
export function recordSchedule(
  path: string,
  machine: Machine,
  command: string[],
  procs: Proc[],
  exitCode: number,
  sigs: Signature[],
  s: ScheduleSummary,
): void {
  const f: ScheduleFile = {
    format: SCHEDULE_FORMAT,
    version: SCHEDULE_VERSION,
    splitkern: SPLITKERN_VERSION,
    pointsVersion: SCHED_POINTS_VERSION,
    points: SCHED_POINTS,
    command,
    config: machine.cfg,
    mode: s.mode,
    processes: procs,
    events: Uint32Array.from(machine.schedEvents, (w) => w >>> 0),
    outcome: {
      exitCode,
      signatures: sigs,
      finalHash: s.finalHash,
      eventHash: parseInt(s.eventHash, 16),
      steps: s.steps,
      switches: s.switches,
    },
  };
  try {
    fs.writeFileSync(path, encodeSchedule(f));
  } catch (e) {
    throw new UsageError(`--record ${path}: cannot write it: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/**
 * A replay that followed its schedule to the end: did it end as the recording did? Returns the lines
 * to print and whether it matched (a mismatch is splitkern's own nondeterminism: exit 3).
 */
export function judgeReplay(
  machine: Machine,
  f: ScheduleFile,
  exitCode: number,
  sigs: Signature[],
  s: ScheduleSummary,
): { ok: boolean; line: string } {
  const used = machine.sh.cs.get(kCsReplayPos);
  const len = machine.sh.cs.get(kCsReplayLen);
  const rec = f.outcome;
  const fmt = (x: Signature[]) => {
    if (!x.length) return 'no failure';
    const n = new Map<string, number>();
    for (const sig of x) n.set(formatSignature(sig), (n.get(formatSignature(sig)) ?? 0) + 1);
    return [...n].map(([k, c]) => (c > 1 ? `${k} ×${c}` : k)).join(', ');
  };
  const problems: string[] = [];
  if (used !== len)
    problems.push(
      `the run ended after ${used} of the schedule's ${len} decisions (the next was ${describeEvent(f.events[used] ?? 0)})`,
    );
  if (exitCode !== rec.exitCode) problems.push(`exit code ${exitCode}, recorded ${rec.exitCode}`);
  if (JSON.stringify(sigs) !== JSON.stringify(rec.signatures))
    problems.push(`failures ${fmt(sigs)}, recorded ${fmt(rec.signatures)}`);
  if (s.finalHash !== rec.finalHash)
    problems.push(`final-state hash ${s.finalHash.slice(0, 16)}, recorded ${rec.finalHash.slice(0, 16)}`);
  if (problems.length)
    return { ok: false, line: `replay: followed the schedule, but the run ended differently: ${problems.join('; ')}` };
  return {
    ok: true,
    line: `replay: followed all ${len} decisions; same ${fmt(sigs)}, same exit code ${exitCode}, same final-state hash ${s.finalHash.slice(0, 16)}`,
  };
}

/**
 * --check-determinism: run the same command twice, each recording its schedule, and compare the
 * decisions step by step (shuttle's check). Any difference is a bug in splitkern: reported at the
 * first differing step, exit 3. Otherwise the run's own exit code.
 */
export async function checkDeterminism(command: string[]): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'splitkern-determinism-'));
  const args = withoutOptions(command, ['--record'], ['--check-determinism', '--json']);
  try {
    const runs: Array<{ code: number | null; f: ScheduleFile }> = [];
    for (const n of [1, 2]) {
      const file = path.join(dir, `run${n}.sched`);
      const r = await runChild([...args, '--record', file, '--json', '--log-level', 'error']);
      if (!fs.existsSync(file))
        throw new UsageError(`--check-determinism: run ${n} recorded no schedule (exit ${r.code}): ${r.stderrTail}`);
      runs.push({ code: r.code, f: readSchedule(file) });
    }
    const [a, b] = runs.map((r) => r.f) as [ScheduleFile, ScheduleFile];
    const differ = compareSchedules(a, b);
    if (differ) {
      process.stderr.write(`splitkern: determinism: NOT DETERMINISTIC: ${differ} (a bug in splitkern)\n`);
      return 3;
    }
    process.stdout.write(
      `determinism: both runs made the same ${a.events.length} decisions (events ${a.outcome.eventHash.toString(16).padStart(8, '0')}) and ended alike (exit ${a.outcome.exitCode}, final state ${a.outcome.finalHash.slice(0, 16)})\n`,
    );
    return runs[0]?.code ?? 3;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Two recordings of one command: undefined if they are the same run, else where they first differ. */
export function compareSchedules(a: ScheduleFile, b: ScheduleFile): string | undefined {
  const n = Math.min(a.events.length, b.events.length);
  let k = 0;
  while (k < n && a.events[k] === b.events[k]) k++;
  const at = (f: ScheduleFile) => (k < f.events.length ? describeEvent(f.events[k] ?? 0) : 'the end of the schedule');
  if (k < a.events.length || k < b.events.length)
    return `the two runs differ at step ${k + 1}: run 1 ${at(a)}, run 2 ${at(b)}`;
  if (a.outcome.finalHash !== b.outcome.finalHash || a.outcome.exitCode !== b.outcome.exitCode)
    return `the same ${n} decisions ended in different states (final-state hash ${a.outcome.finalHash.slice(0, 16)} and ${b.outcome.finalHash.slice(0, 16)}, exit ${a.outcome.exitCode} and ${b.outcome.exitCode})`;
  return undefined;
}

/**
 * A recorded command line without some of its options: `valued` ones (with their value, as
 * `--opt V` or `--opt=V`) and `flags`.
 */
export function withoutOptions(command: readonly string[], valued: string[], flags: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < command.length; i++) {
    const a = command[i] ?? '';
    if (valued.includes(a)) i++;
    else if (!flags.includes(a) && !valued.some((v) => a.startsWith(`${v}=`))) out.push(a);
  }
  return out;
}
