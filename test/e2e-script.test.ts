// End to end: boot the machine (worker threads, piscina CPUs, M, S) through the CLI and run the shipped
// scenarios with a pcache small enough to force evictions, victim hits and write-backs.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, runCli, runJson } from './helpers/cli.ts';

const small = ['--pcache', '256K', '--ways', '4', '--victim', '8'];
const traces = readdirSync(path.join(repoRoot, 'traces'))
  .filter((f) => f.endsWith('.jsonl'))
  .sort();
/** Shipped scenarios meant to end in a fatal signal (tested on their own below). */
const fatalTraces = ['segfault.jsonl'];

describe('shipped scenarios (traces/*.jsonl) on a small pcache', () => {
  for (const t of traces.filter((f) => !fatalTraces.includes(f))) {
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

describe('a touch of unmapped memory is a real SIGSEGV that kills the process', () => {
  // show_signal_msg as Linux prints it: the address in hex without 0x; error 4 = user read, 6 = user write
  // of a page that is not present. splitkern has no ip/sp for TypeScript user code: both print as 0.
  const segfaultLine = (err: 4 | 6): RegExp =>
    new RegExp(
      `^\\[ *\\d+\\.\\d{6}\\] script\\[\\d+\\]: segfault at 400000000000 ip 0000000000000000 sp 0000000000000000 error ${err}$`,
      'm',
    );

  it('traces/segfault.jsonl: the touch after munmap kills the process with SIGSEGV, exit 1, clean shutdown', async () => {
    const { r, j } = await runJson([
      'run',
      'script',
      'traces/segfault.jsonl',
      '--cpus',
      '2',
      ...small,
      '--check',
      'syscall',
    ]);
    expect(r.stderr).toMatch(segfaultLine(4));
    expect(r.stderr).not.toMatch(/emulator failure/);
    expect(j.process.signal).toBe(11);
    expect(j.process.faultAddr).toBe('0x400000000000');
    expect(j.verification.ok).toBe(false);
    expect(j.verification.summary).toBe('no result: the scenario did not finish');
    expect(j.violations).toEqual([]);
    expect(j.stats.faults.segfaults).toBe(1);
    // every step before the fatal one ran and printed its line; the faulting touch printed none
    const lines = j.output
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; op: string; ok: boolean });
    expect(lines.map((l) => l.op)).toEqual(['mmap', 'touch', 'touch', 'probe', 'munmap', 'probe']);
    expect(lines.every((l) => l.ok)).toBe(true);
    expect(j.ok).toBe(false);
    expect(j.exitCode).toBe(1);
    expect(r.code).toBe(1); // 1, not 3: the machine shut down cleanly
  });

  it('the human-readable summary names the signal and the fault', async () => {
    const r = await runCli(['run', 'script', 'traces/segfault.jsonl', '--topology', '1P-1M']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/process killed by signal 11 \(fault at 0x400000000000, SEGV_MAPERR\)/);
    expect(r.stdout).toMatch(/verification: FAILED: no result: the scenario did not finish/);
    expect(r.stderr).toMatch(segfaultLine(4));
  });

  it('thread 1 segfaults while thread 0 loops over its own pages: the whole process dies with SIGSEGV, promptly', async () => {
    // Thread 0's loop alone would take minutes (a million checks of 16 pages); thread 1 writes to an
    // address nothing maps. No barrier: thread 0 must be stopped by the kill, not by meeting thread 1.
    const dir = mkdtempSync(path.join(tmpdir(), 'splitkern-segv-'));
    try {
      const file = path.join(dir, 'segfault-2cpu.jsonl');
      writeFileSync(
        file,
        [
          '{"scenario": "segfault-2cpu", "threads": 2}',
          '{"thread": 0, "op": "mmap", "addr": "0x540000000000", "len": "0x10000", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}',
          '{"thread": 0, "op": "fill", "addr": "0x540000000000", "len": "0x10000", "region": "t0"}',
          '{"thread": 0, "op": "check", "addr": "0x540000000000", "len": "0x10000", "region": "t0", "repeat": 1000000}',
          '{"thread": 1, "op": "touch", "addr": "0x400000000000", "access": "write"}',
          '',
        ].join('\n'),
      );
      const { r, j } = await runJson(['run', 'script', file, '--cpus', '2', '--check', 'end']);
      expect(r.stderr).toMatch(segfaultLine(6));
      expect(r.stderr).not.toMatch(/emulator failure/);
      expect(r.code).toBe(1);
      expect(j.exitCode).toBe(1);
      expect(j.violations).toEqual([]);
      expect(j.verification.ok).toBe(false);
      const lines = j.output
        .trim()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { thread: number; op: string });
      expect(lines.filter((l) => l.thread === 1)).toEqual([]); // the faulting touch printed nothing
      expect(lines.filter((l) => l.op === 'check').length).toBeLessThan(1_000_000);
      // The process's fate is its fatal signal, SIGSEGV at thread 1's address (Linux: the group exits
      // with the signal that killed it, not with the SIGKILL the other threads were torn down by).
      expect(j.process).toMatchObject({ signal: 11, faultAddr: '0x400000000000' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('mremap fast and slow path', () => {
  it('moves by 1 GiB on the fast path and by 1 GiB + 4 KiB on the slow path, contents verified', async () => {
    // A pcache large enough that nothing is evicted: every page moves with its line.
    const { j } = await runJson([
      'run',
      'script',
      'traces/mremap-paths.jsonl',
      '--topology',
      '1P-1M',
      '--check',
      'end',
    ]);
    expect(j.ok).toBe(true);
    expect(j.stats.mremap.psetSame).toBe(64);
    expect(j.stats.mremap.psetDiff).toBe(64);
    expect(j.stats.pcache.nr_mremap_pset_same).toBe(64);
    expect(j.stats.pcache.nr_mremap_pset_diff).toBe(64);
    expect(j.stats.fabric.P2M_MREMAP!.count).toBe(3);
  });

  it('prints SYSC_mremap move lines in the LegoOS format at --log-level debug', async () => {
    const r = await runCli([
      'run',
      'script',
      'traces/legoos-mremap.jsonl',
      '--topology',
      '1P-1M',
      '--log-level',
      'debug',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^\[ *\d+\.\d{6}\] SYSC_mremap\(cpu\d+\): move: \[0x7fffe5788000 - 0x7fffe5806000\] -> \[0x7fffe531b000 - 0x7fffe5399000\]$/m,
    );
    expect(r.stderr).toMatch(
      /SYSC_mremap\(cpu\d+\): move: \[0x7fffe5941000 - 0x7fffe5980000\] -> \[0x7fffe57c7000 - 0x7fffe5806000\]/,
    );
  });
});

describe('eviction policies and the sweep', () => {
  for (const evict of ['lru', 'fifo', 'random']) {
    it(`--evict ${evict} with --sweep keeps data intact under pressure`, async () => {
      const { j } = await runJson([
        'run',
        'script',
        'traces/mremap-stress-2cpu.jsonl',
        '--pcache',
        '128K',
        '--ways',
        '2',
        '--evict',
        evict,
        '--sweep',
        '--check',
        'end',
      ]);
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

  it('a fill past M\'s DRAM: the process is OOM-killed and the message names the limit (not "unmapped")', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'splitkern-oom-'));
    const file = path.join(dir, 'oom.jsonl');
    writeFileSync(
      file,
      '{"op": "mmap", "len": "0x2000000", "as": "$a"}\n{"op": "fill", "addr": "$a", "len": "0x2000000"}\n',
    );
    const { j, r } = await runJson(['run', 'script', file, '--memory', '16M', '--cpus', '1']);
    rmSync(dir, { recursive: true });
    expect(r.code).toBe(1);
    expect(j.process.signal).toBe(9);
    expect(r.stderr).toMatch(
      /Out of memory: Killed process 1 \(script\): the memory component has no DRAM left for 0x[0-9a-f]+ \(--memory 16 MiB, all in use\)/,
    );
    expect(r.stderr).not.toMatch(/is unmapped/);
  });

  it('a flood of violation reports: exit 1, the exact count, every record either read or counted as dropped', async () => {
    // one CPU task (a 1-thread scenario), 3000 reports of 3 KiB texts against a 1024-slot ring that
    // the host drains while they arrive (test/report.test.ts fills it with no drain at all)
    const { j, r } = await runJson(['run', 'script', 'traces/mprotect.jsonl', '--cpus', '1'], {
      SPLITKERN_INJECT: 'report-flood:3000',
    });
    expect(r.code).toBe(1);
    expect(j.ok).toBe(false);
    expect(j.violationCount).toBe(3000);
    expect(j.violations.length + j.violationsDropped).toBe(3000);
    // each record parsed: the long ones were cut to fit a slot, keeping kind and facts
    expect(j.violations.every((v) => v.kind === 'injected' && v.truncated === true)).toBe(true);
    expect(new Set(j.violations.map((v) => v.details.facts![0])).size).toBe(j.violations.length);
    expect(r.stdout).not.toMatch(/violations \(--check none\): 0 /);
  });

  for (const [inject, what] of [
    ['cpu-crash', /task of tid \d+ failed/],
    ['memory-crash', /memory/],
    ['cpu-hang', /soft lockup/],
  ] as const) {
    it(`an emulator failure (${inject}) exits 3 promptly, leaving no worker behind`, async () => {
      const r = await runCli(['run', 'script', 'traces/mprotect.jsonl', '--watchdog', '2'], {
        SPLITKERN_INJECT: inject,
      });
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(what);
      expect(r.stderr).toMatch(/^splitkern: emulator failure: /m);
      // The process exited by itself: runCli rejects (and kills it) only if it outlives its timeout,
      // so a worker left alive would fail this test without a wall-clock assertion here.
    });
  }
});
