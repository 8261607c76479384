// The quiescent-point invariant checker on a small in-process machine: a clean state reports nothing,
// and each single corruption is reported under its own kind.
import { beforeEach, describe, expect, it } from 'vitest';
import { checkQuiescent } from '../src/processor/pcache/debug.ts';
import { drainReports, type Violation } from '../src/kernel/report.ts';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env, type Level } from '../src/kernel/env.ts';
import { Fabric } from '../src/fabric/ibapi.ts';
import {
  allocateShared,
  geometryFor,
  kCtlPgtableNext,
  kListLru,
  kMetaFlags,
  kMetaList,
  kMetaMapcount,
  kMetaNext,
  kMetaPrev,
  kMetaRef,
  kMetaRmapHead,
  kMmPgd,
  kMmPid,
  kRmapNext,
  kRmapPageTable,
  kSetFreeHead,
  kSetLock,
  kSetLruHead,
  kSetLruTail,
  kSetNrEviction,
  PC_dirty,
  PC_locked,
  PC_valid,
  Shared,
} from '../src/kernel/layout.ts';
import { Kern } from '../src/processor/kern.ts';
import { pcacheAlloc } from '../src/processor/pcache/alloc.ts';
import { pcacheEarlyInit } from '../src/processor/pcache/init.ts';
import { getPcache, rmapList } from '../src/processor/pcache/meta.ts';
import { pcacheAddRmap } from '../src/processor/pcache/rmap.ts';
import { allocTablePage, mkPte, walk } from '../src/processor/pgtable.ts';
import { PAGE_SIZE } from '../src/uapi/abi.ts';
import { kSetEvictPid } from '../src/kernel/layout.ts';

interface Rig {
  sh: Shared;
  env: Env;
  k: Kern;
  log: string[];
  slot: number;
  pid: number;
  /** map a page like the fault path: PTE -> fresh line -> rmap; returns { ptep, line } */
  map(va: number, pid?: number, slot?: number): { ptep: number; line: number };
  newMm(pid: number, slot: number): void;
  violations(): Violation[];
  kinds(): string[];
}

const BASE = 0x400000;

function makeRig(): Rig {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 1, pcacheBytes: 64 * 4096, ways: 4, victim: 0 };
  const geo = geometryFor(cfg);
  const sh = new Shared(allocateShared(geo));
  pcacheEarlyInit(sh);
  sh.ctl.set(kCtlPgtableNext, 1);
  const env = new Env(sh, {
    ctx: geo.ctx.host,
    cpu: -1,
    name: 'host',
    bootEpochMs: performance.timeOrigin,
    config: cfg,
  });
  const log: string[] = [];
  env.printk = (_level: Level, msg: string) => {
    log.push(...msg.split('\n'));
  };
  const k = new Kern(env, new Fabric(env));
  const reports: Violation[] = [];
  const rig: Rig = {
    sh,
    env,
    k,
    log,
    slot: 0,
    pid: 7,
    newMm(pid, slot) {
      sh.mm.set(slot, kMmPid, pid);
      sh.mm.set(slot, kMmPgd, allocTablePage(sh));
    },
    map(va, pid = rig.pid, slot = rig.slot) {
      k.setCurrent(pid, slot, 1, 'test');
      const ptep = walk(env, slot, va, true);
      const line = pcacheAlloc(k, va);
      sh.pgtable.store(ptep, mkPte(line, true));
      expect(pcacheAddRmap(k, line, ptep, va, pid, 0)).toBe(true);
      return { ptep, line };
    },
    violations() {
      drainReports(sh, reports);
      return reports;
    },
    kinds() {
      return [...new Set(rig.violations().map((v) => v.kind))].sort();
    },
  };
  rig.newMm(rig.pid, rig.slot);
  k.setCurrent(rig.pid, rig.slot, 1, 'test');
  return rig;
}

