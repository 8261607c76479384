// splitkern's command line: `splitkern run <workload> [args] [options]`, or `splitkern run --spawn CMD ...`
// for several processes at once.
// Exit codes: 0 ok; 1 a verification or invariant failed; 2 bad usage or input; 3 the emulator failed.
// Runs on the host thread only. It reaches shared memory only through Machine (machine.ts) and its
// readers: the heartbeat reads the stats rows lockless mid-run (collectStats), and --check end runs
// checkQuiescent inside stopMachine (kCtlStopMachine) from the host, which holds no kernel lock.
import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { parse as shellParse } from 'shell-quote';
import cliProgress from 'cli-progress';
import type { MachineConfig } from '../kernel/config.ts';
import { checkQuiescent } from '../processor/pcache/debug.ts';
import { BUG_NAMES, BUGS, closest, KERNELS } from '../racelab/bugzoo.ts';
import { commandOf, repro } from '../racelab/repro.ts';
import { soak } from '../racelab/soak.ts';
import { stopMachine } from '../processor/stop.ts';
import { EmulatorFailure, errText, fmtBytes, Machine, type RunOutcome } from './machine.ts';
import { buildConfig, excerpt, oneLine, parseNumber, parseSched, UsageError, type RawOptions } from './options.ts';
import { collectStats, formatStats } from './summary.ts';
import { hex } from '../lib/text.ts';
import { failuresOf, formatSignature, type RunSummary } from '../racelab/signature.ts';
import { readSchedule, ScheduleFileError } from '../racelab/schedule.ts';
import {
  checkDeterminism,
  finalHash,
  formatScheduleLine,
  judgeReplay,
  loadReplay,
  OutputHasher,
  recordSchedule,
  scheduleSummary,
  type ScheduleSummary,
  withoutOptions,
} from './schedrun.ts';
import { kMaxTasks } from '../kernel/layout.ts';
import { addWorkloadOptions, prepare, WORKLOADS, type Job, type Workload, type WorkloadOptions } from './workloads.ts';

interface RunOptions extends RawOptions, WorkloadOptions {
  spawn?: string[];
  heartbeat?: string;
  checkDeterminism?: boolean;
}

/** the command line after `splitkern`, as a schedule file records it */
let commandLine: string[] = [];

type ThreadProgress = Map<number, { done: number; total: number }>;

/** Iterations done and to do, summed over the threads that report progress. */
function sumProgress(threads: ThreadProgress): { done: number; total: number } {
  let done = 0;
  let total = 0;
  for (const p of threads.values()) {
    done += p.done;
    total += p.total;
  }
  return { done, total };
}

/** The heartbeat: how far the run is, from the machine's own counters, on one line. */
function heartbeatLine(machine: Machine, progressDone: ThreadProgress, sec: number): string {
  const st = collectStats(machine.sh);
  const { done, total } = sumProgress(progressDone);
  const iters = total > 0 ? `${done}/${total} iterations, ` : '';
  const n = machine.violationCount;
  return `splitkern: ${Math.round(sec)} s: ${iters}${st.faults.total} faults, ${st.pcache.nr_pcache_fill_from_memory ?? 0} pcache misses, ${st.tlb.shootdowns} shootdowns, ${n} violation${n === 1 ? '' : 's'}`;
}

/**
 * The TTY's progress line (cli-progress): a bar summed over the threads that report progress
 * (mremap-stress), or, for a program that reports none, a status line of the machine's counters.
 */
