// The workloads `splitkern run` knows: each one's argument checks (clear one-line errors before boot),
// the program and argv it runs, its input files on S, and how its result is verified against an oracle
// computed on the host (oracle.ts). Host thread only; no shared memory and no lock.
import fs from 'node:fs';
import type { Command } from 'commander';
import path from 'node:path';
import type { MachineConfig } from '../kernel/config.ts';
import { genDpkgStatus, genZipfText } from '../user/gen.ts';
import { ScenarioError } from '../user/programs/script/format.ts';
import { parseScenario } from '../user/programs/script/parser.ts';
import { type ScriptReport } from '../user/programs/script/report.ts';
import { parseStressArgs, type StressReport } from '../user/programs/mremap_stress.ts';
import { parsePthreadStressArgs, type PthreadStressReport } from '../user/programs/pthread_stress.ts';
import { parseForkStressArgs, type ForkStressReport } from '../user/programs/fork_stress.ts';
import { compareBytes, comparePthreadStress, compareWordCounts, countWords, sortCounts } from './oracle.ts';
import { fmtBytes, type Machine, type RunOutcome } from './machine.ts';
import { excerpt, parseSize, UsageError } from './options.ts';
import { at } from '../lib/at.ts';
import { kMaxTasks } from '../kernel/layout.ts';

/** The options of `splitkern run` that belong to one workload or another (strings, as commander gives them). */
export interface WorkloadOptions {
  size?: string;
  top?: string;
  threads?: string;
  packages?: string;
  regions?: string;
  pages?: string;
  iterations?: string;
  seconds?: string;
  pattern?: string;
  items?: string;
  capacity?: string;
  timedMs?: string;
  relock?: boolean;
  spin?: boolean;
  yields?: string;
  affinity?: string;
  procs?: string;
}

export const WORKLOADS = [
  'word_count',
  'dpkg-status',
  'script',
  'mremap-stress',
  'pthread-stress',
  'fork-stress',
] as const;
export type Workload = (typeof WORKLOADS)[number];

/** A prepared workload: what to run, and how to verify it afterwards. */
export interface Job {
  program: string;
  /** the user threads it runs (main included): with one thread per CPU, what it needs of --cpus */
  threads: number;
  argv: string[];
  memFiles: Record<string, Uint8Array>;
  describe: string;
  verify(out: RunOutcome, m: Machine): { ok: boolean; summary: string; details: Record<string, unknown> };
}

/**
 * Read a host input file, refused before boot unless it is a regular file of at most `limit` bytes
 * (a device such as /dev/zero, a FIFO or a directory never reaches readFileSync).
 */
function readHostFile(file: string, what: string, limit: { bytes: number; why: string }): Buffer {
  try {
    const st = fs.statSync(file);
    if (st.isDirectory()) throw new UsageError(`${what} ${file} is a directory; give a file`);
    if (!st.isFile())
      throw new UsageError(`${what} ${file} is not a regular file (a device, FIFO or socket); give a regular file`);
    if (st.size > limit.bytes)
      throw new UsageError(
        `${what} ${file} is ${fmtBytes(st.size)}, more than ${limit.why} (${fmtBytes(limit.bytes)})`,
      );
    return fs.readFileSync(file);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(
      `${what} ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`,
    );
  }
}

/** A scenario file larger than this is not a scenario (the shipped ones are a few KiB). */
const kMaxScenarioBytes = 16 * 1024 * 1024;

/** An input the program reads into emulated memory must fit in M's DRAM, and under word_count's 1G. */
function inputLimit(cfg: MachineConfig): { bytes: number; why: string } {
  const half = Math.floor(cfg.memoryBytes / 2);
  return half < 1024 ** 3
    ? { bytes: half, why: `half of M's DRAM (--memory ${fmtBytes(cfg.memoryBytes)}): raise --memory` }
    : { bytes: 1024 ** 3, why: 'the 1G input limit' };
}