describe('checkQuiescent', () => {
  let rig: Rig;
  // geometry: 64 lines, 4 ways -> 16 sets; VAs BASE + i*4K index set (BASE/4K + i) % 16 = i % 16
  const nrSets = 16;
  let pages: Array<{ va: number; ptep: number; line: number }>;

  beforeEach(() => {
    rig = makeRig();
    pages = [];
    for (const i of [0, 1, 2, 16, 32]) {
      // three in set 0 (0, 16, 32), one each in sets 1 and 2
      const va = BASE + i * PAGE_SIZE;
      pages.push({ va, ...rig.map(va) });
    }
    // a second process sharing nothing
    rig.newMm(9, 1);
    pages.push({ va: BASE, ...rig.map(BASE, 9, 1) });
    rig.k.setCurrent(0, -1, 0, '');
  });

  const check = () => checkQuiescent(rig.k, 'test');

  it('reports nothing on a clean machine and counts what it checked', () => {
    const r = check();
    expect(rig.violations()).toEqual([]);
    expect(r.violations).toBe(0);
    expect(r.checked).toEqual({ lines: 64, rmaps: 6, ptes: 6, sets: nrSets });
  });

  it('a cleared PTE: rmap-pte-mismatch with the LegoOS text', () => {
    const p = pages[1]!;
    rig.sh.pgtable.store(p.ptep, 0);
    const r = check();
    expect(r.violations).toBe(1);
    expect(rig.kinds()).toEqual(['rmap-pte-mismatch']);
    expect(rig.log).toContain('****    ERROR: mismatched PTE and rmap');
    expect(
      rig.log.some((l) => l.includes(`uva: 0x${p.va.toString(16)}`) && l.includes('rmap->owner_process: pid7')),
    ).toBe(true);
    expect(rig.log.some((l) => l.includes('[pte == rmap->page_table] && [pcache_pfn != pte_pfn]'))).toBe(true);
    expect(rig.violations()[0]!.text).toBe('****    ERROR: mismatched PTE and rmap');
  });

  it('an rmap repointed at another slot: rmap-pte-mismatch and pte-without-rmap', () => {
    const p = pages[0]!;
    const [r0] = rmapList(rig.sh, p.line);
    rig.sh.rmap.set(r0!, kRmapPageTable, p.ptep + 3);
    check();
    expect(rig.kinds()).toEqual(['pte-without-rmap', 'rmap-pte-mismatch']);
    expect(rig.log.some((l) => l.includes('[pte != rmap->page_table]'))).toBe(true);
    const v = rig.violations().find((x) => x.kind === 'pte-without-rmap')!;
    expect(v.pid).toBe(7);
    expect(v.addr).toBe(`0x${p.va.toString(16)}`);
  });

  it('a bumped mapcount: mapcount-mismatch only', () => {
    const p = pages[2]!;
    rig.sh.meta.add(p.line, kMetaMapcount, 1);
    rig.sh.meta.add(p.line, kMetaRef, 1); // keep ref == mapcount
    const r = check();
    expect(rig.kinds()).toEqual(['mapcount-mismatch']);
    expect(r.violations).toBe(1);
    expect(rig.violations()[0]!.text).toMatch(
      /^splitkern check \(test\): pcache line \d+ \(set 2\): mapcount 2 but 1 rmap$/,
    );
  });

  it('refcount != mapcount on the LRU, and PC_valid without mappings', () => {
    getPcache(rig.sh, pages[0]!.line);
    check();
    expect(rig.kinds()).toEqual(['mapcount-mismatch']);
    expect(rig.log.some((l) => l.includes('refcount 2 != mapcount 1 on the LRU'))).toBe(true);
    rig.log.length = 0;
    // an allocated line never mapped: ref 1, mapcount 0 (a leak) and, with Valid, a flag mismatch
    rig.k.setCurrent(7, 0, 1, 'test');
    const line = pcacheAlloc(rig.k, BASE + 5 * PAGE_SIZE);
    rig.sh.meta.or(line, kMetaFlags, PC_valid);
    check();
    const texts = rig.violations().map((v) => v.text);
    expect(texts.some((t) => t.includes(`pcache line ${line} (set 5): PC_valid set with mapcount 0`))).toBe(true);
    expect(texts.some((t) => t.includes(`pcache line ${line} (set 5): refcount 1 != mapcount 0 on the LRU`))).toBe(
      true,
    );
  });

  it('an rmap address in the wrong set: set-index', () => {
    const p = pages[3]!; // set 0
    const [r0] = rmapList(rig.sh, p.line);
    rig.sh.rmapAddr.set(r0!, p.va + PAGE_SIZE); // set 1
    check();
    expect(rig.kinds()).toContain('set-index');
    const v = rig.violations().find((x) => x.kind === 'set-index')!;
    expect(v.text).toContain(`address 0x${(p.va + PAGE_SIZE).toString(16)} indexes set 1`);
    expect(v.details.set).toBe(0);
  });

  it('a flag left on a free line: free-line-state in the LegoOS format', () => {
    const set = 7;
    const line = rig.sh.set.get(set, kSetFreeHead) - 1;
    expect(line).toBeGreaterThanOrEqual(0);
    rig.sh.meta.or(line, kMetaFlags, PC_dirty);
    const r = check();
    expect(r.violations).toBe(1);
    expect(rig.kinds()).toEqual(['free-line-state']);
    expect(rig.log).toContain('BUG: Bad pcache state in process [host][pid:0 tgid: 0]');
    expect(rig.log.some((l) => l.startsWith(`pcache:${line} mapcount:0 refcount:0 flags:(dirty)`))).toBe(true);
    expect(rig.log).toContain('pcache dumped because: PCACHE_FLAGS_CHECK_AT_FREE flag(s) set');
  });

  it('a line unlinked from the LRU without adjusting the counts: set-conservation', () => {
    const sh = rig.sh;
    const set = 0; // LRU, newest first: pid 9's BASE, then pid 7's 32, 16, 0
    const head = sh.set.get(set, kSetLruHead) - 1;
    const next = sh.meta.get(head, kMetaNext);
    sh.set.set(set, kSetLruHead, next);
    sh.meta.set(next - 1, kMetaPrev, 0);
    check();
    expect(rig.kinds()).toEqual(['set-conservation']);
    const texts = rig.violations().map((v) => v.text);
    expect(texts).toContain('splitkern check (test): set 0: nr_lru 4 but the LRU list holds 3 lines');
    expect(texts.some((t) => t.includes(`pcache line ${head} (set 0, tag LRU) is on no free or LRU list`))).toBe(true);
    expect(sh.meta.get(head, kMetaList)).toBe(kListLru);
  });

  it('a held set lock, a locked line and a broken LRU back link: set-conservation', () => {
    const sh = rig.sh;
    sh.set.set(3, kSetLock, 1);
    sh.meta.or(pages[1]!.line, kMetaFlags, PC_locked);
    const tail = sh.set.get(0, kSetLruTail) - 1;
    sh.meta.set(tail, kMetaPrev, 0);
    check();
    expect(rig.kinds()).toEqual(['set-conservation']);
    const texts = rig.violations().map((v) => v.text);
    expect(texts.some((t) => t.includes('set 3: set lock (lru_lock) still held'))).toBe(true);
    expect(texts.some((t) => t.includes(`pcache line ${pages[1]!.line} (set 1) still has flags (locked)`))).toBe(true);
    expect(texts.some((t) => t.includes('LRU link broken'))).toBe(true);
  });

  it('an eviction entry left over: pset-eviction-leftover', () => {
    const sh = rig.sh;
    sh.set.set(4, kSetEvictPid(2), 7);
    sh.setEvictAddr.set(4, 2, BASE + 4 * PAGE_SIZE);
    sh.set.set(4, kSetNrEviction, 1);
    const r = check();
    expect(r.violations).toBe(1);
    expect(rig.kinds()).toEqual(['pset-eviction-leftover']);
    const v = rig.violations()[0]!;
    expect(v.text).toBe(
      `splitkern check (test): set 4: eviction list not empty at a quiescent point: nr_eviction_entries 1, entries (pid 7, 0x${(BASE + 4 * PAGE_SIZE).toString(16)})`,
    );
    expect(v.pid).toBe(7);
  });

  it('one line mapped at two addresses of one mm: line-mapped-twice', () => {
    const sh = rig.sh;
    const p = pages[0]!; // set 0
    const va2 = BASE + 48 * PAGE_SIZE; // also set 0
    rig.k.setCurrent(7, 0, 1, 'test');
    const ptep2 = walk(rig.env, 0, va2, true);
    getPcache(sh, p.line);
    sh.pgtable.store(ptep2, mkPte(p.line, true));
    expect(pcacheAddRmap(rig.k, p.line, ptep2, va2, 7, 0)).toBe(true);
    const r = check();
    expect(rig.kinds()).toEqual(['line-mapped-twice']);
    expect(r.violations).toBe(1); // reported once, from the rmap side and the PTE side together
    expect(rig.violations()[0]!.text).toContain(`pcache line ${p.line} (set 0) has two rmaps of pid 7`);
  });

  it('two PTEs of one mm on a line with a single rmap: pte-without-rmap and line-mapped-twice', () => {
    const sh = rig.sh;
    const p = pages[0]!;
    const va2 = BASE + 48 * PAGE_SIZE;
    rig.k.setCurrent(7, 0, 1, 'test');
    const ptep2 = walk(rig.env, 0, va2, true);
    sh.pgtable.store(ptep2, mkPte(p.line, true));
    check();
    expect(rig.kinds()).toEqual(['line-mapped-twice', 'pte-without-rmap']);
    expect(rig.violations().find((v) => v.kind === 'line-mapped-twice')!.text).toContain(
      `is mapped twice by pid 7: at 0x${p.va.toString(16)} and 0x${va2.toString(16)}`,
    );
  });

  it('an rmap whose owner has no mm: rmap-pte-mismatch', () => {
    rig.sh.mm.set(1, kMmPid, 0); // pid 9 gone, its line still mapped
    const r = check();
    expect(r.violations).toBe(1);
    expect(rig.kinds()).toEqual(['rmap-pte-mismatch']);
    expect(rig.log.some((l) => l.includes('rmap->owner_process: pid9') && l.includes('ptep: (null)'))).toBe(true);
    expect(rig.log.some((l) => l.includes('owner pid 9 has no mm'))).toBe(true);
  });

  it('a cyclic rmap list is reported, not looped on', () => {
    const sh = rig.sh;
    const line = pages[0]!.line;
    const r0 = sh.meta.get(line, kMetaRmapHead) - 1;
    sh.rmap.set(r0, kRmapNext, r0 + 1);
    check();
    expect(rig.violations().map((v) => v.text)).toContain(
      `splitkern check (test): rmap list of pcache line ${line} (set 0) is cyclic (rmap ${r0} appears twice)`,
    );
  });

  it('caps detailed reports per kind but counts every violation', () => {
    const sh = rig.sh;
    // flag every free line (64 - 6 mapped = 58 free lines)
    for (let line = 0; line < 64; line++) if (sh.meta.get(line, kMetaRef) === 0) sh.meta.or(line, kMetaFlags, PC_dirty);
    const r = check();
    expect(r.violations).toBe(58);
    expect(rig.violations()).toHaveLength(16);
    expect(rig.log).toContain('splitkern check (test): 42 more free-line-state violations not printed (58 in all)');
  });
});