class ProgressView {
  private bar: cliProgress.SingleBar | undefined;
  private statusLine: cliProgress.SingleBar | undefined;
  private readonly threads: ThreadProgress = new Map();
  update(tid: number, done: number, total: number): void {
    this.threads.set(tid, { done, total });
    const { done: d, total: t } = sumProgress(this.threads);
    if (!this.bar) {
      this.statusLine?.stop();
      this.statusLine = undefined;
      this.bar = new cliProgress.SingleBar(
        {
          format: ' {bar} {percentage}% | {value}/{total} iterations | {duration_formatted}',
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(t, d);
    }
    this.bar.setTotal(t);
    this.bar.update(d);
  }
  /** the status line, unless the program reports progress (then its bar is the line) */
  status(text: string): void {
    if (this.bar) return;
    if (!this.statusLine) {
      this.statusLine = new cliProgress.SingleBar({
        format: ' {status}',
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
      });
      this.statusLine.start(1, 0, { status: text });
    } else this.statusLine.update(0, { status: text });
  }
  /** print above the line: on stderr, or on stdout (which may be a pipe while stderr is the TTY) */
  log(text: string, out: NodeJS.WriteStream = process.stderr): void {
    const line = this.bar ?? this.statusLine;
    if (!line) {
      out.write(text);
      return;
    }
    // clear the line, print, and let the bar redraw below
    process.stderr.write('\r\x1b[K');
    out.write(text);
    line.render();
  }
  stop(): void {
    this.bar?.stop();
    this.statusLine?.stop();
  }
}

function checkWorkload(workload: string): Workload {
  const w = WORKLOADS.find((x) => x === workload);
  if (w === undefined) throw new UsageError(`unknown workload "${workload}" (known: ${WORKLOADS.join(', ')})`);
  return w;
}

/** The long names of the machine options of `run`: not allowed inside a --spawn. */
function machineOptionNames(): Set<string> {
  const all = addRunOptions(new Command()).options.map((x) => x.long ?? '');
  const workload = addWorkloadOptions(new Command()).options.map((x) => x.long ?? '');
  return new Set(all.filter((n) => n && !workload.includes(n)));
}

/**
 * One `--spawn "WORKLOAD [args] [options]"`: split like a shell would (quotes, no operators), the
 * workload options parsed as `run` parses them, then prepared like a workload of its own. `index`
 * keeps the files it writes on S apart from the other processes'.
 */
function prepareSpawn(spec: string, index: number, cfg: MachineConfig): { workload: Workload; job: Job } {
  const where = `--spawn "${excerpt(spec)}"`;
  const words: string[] = [];
  for (const t of shellParse(spec)) {
    if (typeof t !== 'string')
      throw new UsageError(`${where}: only words and quotes are allowed, no shell operators, globs or comments`);
    words.push(t);
  }
  const [first, ...rest] = words;
  if (first === undefined)
    throw new UsageError(`${where}: give a workload and its arguments, e.g. --spawn "word_count --top 5"`);
  let workload: Workload;
  try {
    workload = checkWorkload(first);
  } catch (e) {
    throw e instanceof UsageError ? new UsageError(`${where}: ${e.message}`) : e;
  }
  const cmd = addWorkloadOptions(new Command(workload))
    .allowExcessArguments(true)
    .helpOption(false)
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
  try {
    cmd.parse(rest, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    const opt = /unknown option '([^']+)'/.exec(e.message)?.[1];
    if (opt !== undefined && machineOptionNames().has(opt.split('=')[0] ?? opt))
      throw new UsageError(`${where}: ${opt} is a machine option: give it to run, outside --spawn`);
    throw new UsageError(`${where}: ${oneLine(e.message.replace(/^error: /, ''))}`);
  }
  try {
    return { workload, job: prepare(workload, cmd.args, cmd.opts<WorkloadOptions>(), cfg, `.${index + 1}`) };
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${where}: ${e.message}`);
    throw e;
  }
}

async function run(workloadArg: string | undefined, args: string[], o: RunOptions): Promise<number> {
  const spawns = o.spawn ?? [];
  if (spawns.length > 0 && workloadArg !== undefined)
    throw new UsageError(
      `give a workload or --spawn, not both: run "${excerpt([workloadArg, ...args].join(' '))}" as one more --spawn`,
    );
  if (spawns.length === 0 && workloadArg === undefined)
    throw new UsageError(
      `run needs a workload (one of ${WORKLOADS.join(', ')}) or --spawn "WORKLOAD [args] [options]"`,
    );
  if (spawns.length > kMaxSpawns)
    throw new UsageError(`${spawns.length} --spawn options: at most ${kMaxSpawns} processes run at once`);
  const cfg = buildConfig(o);
  if (o.checkDeterminism) {
    if (cfg.sched.mode !== 'random' && cfg.sched.mode !== 'pct')
      throw new UsageError('--check-determinism needs --sched random or --sched pct:D');
    return checkDeterminism(commandLine);
  }
  if (cfg.filesDir !== undefined && !fs.statSync(cfg.filesDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`--files ${cfg.filesDir} is not a directory`);
  }
  const heartbeatSec = parseNumber(o.heartbeat ?? '10', '--heartbeat');
  if (heartbeatSec > 3600)
    throw new UsageError(`--heartbeat ${o.heartbeat} is too long: at most 3600 seconds (0 turns it off)`);
  const jobs =
    workloadArg !== undefined
      ? [checkWorkload(workloadArg)].map((workload) => ({ workload, job: prepare(workload, args, o, cfg) }))
      : spawns.map((sp, i) => prepareSpawn(sp, i, cfg));
  const multi = spawns.length > 0;
  const threads = jobs.reduce((n, j) => n + j.job.threads, 0);
  if (multi && threads > kMaxTasks)
    throw new UsageError(
      `the spawned processes need ${threads} threads, more than the ${kMaxTasks} live threads splitkern runs at once (threads-max); give them fewer threads`,
    );
  const memFiles: Record<string, Uint8Array> = {};
  for (const j of jobs) Object.assign(memFiles, j.job.memFiles);
  const procs = jobs.map((j) => ({ program: j.job.program, argv: j.job.argv }));
  const controlled = cfg.sched.mode !== 'free';
  const replay = cfg.sched.mode === 'replay' ? loadReplay(cfg, procs) : undefined;
  const outputs = new OutputHasher();
  const describe = jobs.map((j) => j.job.describe).join('; ');
  const stdoutChunks = new Map<number, Buffer[]>();
  const lines = new LinePrefixer((pid) => `[pid ${pid}] `);
  const out = (s: string) => {
    if (!cfg.json) process.stdout.write(s);
  };
  // A progress bar on a TTY for programs that report progress (mremap-stress); log lines go above it.
  const progress = !cfg.json && process.stderr.isTTY ? new ProgressView() : undefined;
  const machine = new Machine(
    cfg,
    {
      console(fd, pid, raw) {
        if (controlled) outputs.push(fd, pid, raw);
        // several processes: each line says whose it is
        const data = multi ? lines.push(fd, pid, raw) : raw;
        if (cfg.json) {
          if (fd === 1) stdoutChunks.set(pid, [...(stdoutChunks.get(pid) ?? []), Buffer.from(raw)]);
          else process.stderr.write(data);
        } else if (progress)
          progress.log(Buffer.from(data).toString('utf8'), fd === 1 ? process.stdout : process.stderr);
        else (fd === 1 ? process.stdout : process.stderr).write(data);
      },
      log(line) {
        if (progress) progress.log(`${line}\n`);
        else process.stderr.write(`${line}\n`);
      },
      progress(tid, done, total) {
        progressDone.set(tid, { done, total });
        progress?.update(tid, done, total);
      },
    },
    memFiles,
    replay?.events,
  );
  const progressDone = new Map<number, { done: number; total: number }>();
  let outcomes: RunOutcome[] | undefined;
  let failure: EmulatorFailure | undefined;
  let runStartMs = 0;
  const t0 = performance.now();
  // SIGINT/SIGTERM: the first stops the workload (its process takes the signal) and the run ends with
  // the checks that are safe and a partial summary; a second one forces the machine down.
  let interrupted: NodeJS.Signals | undefined;
  let interruptMs = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      machine.fail(`${sig} again: forced stop`);
      return;
    }
    interrupted = sig;
    interruptMs = performance.now();
    process.stderr.write(
      `\nsplitkern: ${sig}: stopping the workload (${sig === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'} again to force)\n`,
    );
    machine.interrupt(sig === 'SIGINT' ? SIGINT_NO : SIGTERM_NO);
    setTimeout(
      () => machine.fail(`the workload did not stop within ${kStopGraceMs / 1000} s of ${sig}`),
      kStopGraceMs,
    ).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await machine.boot();
    for (const j of jobs) machine.env.printk('info', `run: ${j.job.describe}`);
    if (cfg.bugs.length) machine.env.printk('warn', `kernel: ${cfg.kernel}: bug flags on: ${cfg.bugs.join(', ')}`);
    runStartMs = machine.env.nowMs();
    if (interrupted) throw machine.fail(`${interrupted} during boot`);
    // The sign of life of a long run: on a TTY a progress line (the program's bar, or a status line
    // of the counters redrawn every second); otherwise a heartbeat line every --heartbeat seconds.
    const beat =
      heartbeatSec > 0
        ? setInterval(
            () => {
              const line = heartbeatLine(machine, progressDone, (machine.env.nowMs() - runStartMs) / 1000);
              if (progress) progress.status(line);
              else process.stderr.write(`${line}\n`);
            },
            progress ? 1000 : heartbeatSec * 1000,
          )
        : undefined;
    beat?.unref();
    try {
      outcomes = await machine.runAll(jobs.map((j) => ({ program: j.job.program, argv: j.job.argv })));
    } finally {
      if (beat) clearInterval(beat);
    }
    if (cfg.check !== 'none') {
      // a controlled schedule's end is itself a stopped world: no context runs again until shutdown
      const check = () => checkQuiescent(machine.k, 'end of run');
      const r = controlled ? check() : stopMachine(machine.env, cfg.sweep, check);
      machine.env.printk(
        'info',
        `check: end of run: ${r.checked.lines} lines, ${r.checked.rmaps} rmaps, ${r.checked.ptes} PTEs, ${r.checked.sets} sets checked, ${r.violations} violations`,
      );
    }
  } catch (e) {
    if (e instanceof EmulatorFailure) failure = e;
    else failure = machine.fail(`internal error: ${errText(e)}`);
  } finally {
    await machine.shutdown();
    progress?.stop();
    // a last line some process left without its newline (in --json, stdout is in each process's output)
    for (const [fd, text] of lines.flush()) {
      if (fd !== 1) process.stderr.write(text);
      else if (!cfg.json) process.stdout.write(text);
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const stats = collectStats(machine.sh);
  if (interrupted)
    return interruptedSummary(interrupted, {
      cfg,
      machine,
      outcome: outcomes?.[0],
      failure,
      stats,
      progressDone,
      t0,
      interruptMs,
      runStartMs,
      out,
    });
  /**
   * A controlled schedule's end: its figures in the summary, --record, and a replay's verdict (a replay
   * that ends otherwise than its recording is splitkern's own nondeterminism: exit 3).
   */
  const settle = (code: number, summary: RunSummary): { code: number; schedule?: ScheduleSummary } => {
    if (!controlled) return { code };
    const s = scheduleSummary(machine, finalHash(machine, outputs.digest(), code));
    const sigs = failuresOf(summary);
    if (o.record !== undefined) recordSchedule(o.record, machine, commandLine, procs, code, sigs, s);
    if (!replay) return { code, schedule: s };
    const verdict = judgeReplay(machine, replay, code, sigs, s);
    process.stderr.write(`splitkern: ${verdict.line}\n`);
    return { code: verdict.ok ? code : 3, schedule: s };
  };
  if (failure || !outcomes) {
    const msg = failure?.message ?? 'the run did not complete';
    process.stderr.write(`splitkern: emulator failure: ${msg.split('\n')[0]}\n`);
    const body = {
      ok: false,
      exitCode: 3,
      error: msg,
      seed: cfg.seed,
      config: cfg,
      violations: machine.violations,
      violationCount: machine.violationCount,
      violationsDropped: machine.violationsDropped,
      wallMs: Math.round(performance.now() - t0),
      runStartMs: Math.round(runStartMs * 1000) / 1000,
      stats,
    };
    const { code, schedule } = settle(3, body);
    if (schedule && !cfg.json) process.stderr.write(`splitkern: ${formatScheduleLine(schedule)}\n`);
    if (cfg.json) process.stdout.write(`${JSON.stringify({ ...body, exitCode: code, schedule }, null, 2)}\n`);
    return code;
  }
  const results = jobs.map((j, i) => {
    const outcome = outcomes[i];
    if (!outcome) throw new Error(`machine: no outcome for process ${i + 1}`);
    const v = j.job.verify(outcome, machine);
    const m = outcome.main;
    return {
      ...j,
      outcome,
      v,
      ok: v.ok && m.signal === 0 && m.exit === 0,
      proc: m.signal
        ? `killed by signal ${m.signal}${m.faultAddr !== undefined && m.faultAddr >= 0 ? ` (fault at ${hex(m.faultAddr)}${m.why ? `, ${m.why}` : ''})` : m.why ? ` (${m.why})` : ''}`
        : `exited with ${m.exit}`,
      json: {
        workload: j.workload,
        describe: j.job.describe,
        process: {
          pid: outcome.pid,
          exit: m.exit,
          signal: m.signal,
          faultAddr: m.faultAddr === undefined || m.faultAddr < 0 ? undefined : hex(m.faultAddr),
        },
        verification: { ok: v.ok, summary: v.summary, ...v.details },
        output: Buffer.concat(stdoutChunks.get(outcome.pid) ?? []).toString('utf8'),
        wallMs: Math.round(outcome.wallMs),
      },
    };
  });
  const violations = machine.violations;
  const nViolations = machine.violationCount;
  const ok = nViolations === 0 && results.every((r) => r.ok);
  const common = {
    seed: cfg.seed,
    config: { ...cfg },
    violations,
    violationCount: nViolations,
    violationsDropped: machine.violationsDropped,
    runStartMs: Math.round(runStartMs * 1000) / 1000,
    bootMs: Math.round(machine.bootMs),
    logDropped: machine.logDropped,
    stats,
  };
  const one = results[0];
  const body =
    !multi && one
      ? { ok, exitCode: ok ? 0 : 1, ...one.json, ...common }
      : {
          ok,
          exitCode: ok ? 0 : 1,
          describe,
          processes: results.map((r) => r.json),
          wallMs: Math.round(Math.max(...results.map((r) => r.outcome.wallMs))),
          ...common,
        };
  const { code, schedule } = settle(ok ? 0 : 1, body);
  if (cfg.json) {
    process.stdout.write(`${JSON.stringify({ ...body, exitCode: code, schedule }, null, 2)}\n`);
  } else {
    out(
      `\n== splitkern ${cfg.topology}, ${cfg.cpus} CPUs, pcache ${fmtBytes(cfg.pcacheBytes)} ${cfg.ways}-way, seed ${cfg.seed}, kernel ${cfg.kernel}${cfg.bugs.length ? ` (bugs: ${cfg.bugs.join(', ')})` : ''}\n`,
    );
    for (const r of results) {
      const pre = multi ? `[pid ${r.outcome.pid}] ` : '';
      out(`${pre}${r.job.describe}: process ${r.proc}, ${(r.outcome.wallMs / 1000).toFixed(2)} s\n`);
      out(`${pre}verification: ${r.v.ok ? 'OK' : 'FAILED'}: ${r.v.summary}\n`);
    }
    if (cfg.check !== 'none' || nViolations) out(`violations (--check ${cfg.check}): ${violationLine(machine)}\n`);
    for (const x of violations.slice(0, 5)) out(`  ${x.kind}: ${x.text}\n`);
    out(`${formatStats(stats)}\n`);
    if (schedule) out(`${formatScheduleLine(schedule)}\n`);
    if (machine.logDropped) out(`(kernel log: ${machine.logDropped} lines dropped: the ring overflowed)\n`);
  }
  return code;
}

/**
 * Several processes share one console: cut each one's output into lines and put its pid before each
 * (a line still being written waits for its end, or for the run's end).
 */
class LinePrefixer {
  private readonly partial = new Map<string, string>();
  private readonly dec = new TextDecoder();
  constructor(private readonly prefix: (pid: number) => string) {}
  push(fd: number, pid: number, data: Uint8Array): Uint8Array {
    const key = `${fd}:${pid}`;
    const text = (this.partial.get(key) ?? '') + this.dec.decode(data);
    const cut = text.lastIndexOf('\n') + 1;
    this.partial.set(key, text.slice(cut));
    const whole = text
      .slice(0, cut)
      .split('\n')
      .slice(0, -1)
      .map((l) => `${this.prefix(pid)}${l}\n`)
      .join('');
    return Buffer.from(whole);
  }
  /** The unfinished last lines, prefixed and ended, by fd (then forgotten). */
  flush(): Array<[number, string]> {
    const out: Array<[number, string]> = [];
    for (const [key, text] of this.partial) {
      const [fd, pid] = key.split(':').map(Number);
      if (text && fd !== undefined && pid !== undefined) out.push([fd, `${this.prefix(pid)}${text}\n`]);
    }
    this.partial.clear();
    return out;
  }
}

/** Processes a run may spawn at once (the mm table on P holds 16). */
const kMaxSpawns = 16;

/** "N violations" and, when the report ring overflowed, how many records were dropped. */
function violationLine(machine: Machine): string {
  const n = machine.violationCount;
  const dropped = machine.violationsDropped;
  return `${n} violation${n === 1 ? '' : 's'}${dropped ? ` (${dropped} record${dropped === 1 ? '' : 's'} dropped: the report ring was full; the count is exact)` : ''}`;
}

const SIGINT_NO = 2;
const SIGTERM_NO = 15;
/** How long the workload may take to unwind after the first SIGINT/SIGTERM before the machine is stopped. */
const kStopGraceMs = 10_000;

interface InterruptedRun {
  cfg: MachineConfig;
  machine: Machine;
  outcome: RunOutcome | undefined;
  failure: EmulatorFailure | undefined;
  stats: ReturnType<typeof collectStats>;
  progressDone: ThreadProgress;
  t0: number;
  interruptMs: number;
  runStartMs: number;
  out: (s: string) => void;
}

/**
 * The partial summary of an interrupted run. Exit 130 (SIGINT) or 143 (SIGTERM), unless a violation
 * was detected before the signal: a detection is never masked, that is exit 1.
 */
function interruptedSummary(sig: NodeJS.Signals, r: InterruptedRun): number {
  const { cfg, machine, stats } = r;
  const violations = machine.violations;
  const code = machine.violationCount > 0 ? 1 : sig === 'SIGINT' ? 130 : 143;
  const { done, total } = sumProgress(r.progressDone);
  const progress = total > 0 ? `${done} of ${total} iterations done` : 'the workload reports no progress';
  const stopMs = Math.round(performance.now() - r.interruptMs);
  const how = r.failure ? `forced: ${r.failure.message.split('\n')[0]}` : `stopped cleanly in ${stopMs} ms`;
  if (cfg.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          ok: false,
          exitCode: code,
          interrupted: sig,
          stopMs,
          forced: r.failure !== undefined,
          seed: cfg.seed,
          config: cfg,
          progress: { done, total },
          verification: { ok: false, summary: `interrupted by ${sig}: not verified` },
          violations,
          violationCount: machine.violationCount,
          violationsDropped: machine.violationsDropped,
          wallMs: Math.round(performance.now() - r.t0),
          runStartMs: Math.round(r.runStartMs * 1000) / 1000,
          stats,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    r.out(
      `\n== splitkern ${cfg.topology}, ${cfg.cpus} CPUs, seed ${cfg.seed}, kernel ${cfg.kernel}: INTERRUPTED by ${sig} (${how})\n`,
    );
    r.out(
      `partial: ${progress}, ${stats.mremap.pagesMoved} pages moved, ${stats.faults.total} faults; the workload did not finish, so it is not verified\n`,
    );
    r.out(`violations so far: ${violationLine(machine)}\n`);
    for (const x of violations.slice(0, 5)) r.out(`  ${x.kind}: ${x.text}\n`);
    r.out(`${formatStats(stats)}\n`);
  }
  return code;
}

function addRunOptions(cmd: Command): Command {
  return addWorkloadOptions(
    cmd
      .option('--topology <name>', 'LegoOS configuration: 1P-1M-1S or 1P-1M', '1P-1M-1S')
      .option('--cpus <n>', 'CPUs of the processor component (an idle-context worker each; threads are tasks)', '2')
      .option('--memory <size>', "M's DRAM for user pages", '1G')
      .option('--pcache <size>', 'pcache size (4 KiB lines)', '16M')
      .option('--ways <n>', 'pcache associativity', '8')
      .addOption(new Option('--evict <policy>', 'eviction policy').choices(['lru', 'fifo', 'random']).default('lru'))
      .option('--victim <n>', 'victim cache entries (0 disables)', '8')
      .option('--sweep', 'run the kevict_sweepd kernel thread')
      .option('--sweep-interval <ms>', 'pause between two sweeps of the whole pcache', '10')
      .option('--timeslice <ms>', "the scheduler's round-robin time slice", '5')
      .option('--seed <n>', 'seed for generated inputs and random choices', '1')
      .addOption(
        new Option(
          '--check <when>',
          'run the invariant checker: at process exit and at the end (end), also after every address-space syscall (syscall), or also every 100 ms (periodic)',
        )
          .choices(['none', 'end', 'syscall', 'periodic'])
          .default('none'),
      )
      .addOption(
        new Option('--log-level <level>', 'kernel log level on stderr')
          .choices(['error', 'warn', 'info', 'debug'])
          .default('info'),
      )
      .option('--json', 'machine-readable summary on stdout')
      .option('--files <dir>', 'host directory relative input paths on S resolve against')
      .option('--out <path>', 'dpkg-status: also write the output file here on the host')
      .option('--watchdog <sec>', 'soft-lockup watchdog threshold', '20')
      .option(
        '--heartbeat <sec>',
        'a one-line sign of life on stderr every <sec> seconds of a run (on a TTY: a progress line redrawn every second; 0 = off)',
        '10',
      )
      .option(
        '--bug <names>',
        'switch historical bugs back on (comma-separated; see `splitkern bugs`)',
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      )
      .option(
        '--kernel <preset>',
        'a historical kernel as a set of bug flags: fixed, legoos-head, legoos-2018-02-03, legoos-2018-02-01',
      )
      .option('--jitter <p>', 'delay each schedule point with probability p (widens race windows)')
      .option(
        '--sched <mode>',
        'free (real parallelism), or a controlled schedule, one context at a time: random, pct:D[:K] (PCT, bug depth D over ~K steps), replay:FILE',
        'free',
      )
      .option(
        '--record <file>',
        'write the controlled schedule, with its outcome, to this file (see `splitkern replay`)',
      )
      .option(
        '--check-determinism',
        'run the same seed twice under the controlled schedule and compare the decisions step by step (exit 3 if they differ)',
      )
      .option('--ib-serialize', 'one global lock around every fabric RPC of P (CONFIG_FIT_SEQUENTIAL_IBAPI)')
      .option(
        '--spawn <command>',
        'run this workload as one more process (repeatable; e.g. --spawn "word_count --top 5" --spawn "mremap-stress --seconds 10")',
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      ),
  );
}

export async function main(argv: string[]): Promise<number> {
  commandLine = [...argv];
  const program = new Command();
  program
    .name('splitkern')
    .description('A LegoOS-style split kernel (processor, memory, storage components) emulated on Node worker threads')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      outputError: (s, write) => write(`${oneLine(s.trim())}\n`),
    });
  let code = 0;
  addRunOptions(
    program
      .command('run')
      .description('boot a machine and run a workload on it')
      .argument('[workload]', `one of ${WORKLOADS.join(', ')} (or give each process with --spawn)`)
      .argument('[args...]', 'word_count [FILE] | dpkg-status [FILE] | script FILE | mremap-stress | pthread-stress'),
  ).action(async (workload: string | undefined, args: string[], opts: RunOptions) => {
    code = await run(workload, args, opts);
  });
  program
    .command('replay')
    .description(
      'run a recorded schedule again, from its header alone (the same command line, --sched replay:FILE); exit 3 if the run leaves the schedule or ends otherwise than the recording',
    )
    .argument('<file>', 'a schedule written by --record')
    .option('--record <file>', 'record the replay too')
    .option('--json', 'machine-readable summary on stdout')
    .action(async (file: string, opts: { record?: string; json?: boolean }) => {
      code = await main(replayCommand(file, opts));
    });
  program
    .command('bugs')
    .description('list the bug zoo: every historical bug flag and kernel preset')
    .option('--json', 'as JSON')
    .action((opts: { json?: boolean }) => {
      listBugs(opts.json ?? false);
    });
  program
    .command('repro')
    .description(
      "run a bug's reproducer over seeds and judge each run by the bug's signature, then run the control (the flag off), which must not show it; exit 0 when reproduced with a clean control, 1 otherwise",
    )
    .argument('[bug]', 'a bug flag (see `splitkern bugs`)')
    .option('--all', 'every bug of the zoo, then the race-lab table as markdown')
    .option('--attempts <n>', 'runs with the flag, each with the next seed', '10')
    .option('--controls <n>', 'runs of the control (default: as many as --attempts)')
    .option('--seed <n>', 'first seed', '1')
    .option('--json', 'one JSON object per run, then one per bug')
    .option('--first', 'stop the attempts at the first reproduction (the controls still run)')
    .option('--sched <mode>', 'every run under this schedule: free, random or pct:D[:K]', 'free')
    .option('--record <dir>', 'save the schedule of every reproducing attempt in this directory (random, pct)')
    .action(async (bug: string | undefined, opts: ReproCliOptions) => {
      code = await reproCommand(bug, opts);
    });
  program
    .command('soak')
    .description(
      'the fixed kernel under mremap-stress over a matrix of configurations and seeds; prints runs, workload time, page checks and violations (must be 0); exit 0 when every run was clean',
    )
    .option('--runs <n>', 'runs, cycling through the configurations', '16')
    .option('--seed <n>', 'first seed', '101')
    .option('--iterations <n>', 'mremap-stress iterations per thread', '400')
    .option('--json', 'one JSON object per run, then a summary object')
    .action(async (opts: { runs: string; seed: string; iterations: string; json?: boolean }) => {
      const runs = Number(opts.runs);
      const seed = Number(opts.seed);
      const iterations = Number(opts.iterations);
      if (!Number.isInteger(runs) || runs < 1 || runs > 100000)
        throw new UsageError(`--runs ${opts.runs} must be an integer from 1 to 100000`);
      if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 31)
        throw new UsageError(`--seed ${opts.seed} must be an integer from 0 to 2147483648`);
      if (!Number.isInteger(iterations) || iterations < 1 || iterations > 1_000_000)
        throw new UsageError(`--iterations ${opts.iterations} must be an integer from 1 to 1000000`);
      code = await soak({ runs, seed, iterations, json: opts.json ?? false });
    });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      if (e.code === 'commander.help') return 2; // no command given: the usage went to stderr
      return 2; // commander already printed its one-line error
    }
    if (e instanceof UsageError) {
      process.stderr.write(`splitkern: ${oneLine(e.message)}\n`);
      return 2;
    }
    throw e;
  }
  return code;
}

