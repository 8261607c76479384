// The race lab: every bug flag's reproducer must catch its bug (bounded in attempts, each a new seed),
// and the same command on the fixed kernel must run clean.
import { describe, expect, it } from 'vitest';
import { BUGS, KERNELS } from '../src/racelab/bugzoo.ts';
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

interface ReproLine {
  bug: string;
  control?: boolean;
  verdict?: string;
  brokenBranch?: number;
  failure?: { kind: string; facts: string[] };
  failures?: string[];
  reproduced?: number;
  controls?: number;
  controlSignature?: number;
}

describe('each flag is reproduced with its signature, and its control never shows it', () => {
  for (const b of BUGS) {
    it(`${b.name}`, async () => {
      // Bounded in attempts, not time: each attempt is a fresh seed; then 3 control seeds.
      const r = await runCli(['repro', b.name, '--attempts', '4', '--first', '--controls', '3', '--json'], {}, 900_000);
      const lines = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as ReproLine);
      const runs = lines.filter((l) => l.verdict !== undefined && !l.control);
      const controls = lines.filter((l) => l.verdict !== undefined && l.control);
      const summary = lines[lines.length - 1]!;
      // The last attempt (--first) is the reproduction: the entry's signature, and the broken branch ran.
      const hit = runs[runs.length - 1]!;
      expect(hit.verdict, r.stdout).toBe('reproduced');
      expect(hit.failure!.kind).toBe(b.signature.kind);
      for (const f of b.signature.facts) {
        const [key, alts] = f.split('=') as [string, string];
        expect(
          hit.failure!.facts.some((g) => alts.split('|').some((v) => g === `${key}=${v}`)),
          `${f} in ${hit.failure!.facts.join(' ')}`,
        ).toBe(true);
      }
      expect(hit.brokenBranch).toBeGreaterThan(0);
      // Controls: never the signature; with no companion flags the control is the fixed kernel, so clean.
      expect(controls).toHaveLength(3);
      for (const c of controls) {
        expect(c.verdict, JSON.stringify(c)).not.toBe('reproduced');
        if (!b.companions) expect(c.verdict, JSON.stringify(c)).toBe('clean');
      }
      expect(summary.controlSignature).toBe(0);
      expect(r.code).toBe(0);
    }, 900_000);
  }
});

describe('the fixed kernel survives every reproducer', () => {
  // Controls cover the entries without companion flags; these run the reproducer with no flag at all.
  for (const b of BUGS.filter((e) => e.companions)) {
    it(`${b.name}'s command with no bug flag: zero reports, verified`, async () => {
      const { j } = await runJson(['run', ...b.repro, '--seed', '7']);
      expect(j.violations).toEqual([]);
      expect(j.verification.ok).toBe(true);
      expect(j.exitCode).toBe(0);
    });
  }
});

describe('dated kernels', () => {
  it("legoos-2018-02-03 on the LegoOS log's own scenario: the 2018-02 mismatch block from kevict_sweepd inside the move", async () => {
    const {
      j,
      r: { stderr },
    } = await runJson([
      'run',
      'script',
      'traces/legoos-mremap-loop.jsonl',
      '--cpus',
      '2',
      '--kernel',
      'legoos-2018-02-03',
      '--sweep',
      '--sweep-interval',
      '0',
      '--seed',
      '1',
    ]);
    expect(j.exitCode).toBe(1);
    // Every move of that log crosses sets, and the 02-02..06 form moves them all PTE-first.
    expect(j.stats.mremap.psetDiff).toBeGreaterThan(0);
    expect(j.stats.bugs.nr_bug_mremap_pte_before_rmap).toBe(j.stats.mremap.pagesMoved);
    expect(stderr).toMatch(/\*\*\*\* {4}ERROR: mismatched PTE and rmap\n/);
    expect(stderr).toMatch(/current: 0:kevict_sweepd caller: pcache_referenced_trylock_one/);
  });
});

describe('kernel presets', () => {
  it('legoos-2018-02-01 prints the 2018-02 "mismatched PTE and rmap" block', async () => {
    const r = await runCli([
      'run',
      'script',
      'traces/mremap-paths.jsonl',
      '--kernel',
      'legoos-2018-02-01',
      '--check',
      'syscall',
      '--pcache',
      '256K',
      '--ways',
      '4',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /\*\*\*\* {4}ERROR: mismatched PTE and rmap\n.*\*\*\*\* {4}rmap->owner_process: script uva: 0x[0-9a-f]+ ptep: ffff8800800[0-9a-f]+, rmap->page_table: ffff8800800[0-9a-f]+\n.*\*\*\*\* {4}pcache_pfn: 0x1[0-9a-f]+, pte_pfn: 0x[0-9a-f]+/,
    );
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
      if (!j.verification.ok || j.process.signal !== 0)
        return { summary: j.verification.summary, signal: j.process.signal };
    }
    throw new Error(`no corruption in 4 seeds: ${args.join(' ')}`);
  }

  it('word_count with 4 threads on a kernel that skips TLB shootdowns: a wrong count or a crash', async () => {
    const r = await corrupted([
      'run',
      'word_count',
      '--size',
      '1M',
      '--cpus',
      '4',
      '--threads',
      '4',
      '--pcache',
      '128K',
      '--ways',
      '2',
      '--bug',
      'tlb-shootdown-skip',
    ]);
    expect(r.signal !== 0 || /MISMATCH/.test(r.summary)).toBe(true);
  }, 900_000);

  it('dpkg-status on a kernel whose mremap leaves the line in its old set: the output differs, naming the record', async () => {
    const r = await corrupted([
      'run',
      'dpkg-status',
      '--packages',
      '1000',
      '--pcache',
      '128K',
      '--ways',
      '2',
      '--bug',
      'mremap-no-pcache-move',
    ]);
    // Either the corrupted database is written out (the sparc64 picture) or the program dies on a pointer it
    // read from it.
    expect(
      r.signal === 11 ||
        /MISMATCH at offset \d+: first difference at offset \d+, in record \d+ \(Package: /.test(r.summary),
      `${r.signal} ${r.summary}`,
    ).toBe(true);
  }, 900_000);
});
