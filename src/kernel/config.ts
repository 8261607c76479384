// The machine configuration: what `splitkern run` boots. Defaults follow DESIGN.md and the issue.
// Types and constants only: it touches no shared memory and takes no lock. A MachineConfig is built on the
// host (src/host/options.ts) before boot, and every worker reads its own structured-cloned copy.

export type EvictPolicy = 'lru' | 'fifo' | 'random';
export type CheckMode = 'none' | 'end' | 'syscall' | 'periodic';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * The bug zoo's flags (stories, signatures and reproducers: src/racelab/bugzoo.ts). Each switches one
 * real code path of the fixed kernel back to its historical form; a typo is a compile error.
 */
export const BUG_FLAGS = [
  'mremap-no-pcache-move',
  'mremap-pte-before-rmap',
  'mremap-unserialized',
  'mremap-dest-overwrite',
  'free-before-flush',
  'tlb-shootdown-skip',
  'brk-shrink-no-zap',
  'cpuhp-missing',
  'shared-no-colour',
] as const;
export type BugFlag = (typeof BUG_FLAGS)[number];

export interface MachineConfig {
  /** LegoOS config name: "1P-1M-1S" or "1P-1M". */
  topology: '1P-1M-1S' | '1P-1M';
  /** CPUs of the processor component (one piscina worker each). */
  cpus: number;
  /** M's DRAM for user pages, bytes. */
  memoryBytes: number;
  /** pcache size in bytes (data lines only) and associativity. */
  pcacheBytes: number;
  ways: number;
  evict: EvictPolicy;
  /** victim cache entries; 0 disables it. */
  victim: number;
  /** run the kevict_sweepd kernel thread. */
  sweep: boolean;
  sweepIntervalMs: number;
  /** round-robin time slice of the scheduler (processor/sched.ts), in milliseconds */
  timesliceMs: number;
  seed: number;
  check: CheckMode;
  logLevel: LogLevel;
  /** seconds a CPU may stay in the kernel before the soft-lockup watchdog fires. */
  watchdogSec: number;
  /** host directory exposed on S (`--files`), and host path receiving the workload's output (`--out`). */
  filesDir?: string;
  outPath?: string;
  /** machine-readable summary on stdout. */
  json: boolean;
  /** bug flags (race lab); empty on the fixed kernel. */
  bugs: BugFlag[];
  /** the preset the flags came from (--kernel), for the report */
  kernel: string;
  /** probability that a named schedule point delays (--jitter) */
  jitter: number;
  /** one global lock around every fabric RPC (--ib-serialize) */
  ibSerialize: boolean;
  /** which LegoOS format `report_bad_rmap` prints: the 2018-02 "mismatched PTE and rmap" block or HEAD's */
  rmapReportFormat: '2018-02' | 'head';
  /** --sched: free parallelism, or a controlled scheduler (src/kernel/ctlsched.ts) */
  sched: SchedConfig;
}

export type SchedMode = 'free' | 'random' | 'pct' | 'replay';
export interface SchedConfig {
  mode: SchedMode;
  /** pct: the bug depth D (D - 1 priority change points) */
  pctDepth: number;
  /** pct: the estimated number of steps k the change points are drawn over */
  pctSteps: number;
  /** replay: the schedule file being followed (its decisions are handed to the workers by the host) */
  replayFile?: string;
}
/** One schedule step is this many µs of logical time in a controlled mode (the clock's only tick). */
export const kSchedStepUs = 10;

export const DEFAULT_CONFIG: MachineConfig = {
  topology: '1P-1M-1S',
  cpus: 2,
  memoryBytes: 1024 * 1024 * 1024,
  pcacheBytes: 16 * 1024 * 1024,
  ways: 8,
  evict: 'lru',
  victim: 8,
  sweep: false,
  sweepIntervalMs: 10,
  timesliceMs: 5,
  seed: 1,
  check: 'none',
  logLevel: 'info',
  watchdogSec: 20,
  json: false,
  bugs: [],
  kernel: 'fixed',
  jitter: 0,
  ibSerialize: false,
  rmapReportFormat: '2018-02',
  sched: { mode: 'free', pctDepth: 3, pctSteps: 20000 },
};

/** Hard limits, named so an error can say which one was hit and how to change the input. */
export const kMaxCpus = 16;
export const kMinPcacheLines = 16;
export const kMaxPcacheBytes = 1024 * 1024 * 1024;
export const kMaxWays = 64;
export const kMaxVictim = 128;