/** The command line that replays FILE: its recorded one, with --sched replay:FILE instead of its mode. */
function replayCommand(file: string, opts: { record?: string; json?: boolean }): string[] {
  let f;
  try {
    f = readSchedule(file);
  } catch (e) {
    if (e instanceof ScheduleFileError) throw new UsageError(e.message);
    throw e;
  }
  const out = withoutOptions(f.command, ['--sched', '--record'], ['--json']);
  out.push('--sched', `replay:${file}`);
  if (opts.record !== undefined) out.push('--record', opts.record);
  if (opts.json) out.push('--json');
  return out;
}

function listBugs(json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ bugs: BUGS, kernels: KERNELS }, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  for (const b of BUGS) {
    out.push(`${b.name}`);
    out.push(`  story:    ${b.story}`);
    out.push(`  path:     ${b.path}`);
    out.push(`  symptom:  ${b.symptom}`);
    out.push(`  detector: ${b.detector}`);
    out.push(`  signature: ${formatSignature(b.signature)}: ${b.signature.describe}`);
    out.push(`  repro:    ${commandOf(b).replace(' --seed N', '')}   (or: splitkern repro ${b.name})`);
    out.push(`  control:  ${commandOf(b, false).replace(' --seed N', '')}   (must not show the signature)`);
    out.push('');
  }
  out.push('kernel presets (--kernel NAME):');
  for (const k of KERNELS)
    out.push(`  ${k.name.padEnd(18)} ${k.bugs.length ? k.bugs.join(',') : '(no bugs)'}\n  ${''.padEnd(18)} ${k.why}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

interface ReproCliOptions {
  all?: boolean;
  attempts: string;
  controls?: string;
  seed: string;
  json?: boolean;
  first?: boolean;
  sched: string;
  record?: string;
}

async function reproCommand(bug: string | undefined, opts: ReproCliOptions): Promise<number> {
  if (opts.all && bug !== undefined) throw new UsageError(`repro: give a bug or --all, not both`);
  if (!opts.all && bug === undefined) throw new UsageError(`repro: name a bug (see \`splitkern bugs\`) or give --all`);
  const entries = opts.all ? BUGS : BUGS.filter((b) => b.name === bug);
  if (entries.length === 0) {
    const hint = closest(bug ?? '', BUG_NAMES);
    throw new UsageError(`${bug} is not a known bug${hint ? `; did you mean ${hint}?` : ''} (see \`splitkern bugs\`)`);
  }
  const attempts = Number(opts.attempts);
  const controls = opts.controls === undefined ? attempts : Number(opts.controls);
  const seed = Number(opts.seed);
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 10000)
    throw new UsageError(`--attempts ${opts.attempts} must be an integer from 1 to 10000`);
  if (!Number.isInteger(controls) || controls < 0 || controls > 10000)
    throw new UsageError(`--controls ${opts.controls} must be an integer from 0 to 10000`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 31)
    throw new UsageError(`--seed ${opts.seed} must be an integer from 0 to 2147483648`);
  const sched = parseSched(opts.sched);
  if (sched.mode === 'replay')
    throw new UsageError('repro runs new schedules: replay a recorded one with `splitkern replay FILE`');
  if (opts.record !== undefined) {
    if (sched.mode === 'free') throw new UsageError('repro --record needs --sched random or --sched pct:D');
    fs.mkdirSync(opts.record, { recursive: true });
  }
  return repro(
    entries,
    {
      attempts,
      controls,
      seed,
      json: opts.json ?? false,
      first: opts.first ?? false,
      sched: opts.sched,
      recordDir: opts.record,
    },
    opts.all ?? false,
  );
}
