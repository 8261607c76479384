// Processes: fork with copy-on-write in the pcache (src/processor/fork.ts, pcache_do_wp_page in
// pcache/fault.ts), wait4 and SIGCHLD, the task table's recycling (src/processor/pid.ts) and the page
// tables' (freePgtables). fork-stress is the oracle: each side checks its page tags against what it
// wrote itself and what it was given outside emulated memory (the version in the fork argument).
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env } from '../src/kernel/env.ts';
import {
  allocateShared,
  geometryFor,
  kCtlNextTid,
  kCtlPgtableNext,
  kMaxThreads,
  kMmPgd,
  kParentInit,
  kPtrsPerTable,
  kThreadParent,
  kThreadPid,
  kThreadState,
  kUsageReap,
  kUsageTask,
  Shared,
  THREAD_DEAD,
  THREAD_EXITED,
  THREAD_FREE,
} from '../src/kernel/layout.ts';
import { allocTid, exitNotify, forgetThreadsAndChildren, putTask, reapIfExited } from '../src/processor/pid.ts';
import { allocTablePage, freePgtables, walk } from '../src/processor/pgtable.ts';
import { runCli, runJson } from './helpers/cli.ts';

const small = ['--pcache', '512K', '--ways', '4', '--sweep'];

describe('fork and copy-on-write', () => {
  it('fork-stress on the fixed kernel: every page verified on both sides, shared lines evicted, 0 violations', async () => {
    const { r, j } = await runJson(
      ['run', 'fork-stress', '--iterations', '30', '--procs', '4', ...small, '--check', 'syscall'],
      {},
      240_000,
    );
    expect(j.verification).toMatchObject({ ok: true, forks: 30, reaped: 30, childFailures: 0, mismatches: 0 });
    expect(j.verification.selfChecks).toEqual([]);
    expect(j.violationCount).toBe(0);
    expect(r.code).toBe(0);
    const pc = j.stats.pcache;
    // both kinds of write-protect fault ran: copies of shared lines, and reuse of the last mapping
    expect(pc.nr_pgfault_wp_cow).toBeGreaterThan(0);
    expect(pc.nr_pgfault_wp_reuse).toBeGreaterThan(0);
    expect(pc.nr_pcache_eviction_succeed).toBeGreaterThan(0);
    // the 30 children and the one that must die of SIGSEGV
    expect(j.stats.syscalls.fork).toBe(31);
    expect(j.stats.fabric.P2M_FORK?.count).toBe(31);
    expect(j.stats.faults.segfaults).toBe(1);
  }, 300_000);

  it('more forks than the task table has rows: tids and page tables are recycled', async () => {
    const { r, j } = await runJson(
      ['run', 'fork-stress', '--iterations', String(kMaxThreads + 20), '--pages', '2', '--procs', '3'],
      {},
      240_000,
    );
    expect(j.verification).toMatchObject({ ok: true, forks: kMaxThreads + 20 });
    expect(r.code).toBe(0);
  }, 300_000);

  it('bad fork-stress options: one line, exit 2', async () => {
    for (const [args, msg] of [
      [['--procs', '0'], /^splitkern: fork-stress: --procs 0 must be an integer from 1 to 12$/],
      [['--threads', '2'], /^splitkern: fork-stress: --threads does not apply \(give --procs\)$/],
      [['--iterations', '0'], /^splitkern: fork-stress: --iterations 0 needs --seconds S/],
    ] as const) {
      const r = await runCli(['run', 'fork-stress', ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(msg);
    }
  });
});

describe('the task table (alloc_pid, release_task, reaping)', () => {
  const shared = () => {
    const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 2 };
    const sh = new Shared(allocateShared(geometryFor(cfg)));
    sh.ctl.store(kCtlNextTid, 1); // as boot leaves it
    return { sh, cfg };
  };

  it('hands out every row once, then -1; a row is free again only when both usages are gone', () => {
    const { sh } = shared();
    const tids = new Set<number>();
    for (let i = 0; i < kMaxThreads - 1; i++) tids.add(allocTid(sh));
    expect(tids.size).toBe(kMaxThreads - 1);
    expect(tids.has(0)).toBe(false);
    expect(allocTid(sh)).toBe(-1);
    sh.threads.store(7, kThreadState, THREAD_EXITED);
    putTask(sh, 7, kUsageTask);
    expect(sh.threads.load(7, kThreadState)).toBe(THREAD_EXITED); // still to be reaped
    putTask(sh, 7, kUsageTask); // a second drop of the same usage changes nothing
    expect(allocTid(sh)).toBe(-1);
    putTask(sh, 7, kUsageReap);
    expect(sh.threads.load(7, kThreadState)).toBe(THREAD_FREE);
    expect(allocTid(sh)).toBe(7);
  });

  it('a zombie is reaped once; an exiting parent reparents its children to init, which reaps the dead', () => {
    const { sh } = shared();
    const parent = allocTid(sh);
    const [a, b] = [allocTid(sh), allocTid(sh)];
    for (const c of [a, b]) {
      sh.threads.set(c, kThreadPid, c);
      sh.threads.set(c, kThreadParent, parent);
    }
    sh.threads.store(a, kThreadState, THREAD_EXITED);
    exitNotify(sh, a); // SIGCHLD: the parent's generation moves
    expect(reapIfExited(sh, a)).toBe(true);
    expect(reapIfExited(sh, a)).toBe(false);
    expect(sh.threads.load(a, kThreadState)).toBe(THREAD_DEAD); // its task has not left its CPU yet
    putTask(sh, a, kUsageTask);
    expect(sh.threads.load(a, kThreadState)).toBe(THREAD_FREE);
    // b is still alive when the parent goes: reparented, and reaped by init at its own exit
    forgetThreadsAndChildren(sh, parent);
    expect(sh.threads.load(b, kThreadParent)).toBe(kParentInit);
    sh.threads.store(b, kThreadState, THREAD_EXITED);
    exitNotify(sh, b);
    expect(sh.threads.load(b, kThreadState)).toBe(THREAD_DEAD);
    putTask(sh, b, kUsageTask);
    expect(sh.threads.load(b, kThreadState)).toBe(THREAD_FREE);
  });

  it('the page tables of a dead mm go back to the pool and are handed out again', () => {
    const { sh, cfg } = shared();
    const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config: cfg });
    sh.ctl.store(kCtlPgtableNext, 1);
    const pgd = allocTablePage(sh, env);
    sh.mm.set(0, kMmPgd, pgd);
    walk(env, 0, 0x7fffe5800000, true);
    walk(env, 0, 0x602000, true);
    const used = sh.ctl.load(kCtlPgtableNext) - 1;
    expect(used).toBe(7); // a PGD, and a PUD, PMD and PTE page for each of the two addresses
    expect(freePgtables(env, pgd)).toBe(used);
    const again = new Set<number>();
    for (let i = 0; i < used; i++) again.add(allocTablePage(sh, env));
    expect(sh.ctl.load(kCtlPgtableNext) - 1).toBe(used); // nothing new was bumped
    expect(again.size).toBe(used);
    for (const tp of again) expect(sh.pgtable.a[tp * kPtrsPerTable]).toBe(0); // handed out zeroed
  });
});
