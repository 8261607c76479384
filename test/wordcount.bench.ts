// word_count on the default 10 MiB generated input (genZipfText(1, 10 MiB), as `splitkern run
// word_count` uses) on a real 1P-1M-1S machine with 1 and 2 CPUs (--threads = CPUs), next to the same
// algorithm in plain TypeScript over a Buffer (countWords from src/host/oracle.ts, then sortCounts: count
// descending, strcmp ascending, as the program's qsort).
//
// Every emulated run is checked against the plain count, so the bench cannot pass on a broken run. The
// time of a run is the host's wall time for the process (RunOutcome.wallMs: exec, open/fstat/mmap of the
// file on S, the threads, merge, qsort, report, exit), not the machine's boot. vitest's ops/s are runs/s;
// the table printed at the end gives MiB/s and the slowdown versus plain TypeScript.
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { compareWordCounts, countWords, sortCounts } from '../src/host/oracle.ts';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Machine } from '../src/host/machine.ts';
import { genZipfText } from '../src/user/gen.ts';

const BYTES = 10 * 1024 * 1024;
const MIB = BYTES / (1024 * 1024);
const PATH = '/splitkern/input/w.txt';
const CPUS = [1, 2] as const;
/** tinybench's setup hook says whether the calls that follow are warm-up: those are not recorded */
let phase: 'warmup' | 'run' = 'run';
const setup = (_t: unknown, mode: 'warmup' | 'run'): void => {
  phase = mode;
};
const machineOpts = { time: 0, iterations: 2, warmupTime: 0, warmupIterations: 0, setup };
const plainOpts = { time: 0, iterations: 3, warmupTime: 0, warmupIterations: 1, setup };

let input: Buffer;
let expected: Array<[string, number]>;
const machines = new Map<number, Machine>();
const ms = new Map<string, number[]>();

beforeAll(async () => {
  input = genZipfText(1, BYTES);
  expected = sortCounts(countWords(input));
  for (const cpus of CPUS) {
    const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus, logLevel: 'error' };
    const m = new Machine(cfg, { console() {}, log() {} }, { [PATH]: input });
    machines.set(cpus, m);
    await m.boot();
  }
}, 120_000);

afterAll(async () => {
  for (const m of machines.values()) await m.shutdown();
  const plain = ms.get('plain');
  if (!plain?.length) return;
  const best = (xs: number[]) => Math.min(...xs);
  const rate = (t: number) => MIB / (t / 1000);
  const lines = [
    '',
    `word_count on ${MIB} MiB of generated Zipf text (seed 1), ${expected.length} distinct words; best run (all runs)`,
  ];
  lines.push(
    `  ${'variant'.padEnd(44)} ${'ms'.padStart(7)} ${'MiB/s'.padStart(7)} ${'slowdown'.padStart(9)}   all runs (ms)`,
  );
  lines.push(
    `  ${'plain TypeScript countWords + sort (Buffer)'.padEnd(44)} ${best(plain).toFixed(0).padStart(7)} ${rate(best(plain)).toFixed(2).padStart(7)} ${'1.0x'.padStart(9)}   ${plain.map((t) => t.toFixed(0)).join(', ')}`,
  );
  for (const cpus of CPUS) {
    const xs = ms.get(`cpus${cpus}`) ?? [];
    if (!xs.length) continue;
    lines.push(
      `  ${`splitkern word_count, ${cpus} CPU${cpus > 1 ? 's' : ''}, --threads ${cpus}`.padEnd(44)} ${best(xs).toFixed(0).padStart(7)} ${rate(best(xs)).toFixed(2).padStart(7)} ${`${(best(xs) / best(plain)).toFixed(1)}x`.padStart(9)}   ${xs.map((t) => t.toFixed(0)).join(', ')}`,
    );
  }
  const one = ms.get('cpus1'),
    two = ms.get('cpus2');
  if (one?.length && two?.length) lines.push(`  2 CPUs vs 1 CPU: ${(best(one) / best(two)).toFixed(2)}x`);
  console.log(lines.join('\n'));
});

const record = (key: string, t: number): void => {
  if (phase !== 'run') return;
  const xs = ms.get(key) ?? [];
  xs.push(t);
  ms.set(key, xs);
};

describe(`word_count, ${MIB} MiB (1 op = one whole run)`, () => {
  bench(
    'plain TypeScript: countWords + sort over a Buffer',
    () => {
      const t0 = performance.now();
      const table = sortCounts(countWords(input));
      record('plain', performance.now() - t0);
      if (table.length !== expected.length) throw new Error('word_count bench: the plain count changed between runs');
    },
    plainOpts,
  );

  for (const cpus of CPUS) {
    bench(
      `splitkern word_count, ${cpus} CPU${cpus > 1 ? 's' : ''} (--threads ${cpus})`,
      async () => {
        const m = machines.get(cpus)!;
        const out = await m.run('word_count', [PATH, '--top', '10', '--threads', String(cpus)]);
        const rep = out.main.reports[0] as { kind?: string; words?: Array<[string, number]> } | undefined;
        if (out.main.exit !== 0 || rep?.kind !== 'word_count' || !rep.words) {
          throw new Error(
            `word_count bench: the run failed on ${cpus} CPU(s) (exit ${out.main.exit}, signal ${out.main.signal}${out.main.why ? `: ${out.main.why}` : ''})`,
          );
        }
        const cmp = compareWordCounts(expected, rep.words);
        if (!cmp.ok) throw new Error(`word_count bench: wrong result on ${cpus} CPU(s): ${cmp.firstDifference}`);
        record(`cpus${cpus}`, out.wallMs);
      },
      machineOpts,
    );
  }
});
