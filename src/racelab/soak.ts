// `splitkern soak`: the fixed kernel under the race lab's stress, over a matrix of configurations and
// seeds, each run a child `splitkern run … --json`. It prints the figure the README quotes: runs,
// workload time, page checks, and violations — which must be zero on the fixed kernel. Exit 0 when
// every run was clean and verified, 1 otherwise, 130/143 when interrupted. Host-side only, on the CLI's
// main thread: it touches no shared memory and takes no lock; children run one at a time through
// repro.ts's runChild, whose signal forwarding it uses.
import { runChild, interruptedBy, withSignalsForwarded } from './repro.ts';
import { failuresOf, formatSignature, type RunSummary } from './signature.ts';
import { at } from '../lib/at.ts';

export interface SoakOptions {
  runs: number;
  seed: number;
  iterations: number;
  json: boolean;
}

/** The configurations cycled through: every eviction policy, small pcaches, sweep, victim, checks. */
const MATRIX: string[][] = [
  ['--evict', 'lru', '--pcache', '128K', '--ways', '2', '--check', 'end'],
  ['--evict', 'fifo', '--pcache', '64K', '--ways', '1', '--check', 'syscall'],
  ['--evict', 'random', '--pcache', '256K', '--ways', '4', '--check', 'end', '--victim', '0'],
  ['--evict', 'lru', '--pcache', '128K', '--ways', '2', '--sweep', '--sweep-interval', '0', '--check', 'end'],
  ['--evict', 'lru', '--pcache', '64K', '--ways', '2', '--sweep', '--check', 'periodic'],
  ['--evict', 'fifo', '--pcache', '128K', '--ways', '4', '--pattern', 'pingpong', '--check', 'end'],
  ['--evict', 'random', '--pcache', '128K', '--ways', '2', '--pattern', 'random', '--check', 'syscall'],
  ['--evict', 'lru', '--pcache', '256K', '--ways', '2', '--jitter', '0.05', '--check', 'end'],
];

export async function soak(o: SoakOptions): Promise<number> {
  let clean = 0;
  let workloadMs = 0;
  let pages = 0;
  let moves = 0;
  let violations = 0;
  const bad: string[] = [];
  const t0 = performance.now();
  await withSignalsForwarded(async () => {
    for (let i = 0; i < o.runs && !interruptedBy(); i++) {
      const seed = o.seed + i;
      const cfg = at(MATRIX, i % MATRIX.length);
      const args = [
        'run',
        'mremap-stress',
        '--cpus',
        '2',
        '--iterations',
        String(o.iterations),
        ...cfg,
        '--seed',
        String(seed),
        '--json',
        '--log-level',
        'error',
      ];
      const r = await runChild(args);
      const j: RunSummary | undefined = r.summary;
      const fails = j ? failuresOf(j) : [];
      workloadMs += j?.wallMs ?? 0;
      pages += j?.verification?.pagesVerified ?? 0;
      moves += j?.verification?.moves ?? 0;
      violations += j?.violationCount ?? j?.violations?.length ?? 0;
      const ok = j !== undefined && j.exitCode === 0 && fails.length === 0;
      if (ok) clean++;
      else
        bad.push(
          `seed ${seed} (${cfg.join(' ')}): ${j ? fails.map(formatSignature).join(', ') || `exit ${j.exitCode}` : `no summary: ${r.stderrTail}`}`,
        );
      const line = {
        run: i + 1,
        seed,
        config: cfg.join(' '),
        ok,
        exitCode: r.code,
        failures: fails.map(formatSignature),
        wallMs: j?.wallMs,
      };
      process.stdout.write(
        o.json
          ? `${JSON.stringify(line)}\n`
          : `soak ${i + 1}/${o.runs} seed ${seed} ${cfg.join(' ')}: ${ok ? 'clean' : `FAILED ${line.failures.join(', ')}`}\n`,
      );
    }
  });
  const runs = clean + bad.length;
  const summary = {
    runs,
    clean,
    violations,
    pagesVerified: pages,
    moves,
    workloadSeconds: Math.round(workloadMs / 100) / 10,
    elapsedSeconds: Math.round((performance.now() - t0) / 100) / 10,
    failed: bad,
  };
  if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `\nsplitkern soak --runs ${o.runs} --seed ${o.seed} --iterations ${o.iterations}: ${runs} mremap-stress runs on the fixed kernel (2 CPUs, seeds ${o.seed}-${o.seed + runs - 1}, ${Math.min(runs, MATRIX.length)} configurations), ${summary.workloadSeconds} s of workload time: ${violations} violations, ${pages} page checks, ${moves} moves, ${clean} of ${runs} runs clean and verified\n`,
    );
    for (const b of bad) process.stdout.write(`  ${b}\n`);
  }
  const sig = interruptedBy();
  if (sig) return sig === 'SIGINT' ? 130 : 143;
  return bad.length === 0 ? 0 : 1;
}
