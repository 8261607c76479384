// Several processes at once (`run --spawn ... --spawn ...`): each its own mm, sharing the CPUs and
// the pcache, each verified by its own oracle; a failing process does not hide the others' results;
// bad --spawn input is one line and exit 2.
import { describe, expect, it } from 'vitest';
import { runCli, runJson } from './helpers/cli.ts';

const small = ['--cpus', '2', '--pcache', '128K', '--ways', '2'];
interface ProcJson {
  workload: string;
  process: { pid: number; exit: number; signal: number };
  verification: { ok: boolean; summary: string };
  output: string;
}
const tlbOf = (j: { stats: { tlb: { ipisSent: number } } }) => j.stats.tlb.ipisSent;

describe('run --spawn: independent processes on one machine', () => {
  it("word_count and mremap-stress share a small pcache: both verified, no violation, and the other process's lines are shot down across CPUs", async () => {
    const { r, j } = await runJson([
      'run',
      ...small,
      '--check',
      'syscall',
      '--spawn',
      'word_count --size 512K --threads 1',
      '--spawn',
      'mremap-stress --threads 1 --iterations 200',
    ]);
    const procs = (j as unknown as { processes: ProcJson[] }).processes;
    expect(procs.map((p) => p.workload)).toEqual(['word_count', 'mremap-stress']);
    expect(new Set(procs.map((p) => p.process.pid)).size).toBe(2);
    expect(procs[0]?.verification.summary).toMatch(/^matches an independent count/);
    expect(procs[1]?.verification.summary).toMatch(/^every page verified/);
    expect(procs[0]?.output).toMatch(/^Wordcount: Running\.\.\./);
    expect(procs[1]?.output).not.toMatch(/Wordcount/);
    expect(j.violations).toEqual([]);
    expect(j.ok).toBe(true);
    expect(r.code).toBe(0);
    // Alone, a one-thread mremap-stress never sends an IPI (its mm is only on its own CPU): the IPIs
    // here are evictions by one process's CPU of lines the other process's CPU may hold in its TLB.
    const alone = await runJson(['run', 'mremap-stress', '--threads', '1', '--iterations', '200', ...small]);
    expect(tlbOf(alone.j)).toBe(0);
    expect(tlbOf(j)).toBeGreaterThan(0);
  });

  it('a process that dies does not hide the other one: exit 1, each named with its pid', async () => {
    const r = await runCli([
      'run',
      '--cpus',
      '2',
      '--topology',
      '1P-1M-1S',
      '--spawn',
      'script traces/segfault.jsonl',
      '--spawn',
      'word_count --size 256K --threads 1',
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /^\[pid (\d+)\] script traces\/segfault\.jsonl .*: process killed by signal 11 \(fault at 0x400000000000, SEGV_MAPERR\)/m,
    );
    expect(r.stdout).toMatch(/^\[pid (\d+)\] verification: OK: matches an independent count/m);
    // each process's output lines carry its pid
    expect(r.stdout).toMatch(/^\[pid \d+\] Wordcount: Running\.\.\.$/m);
  });

  it('bad --spawn input is one line, exit 2, nothing booted', async () => {
    for (const [args, msg] of [
      [
        ['word_count', '--spawn', 'word_count'],
        /^splitkern: give a workload or --spawn, not both: run "word_count" as one more --spawn$/,
      ],
      [[], /^splitkern: run needs a workload \(one of .*\) or --spawn "WORKLOAD \[args\] \[options\]"$/],
      [
        ['--spawn', 'word_count --cpus 4'],
        /^splitkern: --spawn "word_count --cpus 4": --cpus is a machine option: give it to run, outside --spawn$/,
      ],
      [['--spawn', 'word_count | cat'], /^splitkern: --spawn "word_count \| cat": only words and quotes are allowed/],
      [['--spawn', ''], /^splitkern: --spawn "": give a workload and its arguments/],
      [['--spawn', 'wordcount'], /^splitkern: --spawn "wordcount": unknown workload "wordcount"/],
      [
        ['--spawn', 'word_count --top x'],
        /^splitkern: --spawn "word_count --top x": --top x must be an integer from 1 to 1000000$/,
      ],
      [['--spawn', 'word_count --bogus'], /^splitkern: --spawn "word_count --bogus": unknown option '--bogus'$/],
      [
        ['--cpus', '2', '--spawn', 'word_count --threads 40', '--spawn', 'pthread-stress --threads 30'],
        /^splitkern: the spawned processes need 70 threads, more than the 64 live threads splitkern runs at once/,
      ],
    ] as const) {
      const r = await runCli(['run', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr.trim(), args.join(' ')).toMatch(msg);
    }
  });
});
