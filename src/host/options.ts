// Command-line options -> a validated MachineConfig. Every problem becomes one UsageError line that says
// what is wrong and how to fix it (the CLI prints it and exits 2). Runs on the host before boot: it
// touches no shared memory and takes no lock; its functions are pure (no state).
import { z } from 'zod';
import { excerpt } from '../lib/text.ts';
import {
  BUG_FLAGS,
  DEFAULT_CONFIG,
  kMaxCpus,
  kMaxPcacheBytes,
  kMaxVictim,
  kMaxWays,
  kMinPcacheLines,
  type BugFlag,
  type MachineConfig,
} from '../kernel/config.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';
import { closest, isBugFlag, KERNELS } from '../racelab/bugzoo.ts';
import { at } from '../lib/at.ts';

export class UsageError extends Error {}

const SIZE_RE = /^(\d+)([KMG]?)(i?B)?$/i;
/** "16M", "1G", "64K", "4096" -> bytes */
/** The commander option a config key comes from, where their names differ. */
const OPTION_OF_KEY: Record<string, string> = {
  memoryBytes: 'memory',
  pcacheBytes: 'pcache',
  watchdogSec: 'watchdog',
  sweepIntervalMs: 'sweepInterval',
  timesliceMs: 'timeslice',
};

export function parseSize(text: string, what: string): number {
  const m = SIZE_RE.exec(text.trim());
  if (!m)
    throw new UsageError(
      `${what}: "${excerpt(text)}" is not a size (use a number of bytes or a suffix K, M or G, e.g. 16M)`,
    );
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[at(m, 2).toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.min(Number(m[1]) * mult, Number.MAX_SAFE_INTEGER);
}

export { excerpt };

/**
 * One error line: no newline, and at most kMaxErrorLine characters (long input quoted in the middle
 * of a message is cut there, the message's end — usually the fix — is kept).
 */
export const kMaxErrorLine = 400;
export function oneLine(msg: string): string {
  const t = msg.replace(/\s*\n\s*/g, ' ');
  return t.length <= kMaxErrorLine ? t : `${t.slice(0, kMaxErrorLine - 120)} … ${t.slice(-100)}`;
}

function parseInt10(text: string, what: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new UsageError(`${what}: "${excerpt(text)}" is not an integer`);
  // Beyond 2^53 a double is no longer that integer: cap it, so the range check names the real limit.
  const n = Number(text);
  return Math.max(Math.min(n, Number.MAX_SAFE_INTEGER), -Number.MAX_SAFE_INTEGER);
}

export function parseNumber(text: string, what: string): number {
  if (!/^\d+(\.\d+)?$/.test(text.trim())) throw new UsageError(`${what}: "${excerpt(text)}" is not a number`);
  return Math.min(Number(text), Number.MAX_SAFE_INTEGER);
}

export interface RawOptions {
  topology?: string;
  cpus?: string;
  memory?: string;
  pcache?: string;
  ways?: string;
  evict?: string;
  victim?: string;
  sweep?: boolean;
  sweepInterval?: string;
  timeslice?: string;
  seed?: string;
  check?: string;
  logLevel?: string;
  json?: boolean;
  files?: string;
  out?: string;
  watchdog?: string;
  bug?: string[];
  kernel?: string;
  jitter?: string;
  ibSerialize?: boolean;
  sched?: string;
  record?: string;
}

/**
 * --sched MODE: free | random | pct:D | pct:D:K | replay:FILE. D is PCT's bug depth (1..17: D - 1
 * priority change points), K the estimated steps they are drawn over.
 */
export function parseSched(text: string): MachineConfig['sched'] {
  const base = DEFAULT_CONFIG.sched;
  if (text === 'free' || text === 'random') return { ...base, mode: text };
  const pct = /^pct:(\d+)(?::(\d+))?$/.exec(text);
  if (pct) {
    const d = Number(pct[1]);
    const k = pct[2] === undefined ? base.pctSteps : Number(pct[2]);
    if (d < 1 || d > 17) throw new UsageError(`--sched ${text}: the depth D of pct:D must be 1 to 17`);
    if (k < 1 || k > 1e9) throw new UsageError(`--sched ${text}: the step estimate K of pct:D:K must be 1 to 1e9`);
    return { ...base, mode: 'pct', pctDepth: d, pctSteps: k };
  }
  if (text.startsWith('replay:') && text.length > 'replay:'.length)
    return { ...base, mode: 'replay', replayFile: text.slice('replay:'.length) };
  throw new UsageError(
    `--sched ${excerpt(text)} is not a mode: use free, random, pct:D (e.g. pct:3), pct:D:K or replay:FILE`,
  );
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

const configSchema = z.object({
  topology: z.enum(['1P-1M-1S', '1P-1M'], { error: () => 'must be 1P-1M-1S or 1P-1M (LegoOS config names)' }),
  cpus: z.number().int().min(1, 'must be at least 1').max(kMaxCpus, `must be at most ${kMaxCpus}`),
  memoryBytes: z
    .number()
    .int()
    .min(16 * PAGE_SIZE, 'must be at least 64K')
    .max(64 * 1024 ** 3, 'must be at most 64G'),
  pcacheBytes: z
    .number()
    .int()
    .min(kMinPcacheLines * PAGE_SIZE, `must be at least ${kMinPcacheLines * 4}K (${kMinPcacheLines} lines)`)
    .max(kMaxPcacheBytes, 'must be at most 1G')
    .refine((n) => n % PAGE_SIZE === 0, 'must be a multiple of 4K (the line size)'),
  ways: z
    .number()
    .int()
    .min(1, 'must be at least 1')
    .max(kMaxWays, `must be at most ${kMaxWays}`)
    .refine(isPow2, 'must be a power of two'),
  evict: z.enum(['lru', 'fifo', 'random'], { error: () => 'must be lru, fifo or random' }),
  victim: z.number().int().min(0, 'must be 0 (off) or more').max(kMaxVictim, `must be at most ${kMaxVictim}`),
  sweep: z.boolean(),
  seed: z
    .number()
    .int()
    .min(0, 'must be a non-negative integer')
    .max(2 ** 32 - 1, 'must fit in 32 bits'),
  check: z.enum(['none', 'end', 'syscall', 'periodic'], { error: () => 'must be none, end, syscall or periodic' }),
  logLevel: z.enum(['error', 'warn', 'info', 'debug'], { error: () => 'must be error, warn, info or debug' }),
  watchdogSec: z.number().min(1, 'must be at least 1 second').max(86_400, 'must be at most 86400 seconds (a day)'),
  sweepIntervalMs: z.number().min(0, 'must be 0 or more milliseconds').max(10_000, 'must be at most 10000 ms'),
  timesliceMs: z.number().min(0.1, 'must be at least 0.1 ms').max(10_000, 'must be at most 10000 ms'),
});

const FLAG_OF: Record<string, string> = {
  topology: '--topology',
  cpus: '--cpus',
  memoryBytes: '--memory',
  pcacheBytes: '--pcache',
  ways: '--ways',
  evict: '--evict',
  victim: '--victim',
  sweep: '--sweep',
  sweepIntervalMs: '--sweep-interval',
  timesliceMs: '--timeslice',
  seed: '--seed',
  check: '--check',
  logLevel: '--log-level',
  watchdogSec: '--watchdog',
};

export function buildConfig(o: RawOptions): MachineConfig {
  const cfg: MachineConfig = {
    ...DEFAULT_CONFIG,
    topology: (o.topology ?? DEFAULT_CONFIG.topology) as MachineConfig['topology'],
    cpus: o.cpus === undefined ? DEFAULT_CONFIG.cpus : parseInt10(o.cpus, '--cpus'),
    memoryBytes: o.memory === undefined ? DEFAULT_CONFIG.memoryBytes : parseSize(o.memory, '--memory'),
    pcacheBytes: o.pcache === undefined ? DEFAULT_CONFIG.pcacheBytes : parseSize(o.pcache, '--pcache'),
    ways: o.ways === undefined ? DEFAULT_CONFIG.ways : parseInt10(o.ways, '--ways'),
    evict: (o.evict ?? DEFAULT_CONFIG.evict) as MachineConfig['evict'],
    victim: o.victim === undefined ? DEFAULT_CONFIG.victim : parseInt10(o.victim, '--victim'),
    sweep: o.sweep ?? false,
    sweepIntervalMs:
      o.sweepInterval === undefined ? DEFAULT_CONFIG.sweepIntervalMs : parseNumber(o.sweepInterval, '--sweep-interval'),
    timesliceMs: o.timeslice === undefined ? DEFAULT_CONFIG.timesliceMs : parseNumber(o.timeslice, '--timeslice'),
    seed: o.seed === undefined ? DEFAULT_CONFIG.seed : parseInt10(o.seed, '--seed'),
    check: (o.check ?? DEFAULT_CONFIG.check) as MachineConfig['check'],
    logLevel: (o.logLevel ?? DEFAULT_CONFIG.logLevel) as MachineConfig['logLevel'],
    watchdogSec: o.watchdog === undefined ? DEFAULT_CONFIG.watchdogSec : parseNumber(o.watchdog, '--watchdog'),
    json: o.json ?? false,
    bugs: [],
  };
  // --kernel PRESET, then --bug NAME[,NAME...] on top of it
  const presetName = o.kernel ?? 'fixed';
  const preset = KERNELS.find((k) => k.name === presetName);
  if (!preset) {
    const hint = closest(
      presetName,
      KERNELS.map((k) => k.name),
    );
    throw new UsageError(
      `--kernel ${presetName} is not a known kernel${hint ? `; did you mean ${hint}?` : ''} (known: ${KERNELS.map((k) => k.name).join(', ')})`,
    );
  }
  const bugs = new Set<BugFlag>(preset.bugs);
  for (const name of (o.bug ?? [])
    .flatMap((b) => b.split(','))
    .map((b) => b.trim())
    .filter((b) => b !== '')) {
    if (!isBugFlag(name)) {
      const hint = closest(name, BUG_FLAGS);
      throw new UsageError(
        `--bug ${name} is not a known bug${hint ? `; did you mean ${hint}?` : ''} (see \`splitkern bugs\`)`,
      );
    }
    bugs.add(name);
  }
  cfg.bugs = [...bugs];
  cfg.kernel = o.bug?.length ? `${presetName}+${(o.bug ?? []).join(',')}` : presetName;
  if (o.kernel !== undefined) cfg.rmapReportFormat = preset.rmapReportFormat;
  cfg.ibSerialize = o.ibSerialize ?? false;
  if (o.jitter !== undefined) {
    const p = parseNumber(o.jitter, '--jitter');
    if (!(p >= 0 && p <= 1))
      throw new UsageError(`--jitter ${excerpt(o.jitter)} must be a probability between 0 and 1`);
    cfg.jitter = p;
  }
  if (o.sched !== undefined) cfg.sched = parseSched(o.sched.trim());
  const controlled = cfg.sched.mode !== 'free';
  if (controlled && cfg.jitter > 0)
    throw new UsageError(
      `--jitter has no meaning under --sched ${o.sched}: the controlled schedule decides every interleaving (drop --jitter)`,
    );
  if (controlled && o.check === 'periodic')
    throw new UsageError(
      `--check periodic runs on the host's clock, which a controlled schedule does not follow: use --check syscall or --check end with --sched ${o.sched}`,
    );
  if (o.record !== undefined && !controlled)
    throw new UsageError('--record needs a controlled schedule: add --sched random or --sched pct:3');
  if (o.files !== undefined) cfg.filesDir = o.files;
  if (o.out !== undefined) cfg.outPath = o.out;
  const r = configSchema.safeParse(cfg);
  if (!r.success) {
    const issue = at(r.error.issues, 0);
    const key = String(issue.path[0] ?? '');
    const given: unknown = (o as Record<string, unknown>)[OPTION_OF_KEY[key] ?? key];
    const shown = typeof given === 'string' ? given : (JSON.stringify(given) ?? '');
    throw new UsageError(
      `${FLAG_OF[key] ?? key} ${given === undefined ? '' : `${excerpt(shown)} `}${issue.message}`.replace(/\s+/g, ' '),
    );
  }
  const lines = cfg.pcacheBytes / PAGE_SIZE;
  if (lines % cfg.ways !== 0 || !isPow2(lines / cfg.ways)) {
    throw new UsageError(
      `--pcache ${o.pcache ?? '16M'} with --ways ${cfg.ways} gives ${lines / cfg.ways} sets; the number of sets must be a power of two (pcache_set_mask)`,
    );
  }
  return cfg;
}
