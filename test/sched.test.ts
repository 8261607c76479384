// Tasks are not CPUs (src/processor/sched.ts): more threads than CPUs, each verified by its workload's
// own oracle; preemption at the timer tick (a user-space spin barrier that only ends if spinners are
// switched out); no futex wake-up lost with many sleepers on few CPUs; the per-CPU scheduler figures.
import { describe, expect, it } from 'vitest';
import { runCli, runJson } from './helpers/cli.ts';

interface CpuRow {
  cpu: number;
  switches: number;
  preemptions: number;
  yields: number;
  migrations: number;
}
const perCpu = (j: { stats: unknown }) => (j.stats as { perCpu: CpuRow[] }).perCpu;
const total = (rows: CpuRow[], k: keyof CpuRow) => rows.reduce((n, r) => n + r[k], 0);

describe('the scheduler: tasks are not CPUs', () => {
  it('word_count with 8 threads on 2 CPUs: the count is verified, and the CPUs switched between tasks', async () => {
    const { r, j } = await runJson(['run', 'word_count', '--size', '1M', '--threads', '8', '--cpus', '2']);
    expect(j.verification).toMatchObject({ ok: true });
    expect((j.verification as { summary: string }).summary).toMatch(/^matches an independent count/);
    expect(r.code).toBe(0);
    const rows = perCpu(j);
    expect(rows.map((c) => c.cpu)).toEqual([0, 1]);
    // 8 tasks on 2 CPUs: at least every task but the first one on each CPU came by a switch
    expect(total(rows, 'switches')).toBeGreaterThanOrEqual(6);
  });

  it('a user-space spin barrier of 3 threads on 1 CPU ends: the spinners are preempted at the tick', async () => {
    const { r, j } = await runJson([
      'run',
      'pthread-stress',
      '--cpus',
      '1',
      '--threads',
      '3',
      '--spin',
      '--iterations',
      '100',
      '--items',
      '100',
    ]);
    expect(j.verification).toMatchObject({ ok: true });
    expect(r.code).toBe(0);
    const [cpu0] = perCpu(j);
    // no thread makes a syscall while it spins: only the timer tick can have let the others in
    expect(cpu0?.preemptions).toBeGreaterThanOrEqual(2);
  });

  it('pthread-stress with 12 threads on 2 CPUs: no wake-up lost (every queued waiter was woken), counts verified', async () => {
    const { r, j } = await runJson(['run', 'pthread-stress', '--cpus', '2', '--threads', '12', '--capacity', '1']);
    expect(j.verification).toMatchObject({ ok: true });
    expect(r.code).toBe(0);
    const futex = (j.stats as { futex: { waits: number; woken: number; timedOut: number } }).futex;
    expect(futex.waits).toBeGreaterThan(0);
    expect(futex.woken).toBe(futex.waits);
    expect(futex.timedOut).toBe(0);
  });

  it('prints the per-CPU scheduler table in the summary', async () => {
    const r = await runCli([
      'run',
      'pthread-stress',
      '--cpus',
      '2',
      '--threads',
      '4',
      '--iterations',
      '500',
      '--items',
      '500',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^sched:\n {2}cpu +switches +preempted +yields +migrated +lazy tlb +leave_mm +faults +syscalls\n {2}cpu0 +\d+/m,
    );
    expect(r.stdout).toMatch(/^ {2}cpu1 +\d+/m);
  });

  it('rejects more threads than threads-max before boot, exit 2', async () => {
    const r = await runCli(['run', 'word_count', '--threads', '65']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^splitkern: --threads 65 is more than the 64 live threads splitkern runs at once/);
  });
});
