// The race lab: every bug flag's reproducer must catch its bug (bounded in attempts, each a new seed),
// and the same command on the fixed kernel must run clean.
import { describe, expect, it } from 'vitest';
import { BUGS, KERNELS } from '../src/check/bugzoo.ts';
import { runCli, runJson } from './helpers/cli.ts';

describe('bug zoo', () => {
  it('`splitkern bugs` lists every flag with its story, path, detector and reproducer, and every preset', async () => {
    const r = await runCli(['bugs']);
    expect(r.code).toBe(0);
    for (const b of BUGS) {
      expect(r.stdout).toContain(`${b.name}\n  story:`);
      expect(r.stdout).toContain(`--bug ${b.name}`);
    }
    for (const k of KERNELS) expect(r.stdout).toContain(k.name);
    const j = JSON.parse((await runCli(['bugs', '--json'])).stdout) as { bugs: unknown[]; kernels: unknown[] };
    expect(j.bugs).toHaveLength(BUGS.length);
  });

  it('rejects an unknown flag or preset with a suggestion, exit 2', async () => {
    const a = await runCli(['run', 'mremap-stress', '--bug', 'free-before-flsh']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--bug free-before-flsh is not a known bug; did you mean free-before-flush\?/);
    const b = await runCli(['run', 'mremap-stress', '--kernel', 'legoos-hed']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/did you mean legoos-head\?/);
    const c = await runCli(['repro', 'nope']);
    expect(c.code).toBe(2);
  });
});

describe('each flag is reproduced by its reproducer', () => {
  for (const b of BUGS) {
    it(`${b.name}`, async () => {
      // Bounded in attempts, not time: each attempt is a fresh seed.
      const r = await runCli(['repro', b.name, '--attempts', '4', '--first', '--json'], {}, 600_000);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { reproduced?: number; how?: string });
      const summary = lines[lines.length - 1]!;
      expect(summary.reproduced, r.stdout).toBeGreaterThan(0);
      expect(r.code).toBe(1);
    }, 900_000);
  }
});

describe('the fixed kernel survives every reproducer', () => {
  for (const b of BUGS) {
    // The reproducer's own extra flags (e.g. dest-overwrite needs unserialized) are dropped too.
    const args = [...b.repro];
    const i = args.indexOf('--bug');
    if (i >= 0) args.splice(i, 2);
    it(`${b.name}'s command without the bug: zero reports, verified`, async () => {
      const { j } = await runJson(['run', ...args, '--seed', '7']);
      expect(j.violations).toEqual([]);
      expect(j.verification.ok).toBe(true);
      expect(j.exitCode).toBe(0);
    });
  }
});

describe('kernel presets', () => {
  it('legoos-2018-02-01 prints the 2018-02 "mismatched PTE and rmap" block', async () => {
    const r = await runCli(['run', 'script', 'traces/mremap-paths.jsonl', '--kernel', 'legoos-2018-02-01', '--check', 'syscall', '--pcache', '256K', '--ways', '4']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\*\*\*\*    ERROR: mismatched PTE and rmap\n.*\*\*\*\*    rmap->owner_process: script uva: 0x[0-9a-f]+ ptep: ffff8800800[0-9a-f]+, rmap->page_table: ffff8800800[0-9a-f]+\n.*\*\*\*\*    pcache_pfn: 0x1[0-9a-f]+, pte_pfn: 0x[0-9a-f]+/);
  });

  it('legoos-head on the munmap-brk scenario reads old data after a brk shrink and regrow', async () => {
    const { j } = await runJson(['run', 'script', 'traces/munmap-brk.jsonl', '--kernel', 'legoos-head']);
    expect(j.exitCode).toBe(1);
    expect(j.verification.ok).toBe(false);
  });
});

describe('user-visible corruption in real programs', () => {
  /** Runs until the program shows the damage (bounded in seeds): a wrong result or a crash. */
  async function corrupted(args: string[]): Promise<{ summary: string; signal: number }> {
    for (let seed = 1; seed <= 4; seed++) {
      const { j } = await runJson([...args, '--seed', String(seed)]);
      if (!j.verification.ok || j.process.signal !== 0) return { summary: j.verification.summary, signal: j.process.signal };
    }
    throw new Error(`no corruption in 4 seeds: ${args.join(' ')}`);
  }

  it('word_count with 4 threads on a kernel that skips TLB shootdowns: a wrong count or a crash', async () => {
    const r = await corrupted(['run', 'word_count', '--size', '1M', '--cpus', '4', '--threads', '4', '--pcache', '128K', '--ways', '2', '--bug', 'tlb-shootdown-skip']);
    expect(r.signal !== 0 || /MISMATCH/.test(r.summary)).toBe(true);
  }, 900_000);

  it('dpkg-status on a kernel whose mremap leaves the line in its old set: the output differs, naming the record', async () => {
    const r = await corrupted(['run', 'dpkg-status', '--packages', '1000', '--pcache', '128K', '--ways', '2', '--bug', 'mremap-no-pcache-move']);
    if (r.signal === 0) expect(r.summary).toMatch(/MISMATCH at offset \d+: first difference at offset \d+, in record \d+ \(Package: /);
  }, 900_000);
});
