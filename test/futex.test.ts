// Futexes end to end: the FUTEX_WAIT/FUTEX_WAKE syscall under libc's pthread mutex, condition variables
// and join (pthread-stress, checked against closed forms computed here), the futex accounting
// (every queued wait ends exactly once: woken by a FUTEX_WAKE or at its own timeout), and the hang
// check (a process whose every live thread sleeps is killed and named, with no false kill under load).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, runJson } from './helpers/cli.ts';

const hangLine =
  /^\[ *\d+\.\d{6}\] hang: pid \d+ \(([\w-]+)\): all (\d+) live threads? sleep and none is left to wake another \((.*)\): killing it$/m;

describe('pthread mutex, condition variables and join on futexes', () => {
  it('2 threads on 2 CPUs: no increment or item lost, every queued wait woken exactly once, no violation', async () => {
    const { r, j } = await runJson([
      'run',
      'pthread-stress',
      '--cpus',
      '2',
      '--iterations',
      '20000',
      '--items',
      '20000',
      '--capacity',
      '2',
      '--check',
      'syscall',
    ]);
    expect(j.verification.ok).toBe(true);
    expect(j.verification.counter).toBe(40000);
    expect(j.verification.consumed).toBe(20000);
    expect(j.verification.sum).toBe((20000 * 20001) / 2);
    expect(j.violations).toEqual([]);
    expect(r.code).toBe(0);
    // a ring of 2 and a contended mutex: the threads did sleep, and were all woken (no timeouts asked)
    expect(j.stats.futex.waits).toBeGreaterThan(100);
    expect(j.stats.futex.timedOut).toBe(0);
    expect(j.stats.futex.woken).toBe(j.stats.futex.waits);
    // join went through CLONE_CHILD_CLEARTID: the join syscall found the thread already gone
    expect(j.stats.syscalls.join).toBe(1);
  });

  it("with timed condition waits every queued wait ends once, and the program counts the kernel's timeouts", async () => {
    const { r, j } = await runJson([
      'run',
      'pthread-stress',
      '--cpus',
      '2',
      '--iterations',
      '2000',
      '--items',
      '5000',
      '--capacity',
      '1',
      '--timed-ms',
      '1',
    ]);
    expect(j.verification.ok).toBe(true);
    expect(r.code).toBe(0);
    const f = j.stats.futex;
    expect(f.waits).toBe(f.woken + f.timedOut);
    // only the condition waits have a timeout: the ETIMEDOUTs libc saw are the kernel's timeouts
    expect(j.verification.timeouts).toBe(f.timedOut);
  });

  it('one thread: the counter alone, no consumer phase', async () => {
    const { r, j } = await runJson(['run', 'pthread-stress', '--cpus', '1', '--iterations', '3000']);
    expect(j.verification.summary).toBe('counter 3000 = 1 thread × 3000');
    expect(r.code).toBe(0);
  });

  it('bad options are one line and exit 2', async () => {
    for (const [args, msg] of [
      [['--capacity', '0'], /^splitkern: pthread-stress: --capacity 0 must be an integer from 1 to 64$/m],
      [['--timed-ms', 'x'], /^splitkern: pthread-stress: --timed-ms x must be an integer from 1 to 60000$/m],
      [['extra'], /^splitkern: pthread-stress takes options, not arguments: extra$/m],
    ] as const) {
      const r = await runCli(['run', 'pthread-stress', '--cpus', '2', ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('the hang check: a process whose every live thread sleeps is killed, and named', () => {
  it('--relock: both threads sleep on the mutex one of them holds; killed as hung, exit 1, not a soft lockup', async () => {
    const r = await runCli(['run', 'pthread-stress', '--cpus', '2', '--relock', '--watchdog', '60']);
    expect(r.code).toBe(1);
    const m = hangLine.exec(r.stderr);
    expect(m?.[1]).toBe('pthread-stress');
    expect(m?.[2]).toBe('2');
    expect(m?.[3]).toMatch(/^tid \d+ in FUTEX_WAIT on 0x[0-9a-f]+, tid \d+ in FUTEX_WAIT on 0x[0-9a-f]+$/);
    expect(r.stdout).toMatch(
      /process killed by signal 9 \(hung: every live thread sleeps and none is left to wake another\)/,
    );
    expect(r.stderr).not.toMatch(/soft lockup/);
  });

  it('a thread asleep on a futex nobody wakes, and main joining it: both named, exit 1', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'splitkern-hang-'));
    try {
      const f = path.join(dir, 'hang.jsonl');
      writeFileSync(
        f,
        [
          '{"scenario": "join-hang", "threads": 2}',
          '{"thread": 0, "op": "mmap", "len": "0x1000", "as": "$a"}',
          '{"thread": 0, "op": "barrier"}',
          '{"thread": 1, "op": "barrier"}',
          '{"thread": 1, "op": "futex_wait", "addr": "$a", "val": 0}',
        ].join('\n'),
      );
      const r = await runCli(['run', 'script', f, '--cpus', '2']);
      expect(r.code).toBe(1);
      const m = hangLine.exec(r.stderr);
      expect(m?.[2]).toBe('2');
      expect(m?.[3]).toMatch(/^tid (\d+) in join of tid (\d+), tid \2 in FUTEX_WAIT on 0x[0-9a-f]+$/);
      expect(r.stdout).toMatch(/verification: FAILED: no result: the scenario did not finish/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no false kill: word_count with 2 threads joins through the futex path and exits 0 with the hang check on', async () => {
    const { r, j } = await runJson(['run', 'word_count', '--size', '1M', '--cpus', '2']);
    expect(j.verification.ok).toBe(true);
    expect(r.stderr).not.toMatch(/hang: pid/);
    expect(r.code).toBe(0);
  });
});
