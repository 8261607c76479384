// End to end: the workloads through the CLI, verified against oracles computed outside the emulator,
// and the CLI's handling of bad input.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, runJson } from './helpers/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'splitkern-e2e-'));

describe('word_count', () => {
  it('counts a generated text with 2 CPUs and 2 threads on a small pcache, verified, with evictions and write-backs', async () => {
    const { r, j } = await runJson([
      'run',
      'word_count',
      '--size',
      '256K',
      '--pcache',
      '256K',
      '--ways',
      '4',
      '--check',
      'syscall',
    ]);
    expect(j.verification.ok).toBe(true);
    expect(j.verification.summary).toMatch(/matches an independent count/);
    expect(j.violations).toEqual([]);
    expect(r.code).toBe(0);
    expect(j.output).toMatch(
      /^Wordcount: Running\.\.\.\nWordcount: Results \(TOP 10 of \d+\):\n( {0,14}[A-Z']+ - \d+\n){10}$/,
    );
    expect(j.stats.pcache.nr_pcache_eviction_succeed).toBeGreaterThan(0);
    expect(j.stats.pcache.nr_clflush).toBeGreaterThan(0);
    expect(j.stats.fabric.M2S_READ!.count).toBeGreaterThan(0);
    expect(j.stats.syscalls.clone).toBe(1);
  });

  it('counts a file the user gives, printed like Phoenix', async () => {
    const file = path.join(tmp, 'prose.txt');
    writeFileSync(file, "It was the best of times, it was the worst of times; it wasn't.\nIT WAS.\n");
    const r = await runCli(['run', 'word_count', file, '--top', '3', '--cpus', '1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'Wordcount: Results (TOP 3 of 8):\n             IT - 4\n            WAS - 3\n             OF - 2\n',
    );
    expect(r.stdout).toMatch(/verification: OK: matches an independent count \(16 words, 8 distinct\)/);
    expect(r.stderr).toMatch(/CPU0: online/);
  });
});

describe('dpkg-status', () => {
  it('writes the status file back byte for byte through S, with realloc-grown buffers (mremap)', async () => {
    const out = path.join(tmp, 'status.out');
    const { r, j } = await runJson([
      'run',
      'dpkg-status',
      '--packages',
      '300',
      '--pcache',
      '256K',
      '--ways',
      '4',
      '--sweep',
      '--check',
      'end',
      '--out',
      out,
    ]);
    expect(j.verification.summary).toMatch(/output equals the input byte for byte/);
    expect(r.code).toBe(0);
    expect(j.stats.syscalls.mremap).toBeGreaterThan(0);
    expect(readFileSync(out).length).toBe(j.verification.bytes);
  });
});

describe('a long multi-threaded run of the fixed kernel', () => {
  it('reports zero violations under eviction pressure, the sweep and concurrent mremap', async () => {
    const { j } = await runJson([
      'run',
      'word_count',
      '--size',
      '1M',
      '--pcache',
      '128K',
      '--ways',
      '2',
      '--sweep',
      '--evict',
      'random',
      '--check',
      'syscall',
      '--seed',
      '7',
    ]);
    expect(j.violations).toEqual([]);
    expect(j.verification.ok).toBe(true);
    expect(j.stats.tlb.shootdowns).toBeGreaterThan(0);
    expect(j.stats.pcache.nr_sweep_run).toBeGreaterThan(0);
  });
});

describe('bad input exits 2 with one line and no stack trace', () => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      'unknown workload',
      ['run', 'wordcount'],
      /unknown workload "wordcount" \(known: word_count, dpkg-status, script, mremap-stress, pthread-stress, fork-stress\)/,
    ],
    ['zero CPUs', ['run', 'word_count', '--cpus', '0'], /--cpus 0 must be at least 1/],
    ['a pcache that is not whole lines', ['run', 'word_count', '--pcache', '3K'], /--pcache 3K must be at least/],
    ['a size that is not a size', ['run', 'word_count', '--memory', 'lots'], /--memory: "lots" is not a size/],
    ['non power-of-two ways', ['run', 'word_count', '--ways', '3'], /--ways 3 must be a power of two/],
    ['an unknown policy', ['run', 'word_count', '--evict', 'lfu'], /--evict.*lfu/],
    [
      'a missing input file',
      ['run', 'word_count', '/nonexistent/file.txt'],
      /word_count: input \/nonexistent\/file.txt: no such file/,
    ],
    [
      'more threads than threads-max',
      ['run', 'word_count', '--threads', '99'],
      /--threads 99 is more than the 64 live threads/,
    ],
    ['a file workload without S', ['run', 'word_count', '--topology', '1P-1M'], /use --topology 1P-1M-1S/],
    ['an unknown topology', ['run', 'word_count', '--topology', '2P-1M'], /--topology 2P-1M must be 1P-1M-1S or 1P-1M/],
    ['a missing scenario', ['run', 'script'], /script needs exactly one scenario FILE/],
  ];
  for (const [what, args, msg] of cases) {
    it(what, async () => {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    });
  }
});

describe('long runs show a sign of life', () => {
  it('a heartbeat line on stderr every --heartbeat seconds, off with 0 (no TTY here, so no progress bar)', async () => {
    const args = ['run', 'mremap-stress', '--seconds', '3', '--iterations', '1000000'];
    const r = await runCli([...args, '--heartbeat', '1']);
    expect(r.code).toBe(0);
    const beats = r.stderr
      .split('\n')
      .filter((l) =>
        /^splitkern: \d+ s: \d+\/\d+ iterations, \d+ faults, \d+ pcache misses, \d+ shootdowns, 0 violations$/.test(l),
      );
    expect(beats.length).toBeGreaterThanOrEqual(2);
    const quiet = await runCli([...args, '--heartbeat', '0']);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toMatch(/^splitkern: \d+ s: /m);
  }, 120_000);
});
