// End to end: boot the machine (worker threads, piscina CPUs, M, S) through the CLI and run the shipped
// scenarios with a pcache small enough to force evictions, victim hits and write-backs.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, runCli, runJson } from './helpers/cli.ts';

const small = ['--pcache', '256K', '--ways', '4', '--victim', '8'];
const traces = readdirSync(path.join(repoRoot, 'traces')).filter((f) => f.endsWith('.jsonl')).sort();

describe('shipped scenarios (traces/*.jsonl) on a small pcache', () => {
  for (const t of traces) {
    it(`${t} passes with --check syscall and reports no violation`, async () => {
      const cpus = /2cpu/.test(t) ? '3' : '2';
      const { r, j } = await runJson(['run', 'script', `traces/${t}`, '--cpus', cpus, ...small, '--check', 'syscall']);
      expect(j.verification.summary).toMatch(/all \d+ steps as expected/);
      expect(j.violations).toEqual([]);
      expect(j.ok).toBe(true);
      expect(r.code).toBe(0);
    });
  }
});

describe('mremap fast and slow path', () => {
  it('moves by 1 GiB on the fast path and by 1 GiB + 4 KiB on the slow path, contents verified', async () => {
    // A pcache large enough that nothing is evicted: every page moves with its line.
    const { j } = await runJson(['run', 'script', 'traces/mremap-paths.jsonl', '--topology', '1P-1M', '--check', 'end']);
    expect(j.ok).toBe(true);
    expect(j.stats.mremap.psetSame).toBe(64);
    expect(j.stats.mremap.psetDiff).toBe(64);
    expect(j.stats.pcache.nr_mremap_pset_same).toBe(64);
    expect(j.stats.pcache.nr_mremap_pset_diff).toBe(64);
    expect(j.stats.fabric.P2M_MREMAP!.count).toBe(3);
  });

  it('prints SYSC_mremap move lines in the LegoOS format at --log-level debug', async () => {
    const r = await runCli(['run', 'script', 'traces/legoos-mremap.jsonl', '--topology', '1P-1M', '--log-level', 'debug']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^\[ *\d+\.\d{6}\] SYSC_mremap\(cpu\d+\): move: \[0x7fffe5788000 - 0x7fffe5806000\] -> \[0x7fffe531b000 - 0x7fffe5399000\]$/m);
    expect(r.stderr).toMatch(/SYSC_mremap\(cpu\d+\): move: \[0x7fffe5941000 - 0x7fffe5980000\] -> \[0x7fffe57c7000 - 0x7fffe5806000\]/);
  });
});

describe('eviction policies and the sweep', () => {
  for (const evict of ['lru', 'fifo', 'random']) {
    it(`--evict ${evict} with --sweep keeps data intact under pressure`, async () => {
      const { j } = await runJson(['run', 'script', 'traces/mremap-stress-2cpu.jsonl', '--pcache', '128K', '--ways', '2', '--evict', evict, '--sweep', '--check', 'end']);
      expect(j.ok).toBe(true);
      expect(j.violations).toEqual([]);
      expect(j.stats.pcache.nr_pcache_eviction_succeed).toBeGreaterThan(0);
      expect(j.stats.pcache.nr_clflush).toBeGreaterThan(0);
      expect(j.stats.tlb.shootdowns).toBeGreaterThan(0);
    });
  }

  it('without a victim cache nothing is filled from it', async () => {
    const { j } = await runJson(['run', 'script', 'traces/legoos-mremap.jsonl', ...small, '--victim', '0']);
    expect(j.ok).toBe(true);
    expect(j.stats.pcache.nr_pcache_fill_from_victim ?? 0).toBe(0);
    expect(j.stats.pcache.nr_victim_hit ?? 0).toBe(0);
  });

  it('with a victim cache some misses are filled from it', async () => {
    const { j } = await runJson(['run', 'script', 'traces/legoos-mremap.jsonl', ...small, '--victim', '16']);
    expect(j.ok).toBe(true);
    expect(j.stats.pcache.nr_victim_hit).toBeGreaterThan(0);
  });
});

describe('failures are reported with the right exit code', () => {
  it('a scenario whose expectation fails exits 1 and says which step', async () => {
    const { r, j } = await runJson(['run', 'script', 'test/fixtures/wrong-expect.jsonl']);
    expect(r.code).toBe(1);
    expect(j.ok).toBe(false);
    expect(j.verification.summary).toMatch(/1 of \d+ steps failed/);
  });

  it('a bad scenario file exits 2 with one line naming file and line', async () => {
    const r = await runCli(['run', 'script', 'test/fixtures/bad-scenario.jsonl']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/bad-scenario\.jsonl:3: /);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  for (const [inject, what] of [['cpu-crash', /CPU task of tid \d+ failed/], ['memory-crash', /memory/], ['cpu-hang', /soft lockup/]] as const) {
    it(`an emulator failure (${inject}) exits 3 promptly, leaving no worker behind`, async () => {
      const r = await runCli(['run', 'script', 'traces/mprotect.jsonl', '--watchdog', '2'], { SPLITKERN_INJECT: inject });
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(what);
      expect(r.stderr).toMatch(/^splitkern: emulator failure: /m);
      // The process exited by itself (runCli kills only on its own timeout), so no worker kept it alive.
      expect(r.ms).toBeLessThan(60_000);
    });
  }
});
