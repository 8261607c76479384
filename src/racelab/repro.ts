// `splitkern repro NAME` and `splitkern repro --all`: run a bug entry's reproducer over seeds, each
// run a child `splitkern run … --json`, and judge every run by the entry's signature:
//   reproduced      the signature appeared and the broken branch ran (nr_bug_<flag> > 0)
//   other failure   anything else that failed, shown with its detector; never a reproduction
//   clean           no failure at all
// and run the control: the same reproducer with the flag off (companion flags kept), which must not
// show the signature. An entry whose control shows it is a failed entry.
//
// Children: one at a time (races are timing: a second run beside it would change them). SIGINT and
// SIGTERM are forwarded to the running child, which stops cleanly; repro waits for it, prints what it
// has, and exits 130 / 143.
//
// Host-side only, on the CLI's main thread: it touches no shared memory and takes no lock (each run is a
// separate process). Its state is module-local (the running child, the first signal), so one repro or
// soak at a time may use runChild/withSignalsForwarded.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUGS, type BugEntry } from './bugzoo.ts';
import { failuresOf, formatSignature, matches, type RunSummary, type Signature } from './signature.ts';
import { bugStatName } from '../kernel/stats.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.resolve(here, '..', '..', 'bin', 'splitkern.mjs');
/** One child run may take at most this long before repro stops it and calls the attempt a hang. */
const kRunTimeoutMs = 300_000;

export interface ReproOptions {
  attempts: number;
  controls: number;
  seed: number;
  json: boolean;
  first: boolean;
  /** --sched for every run: free (default), random, pct:D[:K] */
  sched?: string;
  /** a directory: every reproducing attempt's schedule is saved there (controlled modes only) */
  recordDir?: string;
}

export type Verdict = 'reproduced' | 'other failure' | 'clean';

export interface RunResult {
  seed: number;
  control: boolean;
  exitCode: number | null;
  verdict: Verdict;
  /** the failure that carries the signature (reproduced), or the first other failure */
  failure?: Signature;
  /** every failure seen, as `kind [facts]` */
  failures: string[];
  /** executions of the flag's broken branch in this run */
  brokenBranch: number;
  /** ms from the start of the workload to the detection of the signature */
  detectMs?: number;
  /** the recorded schedule of a reproducing attempt (repro --record DIR) */
  schedule?: string;
  /** decisions of a controlled schedule (its `schedule.steps`) */
  steps?: number;
  note?: string;
}

export interface EntryResult {
  bug: string;
  command: string;
  signature: string;
  attempts: number;
  reproduced: number;
  otherFailures: number;
  controls: number;
  /** control runs that showed the signature: must be 0 */
  controlSignature: number;
  /** control runs with some other failure (shown, not a defect of the entry) */
  controlOther: number;
  medianDetectMs?: number;
  ok: boolean;
  interrupted?: boolean;
}

let child: ChildProcess | undefined;
let interrupted: NodeJS.Signals | undefined;

/** The signal that stopped the race lab's children, if any. */
export const interruptedBy = (): NodeJS.Signals | undefined => interrupted;

/** Forward SIGINT/SIGTERM to the running child while `body` runs. */
export async function withSignalsForwarded<T>(body: () => Promise<T>): Promise<T> {
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function onSignal(sig: NodeJS.Signals): void {
  if (interrupted) {
    // A second signal: stop the child now.
    child?.kill('SIGKILL');
    return;
  }
  interrupted = sig;
  process.stderr.write(`splitkern repro: ${sig}: stopping the running attempt (again to force)\n`);
  child?.kill(sig);
}

/** Run one child `splitkern run` and return its --json summary (or a synthesised one). */
export function runChild(args: string[]): Promise<{ code: number | null; summary?: RunSummary; stderrTail: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const out: Buffer[] = [];
    let errTail = '';
    c.stdout.on('data', (d: Buffer) => out.push(d));
    c.stderr.on('data', (d: Buffer) => {
      errTail = (errTail + d.toString('utf8')).slice(-2000);
    });
    const timer = setTimeout(() => c.kill('SIGKILL'), kRunTimeoutMs);
    c.on('close', (code) => {
      clearTimeout(timer);
      child = undefined;
      let summary: RunSummary | undefined;
      try {
        summary = JSON.parse(Buffer.concat(out).toString('utf8')) as RunSummary;
      } catch {
        summary = undefined;
      }
      resolve({ code, summary, stderrTail: errTail.trim().split('\n').pop() ?? '' });
    });
  });
}

