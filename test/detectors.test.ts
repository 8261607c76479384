// Race-lab detectors on hand-built states: each fires on a state built to violate its invariant and
// stays silent on a correct one. (The quiescent checker's own cases are in invariants.test.ts.)
import { describe, expect, it } from 'vitest';
import { drainReports, type Violation } from '../src/kernel/report.ts';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env, type Level } from '../src/kernel/env.ts';
import { Fabric } from '../src/fabric/ibapi.ts';
import {
  allocateShared,
  geometryFor,
  kCtlPgtableNext,
  kMmPgd,
  kMmPid,
  kRmapPageTable,
  Shared,
} from '../src/kernel/layout.ts';
import { Kern } from '../src/processor/kern.ts';
import { pcacheAlloc } from '../src/processor/pcache/alloc.ts';
import { pcacheEarlyInit } from '../src/processor/pcache/init.ts';
import { rmapList } from '../src/processor/pcache/meta.ts';
import { pcacheAddRmap } from '../src/processor/pcache/rmap.ts';
import { pcacheSweepSet } from '../src/processor/pcache/sweep.ts';
import { allocTablePage, mkPte, walk } from '../src/processor/pgtable.ts';
import { CpuMmu } from '../src/processor/mmu.ts';
import { tlbGatherEnd, tlbGatherStart } from '../src/processor/tlb.ts';
import { PAGE_SIZE } from '../src/uapi/abi.ts';

function machine(over: Partial<MachineConfig> = {}) {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 2, pcacheBytes: 16 * 4096, ways: 1, victim: 0, ...over };
  const geo = geometryFor(cfg);
  const sh = new Shared(allocateShared(geo));
  pcacheEarlyInit(sh);
  sh.ctl.set(kCtlPgtableNext, 1);
  sh.tlbVpn.a.fill(-1);
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config: cfg });
  const log: string[] = [];
  env.printk = (_l: Level, msg: string) => {
    log.push(...msg.split('\n'));
  };
  const k = new Kern(env, new Fabric(env));
  const pid = 5;
  sh.mm.set(0, kMmPid, pid);
  sh.mm.set(0, kMmPgd, allocTablePage(sh));
  k.setCurrent(pid, 0, 1, 'test');
  const map = (va: number) => {
    const ptep = walk(env, 0, va, true);
    const line = pcacheAlloc(k, va);
    sh.pgtable.store(ptep, mkPte(line, true));
    pcacheAddRmap(k, line, ptep, va, pid, 0);
    return { ptep, line };
  };
  const reports: Violation[] = [];
  const violations = () => {
    drainReports(sh, reports);
    return reports;
  };
  return { sh, env, k, map, violations, log };
}

const VA = 0x7fffe5788000;

describe('stale-TLB detector (at allocation)', () => {
  it('is silent when no TLB maps the line being handed out', () => {
    const m = machine({ check: 'end' });
    m.map(VA);
    // 1-way sets: mapping another page of the same set evicts the first line (clean, no fabric)
    m.map(VA + 16 * PAGE_SIZE);
    expect(m.violations()).toEqual([]);
  });

  it('fires when another CPU still holds a translation of a line that is reallocated', () => {
    const m = machine({ check: 'end' });
    const { line } = m.map(VA);
    // CPU1 filled its TLB from the PTE and never got a shootdown (its bit is not in mm_cpumask)
    const e = (VA / PAGE_SIZE) % 64;
    m.sh.tlbVal.set(1, e, mkPte(line, true));
    m.sh.tlbVpn.set(1, e, VA / PAGE_SIZE);
    m.map(VA + 16 * PAGE_SIZE); // evicts `line` and reallocates it
    const v = m.violations();
    expect(v.map((x) => x.kind)).toEqual(['stale-tlb']);
    expect(v[0]!.text).toBe(
      `stale TLB: CPU#1 still translates 0x7fffe5788000 to pcache line ${line} (pfn 0x${(0x100000 + line).toString(16)}), which is free and being reallocated for 0x7fffe5798000 by cpu0 (pid 5)`,
    );
  });

  it('is off without --check', () => {
    const m = machine({ check: 'none' });
    const { line } = m.map(VA);
    const e = (VA / PAGE_SIZE) % 64;
    m.sh.tlbVal.set(1, e, mkPte(line, true));
    m.sh.tlbVpn.set(1, e, VA / PAGE_SIZE);
    m.map(VA + 16 * PAGE_SIZE);
    expect(m.violations()).toEqual([]);
  });
});