/** --affinity "1" or "0,2": the CPUs as a bitmask, each one a CPU of this machine. */
function affinityOption(text: string, cfg: MachineConfig): number {
  let mask = 0;
  for (const part of text.split(',')) {
    if (!/^\d+$/.test(part.trim()))
      throw new UsageError(`--affinity ${excerpt(text)}: give CPU numbers separated by commas, e.g. 0,1`);
    const c = Number(part);
    if (c >= cfg.cpus)
      throw new UsageError(
        `--affinity ${excerpt(text)}: CPU ${c} does not exist (--cpus ${cfg.cpus}: CPUs 0-${cfg.cpus - 1}); raise --cpus or pick another CPU`,
      );
    mask |= 1 << c;
  }
  return mask;
}

function threadsOption(o: WorkloadOptions, cfg: MachineConfig, fallback: number): number {
  const t = o.threads === undefined ? fallback : Number(o.threads);
  if (!Number.isInteger(t) || t < 1)
    throw new UsageError(`--threads ${excerpt(o.threads ?? '')} must be a positive integer`);
  if (t > kMaxTasks)
    throw new UsageError(
      `--threads ${t} is more than the ${kMaxTasks} live threads splitkern runs at once (threads-max: each is a task with a worker of its own); lower --threads`,
    );
  return t;
}

/** The workload options, on `splitkern run` and inside each `--spawn` (commander maps them to WorkloadOptions). */
export function addWorkloadOptions(cmd: Command): Command {
  return cmd
    .option('--size <size>', 'word_count: size of the generated input', '10M')
    .option('--packages <n>', 'dpkg-status: packages in the generated status file', '2000')
    .option('--top <n>', 'word_count: words to print', '10')
    .option('--threads <n>', 'word_count, mremap-stress, pthread-stress: threads (default: --cpus)')
    .option('--regions <n>', 'mremap-stress: regions per thread')
    .option('--pages <n>', 'mremap-stress, fork-stress: pages per region')
    .option(
      '--iterations <n>',
      'mremap-stress: actions per thread; pthread-stress: locked increments per thread; fork-stress: forks',
    )
    .option('--items <n>', 'pthread-stress: items main produces for the other threads')
    .option('--capacity <n>', 'pthread-stress: slots in the producer/consumer ring')
    .option('--timed-ms <ms>', 'pthread-stress: every condition wait times out after <ms> and loops')
    .option('--relock', 'pthread-stress: every thread locks its mutex twice (a self-deadlock the hang check must end)')
    .option('--spin', 'pthread-stress: first a user-space spin barrier of all threads (ends only under preemption)')
    .option('--yields <n>', 'pthread-stress: then every thread calls sched_yield n times')
    .option('--affinity <cpus>', 'pthread-stress: every thread first pins itself to these CPUs (e.g. 1 or 0,2)')
    .option('--procs <n>', 'fork-stress: children alive at once')
    .option('--seconds <s>', 'mremap-stress, fork-stress: time budget (0 = none)')
    .option('--pattern <p>', 'mremap-stress: chain, pingpong or random');
}

/** The report the process's main thread made with u.report({ kind, ... }), if it got that far. */
function mainReport<T>(out: RunOutcome, kind: string): T | undefined {
  return out.main.reports.find((r) => (r as { kind?: string }).kind === kind) as T | undefined;
}

/**
 * A stress program takes options, not arguments: its argv is --threads (default --cpus) and the
 * options the user gave, for the program's own parser to check.
 */
function optionsArgv(
  workload: Workload,
  args: string[],
  o: WorkloadOptions,
  cfg: MachineConfig,
  given: ReadonlyArray<readonly [string, string | undefined]>,
): { threads: number; argv: string[] } {
  if (args.length > 0) throw new UsageError(`${workload} takes options, not arguments: ${args.join(' ')}`);
  const threads = threadsOption(o, cfg, cfg.cpus);
  const argv = ['--threads', String(threads)];
  for (const [flag, v] of given) if (v !== undefined) argv.push(flag, v);
  return { threads, argv };
}

/**
 * Check a workload's arguments and options and say what to run. `tag` tells apart the files on S of
 * several processes run at once (a --spawn's number: ".1", ".2", ...).
 */