function flagsArg(entry: BugEntry, withFlag: boolean): string[] {
  const flags = [...(withFlag ? [entry.name] : []), ...(entry.companions ?? [])];
  return flags.length ? ['--bug', flags.join(',')] : [];
}

export function commandOf(entry: BugEntry, withFlag = true): string {
  return ['splitkern run', ...entry.repro, ...flagsArg(entry, withFlag), '--seed N'].join(' ');
}

/** Where an attempt's schedule is recorded (kept only if it reproduces). */
const recordPath = (o: ReproOptions, entry: BugEntry, seed: number): string | undefined =>
  o.recordDir === undefined ? undefined : path.join(o.recordDir, `${entry.name}-seed${seed}.sched`);

async function attempt(entry: BugEntry, seed: number, control: boolean, o: ReproOptions): Promise<RunResult> {
  const rec = control ? undefined : recordPath(o, entry, seed);
  const args = [
    'run',
    ...entry.repro,
    ...flagsArg(entry, !control),
    '--seed',
    String(seed),
    ...(o.sched && o.sched !== 'free' ? ['--sched', o.sched] : []),
    ...(rec ? ['--record', rec] : []),
    '--json',
    '--log-level',
    'error',
  ];
  const r = await runChild(args);
  const res = judge(entry, seed, control, r);
  if (rec) {
    if (res.verdict === 'reproduced' && fs.existsSync(rec)) res.schedule = rec;
    else fs.rmSync(rec, { force: true });
  }
  return res;
}

function judge(
  entry: BugEntry,
  seed: number,
  control: boolean,
  r: { code: number | null; summary?: RunSummary; stderrTail: string },
): RunResult {
  const res: RunResult = { seed, control, exitCode: r.code, verdict: 'clean', failures: [], brokenBranch: 0 };
  if (!r.summary) {
    res.verdict = 'other failure';
    res.failure = { kind: 'no-summary', facts: [], text: r.stderrTail };
    res.failures = ['no-summary'];
    res.note = `no summary (exit ${r.code}): ${r.stderrTail}`;
    return res;
  }
  const j = r.summary;
  res.steps = j.schedule?.steps;
  const fails = failuresOf(j);
  res.failures = fails.map(formatSignature);
  res.brokenBranch = j.stats?.bugs?.[bugStatName(entry.name)] ?? 0;
  const hit = fails.find((f) => matches(entry.signature, f));
  if (hit && (control || res.brokenBranch > 0)) {
    res.verdict = 'reproduced';
    res.failure = hit;
    // Time to detection: the violation's timestamp, or the end of the run for an oracle's verdict.
    const v = (j.violations ?? []).find((x) => {
      const sig = x.signature ?? { kind: x.kind, facts: x.facts ?? [], text: '' };
      return matches(entry.signature, sig);
    });
    if (v?.ms !== undefined && j.runStartMs !== undefined) res.detectMs = Math.max(0, v.ms - j.runStartMs);
    else res.detectMs = j.wallMs;
  } else if (fails.length > 0) {
    res.verdict = 'other failure';
    res.failure = fails[0];
    if (hit)
      res.note = `the signature appeared but nr_bug_${entry.name.replace(/-/g, '_')} is 0: the broken branch never ran`;
  }
  return res;
}

function line(entry: BugEntry, r: RunResult, i: number, n: number): string {
  const what = r.control ? 'control' : 'attempt';
  const verdict = r.control
    ? r.verdict === 'reproduced'
      ? 'SIGNATURE (the control must not show it)'
      : r.verdict === 'other failure'
        ? 'other failure'
        : 'clean'
    : r.verdict === 'reproduced'
      ? 'REPRODUCED'
      : r.verdict;
  const when =
    r.detectMs !== undefined && r.verdict === 'reproduced' ? ` after ${(r.detectMs / 1000).toFixed(2)} s` : '';
  const detail = r.failure ? ` — ${formatSignature(r.failure)}: ${r.failure.text.slice(0, 160)}` : '';
  const branch = r.control ? '' : ` (nr_bug ${r.brokenBranch})`;
  return `${entry.name}: ${what} ${i + 1}/${n} seed ${r.seed}: ${verdict}${when}${branch}${detail}${r.note ? ` [${r.note}]` : ''}\n`;
}