describe('rmap walkers check rmap against PTE (the sweep)', () => {
  it('kevict_sweepd reports a line whose rmap names an empty slot', () => {
    const m = machine({ pcacheBytes: 16 * 4096, ways: 4 });
    const { line, ptep } = m.map(VA);
    m.map(VA + PAGE_SIZE);
    // the fresh fill was accessed: the sweep clears the bit and moves the line to the LRU head
    expect(pcacheSweepSet(m.k, m.sh.setOfAddr(VA))).toBe(1);
    expect(m.violations()).toEqual([]);
    // the PTE moved away without its rmap (mremap-pte-before-rmap's window)
    m.sh.pgtable.store(ptep, 0);
    pcacheSweepSet(m.k, m.sh.setOfAddr(VA));
    const v = m.violations();
    expect(v.map((x) => x.kind)).toEqual(['rmap-pte-mismatch']);
    expect(m.log).toContain('****    ERROR: mismatched PTE and rmap');
    expect(m.log.join('\n')).toContain('caller: pcache_referenced_trylock_one');
    void line;
  });

  it('reports an rmap whose page_table is another slot', () => {
    const m = machine({ pcacheBytes: 16 * 4096, ways: 4 });
    const { line } = m.map(VA);
    const r = rmapList(m.sh, line)[0]!;
    m.sh.rmap.add(r, kRmapPageTable, 1);
    pcacheSweepSet(m.k, m.sh.setOfAddr(VA));
    expect(m.violations().map((x) => x.kind)).toEqual(['rmap-pte-mismatch']);
  });
});

describe('stale-TLB detector (at use)', () => {
  function rig() {
    const m = machine({ check: 'end', pcacheBytes: 16 * 4096, ways: 4 });
    const mmu = new CpuMmu(m.k);
    const a = m.map(VA);
    m.map(VA + PAGE_SIZE);
    // fill the TLB for both pages through the MMU, leaving the one-page shortcut on the second
    m.sh.pcdata[m.sh.lineOffset(a.line)] = 42;
    expect(mmu.load8(VA)).toBe(42);
    mmu.load8(VA + PAGE_SIZE);
    return { ...m, mmu, a };
  }

  it('fires when a CPU uses a translation whose PTE changed and no flush is pending', () => {
    const m = rig();
    m.sh.pgtable.store(m.a.ptep, 0); // the PTE is cleared, nobody flushed, nothing pending
    expect(m.mmu.load8(VA)).toBe(42); // the stale entry still translates, like hardware
    const v = m.violations();
    expect(v.map((x) => x.kind)).toEqual(['stale-tlb']);
    expect(v[0]!.text).toMatch(
      /^stale TLB use: CPU#0 test\[5\] accessed 0x7fffe5788000 through a TLB entry for pcache line \d+ \(pte 0x[0-9a-f]+\), but the PTE is now 0x0 and no flush is pending$/,
    );
  });

  it('is silent inside the window between a PTE change and its flush (hardware behaviour)', () => {
    const m = rig();
    tlbGatherStart(m.k, 0);
    m.sh.pgtable.store(m.a.ptep, 0);
    expect(m.mmu.load8(VA)).toBe(42);
    tlbGatherEnd(m.k, 0);
    expect(m.violations()).toEqual([]);
  });
});