export function prepare(workload: Workload, args: string[], o: WorkloadOptions, cfg: MachineConfig, tag = ''): Job {
  if (workload === 'word_count') {
    if (args.length > 1)
      throw new UsageError(`word_count takes at most one FILE, got ${args.length}: ${args.join(' ')}`);
    const top = o.top === undefined ? 10 : Number(o.top);
    // The program's own limit (word_count's argument parser, Phoenix's "top N"): 1 or more.
    if (!Number.isInteger(top) || top < 1 || top > 1_000_000)
      throw new UsageError(`--top ${excerpt(o.top ?? '')} must be an integer from 1 to 1000000`);
    const threads = threadsOption(o, cfg, cfg.cpus);
    let input: Uint8Array;
    let sPath: string;
    const memFiles: Record<string, Uint8Array> = {};
    let describe: string;
    if (args[0] !== undefined) {
      if (cfg.topology === '1P-1M') throw new UsageError('word_count reads its input from S: use --topology 1P-1M-1S');
      sPath = path.resolve(cfg.filesDir ?? process.cwd(), args[0]);
      input = readHostFile(sPath, 'word_count: input', inputLimit(cfg));
      describe = `word_count on ${args[0]} (${fmtBytes(input.length)})`;
    } else {
      if (cfg.topology === '1P-1M') throw new UsageError('word_count reads its input from S: use --topology 1P-1M-1S');
      const size = o.size === undefined ? 10 * 1024 * 1024 : parseSize(o.size, '--size');
      if (size < 1 || size > 1024 * 1024 * 1024) throw new UsageError(`--size ${o.size} must be between 1 byte and 1G`);
      input = genZipfText(cfg.seed, size);
      sPath = `/splitkern/input/words-seed${cfg.seed}-${size}.txt`;
      memFiles[sPath] = input;
      describe = `word_count on a generated ${fmtBytes(size)} Zipf text (seed ${cfg.seed})`;
    }
    return {
      program: 'word_count',
      threads,
      argv: [sPath, '--top', String(top), '--threads', String(threads)],
      memFiles,
      describe: `${describe}, ${threads} thread${threads > 1 ? 's' : ''}`,
      verify(out) {
        const rep = mainReport<{ words: Array<[string, number]>; totalWords: number; uniqueWords: number }>(
          out,
          'word_count',
        );
        const expected = countWords(input);
        if (!rep) return { ok: false, summary: 'no result: the program did not finish', details: {} };
        const cmp = compareWordCounts(sortCounts(expected), rep.words);
        let total = 0;
        for (const c of expected.values()) total += c;
        return {
          ok: cmp.ok,
          summary: cmp.ok
            ? `matches an independent count (${total} words, ${expected.size} distinct)`
            : `MISMATCH against an independent count: ${cmp.firstDifference}`,
          details: {
            expectedWords: total,
            expectedDistinct: expected.size,
            words: rep.totalWords,
            distinct: rep.uniqueWords,
            firstDifference: cmp.firstDifference,
            top: rep.words.slice(0, top),
          },
        };
      },
    };
  }
  if (workload === 'dpkg-status') {
    if (args.length > 1) throw new UsageError(`dpkg-status takes at most one FILE, got ${args.length}`);
    if (cfg.topology === '1P-1M')
      throw new UsageError('dpkg-status reads and writes files on S: use --topology 1P-1M-1S');
    const memFiles: Record<string, Uint8Array> = {};
    let input: Uint8Array;
    let sPath: string;
    let describe: string;
    if (args[0] !== undefined) {
      sPath = path.resolve(cfg.filesDir ?? process.cwd(), args[0]);
      input = readHostFile(sPath, 'dpkg-status: input', inputLimit(cfg));
      describe = `dpkg-status on ${args[0]} (${fmtBytes(input.length)})`;
    } else {
      const n = o.packages === undefined ? 2000 : Number(o.packages);
      if (!Number.isInteger(n) || n < 1 || n > 200000)
        throw new UsageError(`--packages ${o.packages} must be an integer between 1 and 200000`);
      input = genDpkgStatus(cfg.seed, n);
      sPath = `/splitkern/input/status-seed${cfg.seed}`;
      memFiles[sPath] = input;
      describe = `dpkg-status on a generated status file of ${n} packages (${fmtBytes(input.length)}, seed ${cfg.seed})`;
    }
    if (cfg.outPath !== undefined) {
      // Checked now, not after the run: the directory must exist and the path must not be one.
      const dir = path.dirname(path.resolve(cfg.outPath));
      if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
        throw new UsageError(`--out ${cfg.outPath}: directory ${dir} does not exist`);
      if (fs.statSync(cfg.outPath, { throwIfNoEntry: false })?.isDirectory())
        throw new UsageError(`--out ${cfg.outPath} is a directory; give a file path`);
      try {
        fs.accessSync(dir, fs.constants.W_OK);
      } catch {
        throw new UsageError(`--out ${cfg.outPath}: directory ${dir} is not writable`);
      }
    }
    const outPath = `/splitkern/out/status${tag}`;
    return {
      program: 'dpkg-status',
      threads: 1,
      argv: [sPath, outPath],
      memFiles,
      describe,
      verify(out, m) {
        const written = m.files.get(outPath);
        const rep = mainReport<{ records: number; recordOffsets?: number[] }>(out, 'dpkg-status');
        if (!written)
          return { ok: false, summary: 'no output: the program did not write its status file', details: {} };
        if (m.cfg.outPath) fs.writeFileSync(m.cfg.outPath, written);
        const cmp = compareBytes(input, written, rep?.recordOffsets);
        return {
          ok: cmp.ok,
          summary: cmp.ok
            ? `output equals the input byte for byte (${input.length} bytes, ${rep?.records ?? '?'} records)`
            : `MISMATCH at offset ${cmp.offset}: ${cmp.detail ?? ''}`,
          details: {
            bytes: input.length,
            written: written.length,
            records: rep?.records,
            offset: cmp.offset,
            detail: cmp.detail,
          },
        };
      },
    };
  }
  if (workload === 'mremap-stress') {
    const { threads, argv } = optionsArgv(workload, args, o, cfg, [
      ['--regions', o.regions],
      ['--pages', o.pages],
      ['--iterations', o.iterations],
      ['--seconds', o.seconds],
      ['--pattern', o.pattern],
    ]);
    const opts = parseStressArgs(argv);
    if (typeof opts === 'string') throw new UsageError(`mremap-stress: ${opts}`);
    return {
      program: 'mremap-stress',
      threads,
      argv,
      memFiles: {},
      describe: `mremap-stress: ${threads} thread${threads > 1 ? 's' : ''}, ${opts.regions} regions of ${opts.pages} pages each, ${opts.iterations} iterations, pattern ${opts.pattern}`,
      verify(out) {
        const rep = mainReport<StressReport>(out, 'mremap-stress');
        if (!rep) return { ok: false, summary: 'no result: the program did not finish', details: {} };
        return {
          ok: rep.failures === 0,
          summary:
            rep.failures === 0
              ? `every page verified (${rep.pagesVerified} page checks, ${rep.moves} moves: ${rep.fastMoves} same-set, ${rep.slowMoves} cross-set)`
              : `CORRUPTION: ${rep.firstFailure?.message ?? '?'}`,
          details: { ...rep },
        };
      },
    };
  }
  if (workload === 'pthread-stress') {
    const { threads, argv } = optionsArgv(workload, args, o, cfg, [
      ['--iterations', o.iterations],
      ['--items', o.items],
      ['--capacity', o.capacity],
      ['--timed-ms', o.timedMs],
      ['--yields', o.yields],
      ['--affinity', o.affinity === undefined ? undefined : String(affinityOption(o.affinity, cfg))],
    ]);
    if (o.relock) argv.push('--relock');
    if (o.spin) argv.push('--spin');
    const opts = parsePthreadStressArgs(argv);
    if (typeof opts === 'string') throw new UsageError(`pthread-stress: ${opts}`);
    return {
      program: 'pthread-stress',
      threads,
      argv,
      memFiles: {},
      describe: `pthread-stress: ${threads} thread${threads > 1 ? 's' : ''}, ${opts.iterations} locked increments each, ${threads > 1 ? `${opts.items} items through a ring of ${opts.capacity}` : 'no producer/consumer phase (one thread)'}${opts.timedMs > 0 ? `, waits time out after ${opts.timedMs} ms` : ''}${opts.relock ? ', every thread re-locks its mutex' : ''}${opts.spin ? ', a spin barrier first' : ''}${opts.yields ? `, ${opts.yields} sched_yields each` : ''}${o.affinity !== undefined ? `, pinned to CPUs ${o.affinity}` : ''}`,
      verify(out) {
        const rep = mainReport<PthreadStressReport>(out, 'pthread-stress');
        if (!rep) return { ok: false, summary: 'no result: the program did not finish', details: {} };
        const cmp = comparePthreadStress(opts, rep);
        return { ok: cmp.ok, summary: cmp.summary, details: { ...rep } };
      },
    };
  }
  if (workload === 'fork-stress') {
    if (args.length > 0) throw new UsageError(`fork-stress takes options, not arguments: ${args.join(' ')}`);
    if (o.threads !== undefined) throw new UsageError('fork-stress: --threads does not apply (give --procs)');
    const argv: string[] = [];
    const given: Array<[string, string | undefined]> = [
      ['--procs', o.procs],
      ['--pages', o.pages],
      ['--iterations', o.iterations],
      ['--seconds', o.seconds],
    ];
    for (const [flag, v] of given) if (v !== undefined) argv.push(flag, v);
    const opts = parseForkStressArgs(argv);
    if (typeof opts === 'string') throw new UsageError(`fork-stress: ${opts}`);
    const until = [opts.iterations > 0 ? `${opts.iterations} forks` : '', opts.seconds > 0 ? `${opts.seconds} s` : '']
      .filter(Boolean)
      .join(' or ');
    return {
      program: 'fork-stress',
      threads: 1 + opts.procs,
      argv,
      memFiles: {},
      describe: `fork-stress: up to ${opts.procs} children at once over 2 regions of ${opts.pages} pages, until ${until}`,
      verify(out) {
        const rep = mainReport<ForkStressReport>(out, 'fork-stress');
        if (!rep) return { ok: false, summary: 'no result: the program did not finish', details: {} };
        const ok =
          rep.childFailures === 0 &&
          rep.mismatches === 0 &&
          rep.selfChecks.length === 0 &&
          rep.reaped === rep.forks &&
          rep.forks > 0;
        const summary = ok
          ? `${rep.forks} forks (${rep.execs} exec'd pthread-stress), every child reaped and clean, ${rep.pagesVerified} pages verified`
          : `${rep.forks} forks, ${rep.reaped} reaped, ${rep.childFailures} children failed, ${rep.mismatches} bad pages in the root${rep.firstMismatch ? ` (first: ${rep.firstMismatch})` : ''}${rep.selfChecks.length ? `; ${rep.selfChecks.join('; ')}` : ''}`;
        return { ok, summary, details: { ...rep } };
      },
    };
  }
  // script
  if (args.length !== 1)
    throw new UsageError('script needs exactly one scenario FILE (JSON Lines; see traces/README.md)');
  const file = at(args, 0);
  const text = readHostFile(file, 'script: scenario', {
    bytes: kMaxScenarioBytes,
    why: 'a scenario may hold',
  }).toString('utf8');
  let sc;
  try {
    sc = parseScenario(text, file);
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(e.message);
    throw e;
  }
  return {
    program: 'script',
    threads: sc.threads,
    argv: [text, file],
    memFiles: {},
    describe: `script ${file} (${sc.name}, ${sc.threads} thread${sc.threads > 1 ? 's' : ''})`,
    verify(out) {
      const rep = mainReport<ScriptReport>(out, 'script');
      if (!rep) return { ok: false, summary: 'no result: the scenario did not finish', details: {} };
      return {
        ok: rep.failures === 0,
        summary:
          rep.failures === 0
            ? `all ${rep.steps} steps as expected`
            : `${rep.failures} of ${rep.steps} steps failed; first: ${rep.firstFailure?.message ?? '?'}`,
        details: { ...rep },
      };
    },
  };
}