/** Reproduce one entry: attempts with the flag, then the controls. */
export async function reproEntry(entry: BugEntry, o: ReproOptions): Promise<EntryResult> {
  const runs: RunResult[] = [];
  for (let i = 0; i < o.attempts && !interrupted; i++) {
    const r = await attempt(entry, o.seed + i, false, o);
    runs.push(r);
    process.stdout.write(o.json ? `${JSON.stringify({ bug: entry.name, ...r })}\n` : line(entry, r, i, o.attempts));
    if (o.first && r.verdict === 'reproduced') break;
  }
  const controls: RunResult[] = [];
  for (let i = 0; i < o.controls && !interrupted; i++) {
    const r = await attempt(entry, o.seed + i, true, o);
    controls.push(r);
    process.stdout.write(o.json ? `${JSON.stringify({ bug: entry.name, ...r })}\n` : line(entry, r, i, o.controls));
  }
  const hits = runs.filter((r) => r.verdict === 'reproduced');
  const times = hits
    .map((r) => r.detectMs)
    .filter((t): t is number => t !== undefined)
    .sort((a, b) => a - b);
  const res: EntryResult = {
    bug: entry.name,
    command: commandOf(entry),
    signature: formatSignature(entry.signature),
    attempts: runs.length,
    reproduced: hits.length,
    otherFailures: runs.filter((r) => r.verdict === 'other failure').length,
    controls: controls.length,
    controlSignature: controls.filter((r) => r.verdict === 'reproduced').length,
    controlOther: controls.filter((r) => r.verdict === 'other failure').length,
    medianDetectMs: times.length ? times[Math.floor((times.length - 1) / 2)] : undefined,
    ok: false,
  };
  res.ok = res.reproduced > 0 && res.controlSignature === 0 && !interrupted;
  if (interrupted) res.interrupted = true;
  if (o.json) process.stdout.write(`${JSON.stringify(res)}\n`);
  else {
    const t =
      res.medianDetectMs !== undefined ? `, median time to detection ${(res.medianDetectMs / 1000).toFixed(2)} s` : '';
    process.stdout.write(
      `${entry.name}: reproduced in ${res.reproduced} of ${res.attempts} runs with its signature ${res.signature}${t}; ` +
        `control (${commandOf(entry, false)}): signature in ${res.controlSignature} of ${res.controls}, other failures in ${res.controlOther}` +
        `${res.controlSignature > 0 ? ' — FAILED ENTRY: the control shows the signature' : ''}${interrupted ? ' (interrupted)' : ''}\n`,
    );
  }
  return res;
}

/** The markdown table of `repro --all`: the README's race-lab table is this output. */
export function markdownTable(results: EntryResult[], o: ReproOptions, elapsedMs: number): string {
  const cpus = os.cpus();
  const rows = results.map((r) => {
    const e = BUGS.find((b) => b.name === r.bug);
    if (!e) throw new Error(`repro: no bug entry ${r.bug}`);
    const t = r.medianDetectMs !== undefined ? `${(r.medianDetectMs / 1000).toFixed(2)} s` : '—';
    // a `|` inside a cell (alternatives such as got=zeros|older-generation) is escaped for markdown
    return `| \`${r.bug}\` | \`${e.repro.join(' ')}\`${e.companions ? ` + \`--bug ${e.companions.join(',')}\`` : ''} | ${r.reproduced}/${r.attempts} | ${r.controlSignature}/${r.controls}${r.controlOther ? ` (${r.controlOther} other)` : ''} | ${t} | \`${r.signature.replace(/\|/g, '\\|')}\` |`;
  });
  return [
    `Measured by \`splitkern repro --all --attempts ${o.attempts} --controls ${o.controls} --seed ${o.seed}${o.sched && o.sched !== 'free' ? ` --sched ${o.sched}` : ''}\` on ${cpus.length} × ${cpus[0]?.model.trim() ?? '?'}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, in ${(elapsedMs / 60000).toFixed(1)} min.`,
    '',
    '| flag | reproducer | reproduced | control shows it | median time to detection | signature |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

/** Exit status: 0 every entry reproduced with a clean control, 1 otherwise, 130/143 interrupted. */
export async function repro(entries: BugEntry[], o: ReproOptions, all: boolean): Promise<number> {
  const t0 = performance.now();
  const results: EntryResult[] = [];
  await withSignalsForwarded(async () => {
    for (const e of entries) {
      if (interrupted) break;
      results.push(await reproEntry(e, o));
    }
  });
  if (all && !o.json) process.stdout.write(`\n${markdownTable(results, o, performance.now() - t0)}`);
  if (interrupted) return interrupted === 'SIGINT' ? 130 : 143;
  return results.every((r) => r.ok) ? 0 : 1;
}
