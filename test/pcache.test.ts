// The pcache on a small in-process machine (one CPU context, no workers): set indexing, allocation and
// eviction under each policy, the victim cache, rmap bookkeeping and rmap_get_pte_locked.
//
// Every line stays CLEAN (no _PAGE_DIRTY in any PTE), so an eviction never writes back through the
// fabric; mm_cpumask stays 0, so a TLB shootdown sends no IPI. Pages are mapped like the fault path:
// walk -> pcache_alloc -> PTE lock -> set PTE -> pcache_add_rmap -> PTE unlock.
import { describe, expect, it } from 'vitest';
import { checkQuiescent } from '../src/processor/pcache/debug.ts';
import { drainReports, type Violation } from '../src/kernel/report.ts';
import { DEFAULT_CONFIG, type EvictPolicy, type MachineConfig } from '../src/kernel/config.ts';
import { Env, type Level } from '../src/kernel/env.ts';
import { Fabric } from '../src/fabric/ibapi.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_RW,
  allocateShared,
  geometryFor,
  kCtlPgtableNext,
  kCtlRmapFreeHead,
  kCtlVictimGen,
  kMetaFlags,
  kMetaPrev,
  kSetLruTail,
  kMetaMapcount,
  kMetaRef,
  kMmPgd,
  kMmPid,
  kPrintkHead,
  kPrintkSlotLen,
  kPrintkSlotSeq,
  kPrintkTextOff,
  kPrintkSlotBytes,
  kPrintkSlots,
  kRmapFlags,
  kRmapNext,
  kRmapOwner,
  kRmapPageTable,
  kSetNrVictims,
  kVictimPid,
  kVictimRw,
  PC_locked,
  PC_valid,
  PCACHE_RMAP_used,
  RMAP_FILL_PAGE_REMOTE,
  RMAP_VICTIM_FILL,
  Shared,
} from '../src/kernel/layout.ts';
import { Kern } from '../src/processor/kern.ts';
import { pcacheAlloc } from '../src/processor/pcache/alloc.ts';
import { pcacheEarlyInit } from '../src/processor/pcache/init.ts';
import {
  getPcache,
  lockPcache,
  pcacheFlags,
  putPcache,
  rmapList,
  rmapView,
  setCounts,
  unlockPcache,
} from '../src/processor/pcache/meta.ts';
import { pcacheAddRmap, pcacheRemoveRmapLocked, rmapGetPteLocked } from '../src/processor/pcache/rmap.ts';
import { victimInvalidateRange, victimTryFill } from '../src/processor/pcache/victim.ts';
import {
  allocTablePage,
  fmtPtep,
  mkPte,
  pteLine,
  pteMapped,
  ptlLock,
  ptlUnlock,
  tableOfSlot,
  walk,
  walkNoAlloc,
} from '../src/processor/pgtable.ts';
import { S, type StatName } from '../src/kernel/stats.ts';
import { PAGE_SIZE } from '../src/uapi/abi.ts';
import { pattern } from './helpers/pattern.ts';

// Geometry: 64 lines, 4 ways -> 16 sets. BASE indexes set 0.
const NR_LINES = 64;
const WAYS = 4;
const NR_SETS = NR_LINES / WAYS;
const BASE = 0x400000;
const PID = 7;
const PID2 = 9;
const VA47 = 0x7fffe5788000;

/** the n-th page (n = 0, 1, ...) of BASE's address range that indexes `set` */
const vaIn = (set: number, n: number): number => BASE + (set + n * NR_SETS) * PAGE_SIZE;

interface Page {
  va: number;
  ptep: number;
  line: number;
  pid: number;
}

interface RigOpts {
  evict?: EvictPolicy;
  victim?: number;
  seed?: number;
  printk?: 'capture' | 'ring';
}

interface Rig {
  sh: Shared;
  env: Env;
  k: Kern;
  /** printk lines (when captured) */
  log: string[];
  slotOf(pid: number): number;
  /** map a page like the fault path (fresh line, PTE, rmap) */
  map(va: number, o?: { writable?: boolean; pid?: number; fill?: number }): Page;
  /** finish a fill into an allocated line: PTE (under the PTE lock) + rmap */
  install(va: number, line: number, writable: boolean, caller: number, pid?: number): Page;
  pte(p: Page): number;
  stat(name: StatName): number;
  violations(): Violation[];
  expectQuiescent(): void;
  lineBytes(line: number): Uint8Array;
}

function makeRig(o: RigOpts = {}): Rig {
  const cfg: MachineConfig = {
    ...DEFAULT_CONFIG,
    cpus: 1,
    pcacheBytes: NR_LINES * PAGE_SIZE,
    ways: WAYS,
    victim: o.victim ?? 0,
    evict: o.evict ?? 'fifo',
    seed: o.seed ?? 1,
    logLevel: 'debug',
  };
  const geo = geometryFor(cfg);
  const sh = new Shared(allocateShared(geo));
  pcacheEarlyInit(sh);
  sh.ctl.set(kCtlPgtableNext, 1); // table page 0 is never handed out (the checker's valid range is 1..)
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config: cfg });
  const log: string[] = [];
  if ((o.printk ?? 'capture') === 'capture')
    env.printk = (_level: Level, msg: string) => {
      log.push(...msg.split('\n'));
    };
  const k = new Kern(env, new Fabric(env));
  const slots = new Map<number, number>();
  const newMm = (pid: number, slot: number): void => {
    sh.mm.set(slot, kMmPid, pid);
    sh.mm.set(slot, kMmPgd, allocTablePage(sh));
    slots.set(pid, slot);
  };
  newMm(PID, 0);
  newMm(PID2, 1);
  const reports: Violation[] = [];
  const rig: Rig = {
    sh,
    env,
    k,
    log,
    slotOf(pid) {
      return slots.get(pid)!;
    },
    install(va, line, writable, caller, pid = PID) {
      const slot = rig.slotOf(pid);
      k.setCurrent(pid, slot, 1, 'test');
      const ptep = walk(env, slot, va, true);
      ptlLock(env, ptep);
      expect(sh.pgtable.load(ptep)).toBe(0);
      sh.pgtable.store(ptep, mkPte(line, writable));
      expect(pcacheAddRmap(k, line, ptep, va, pid, caller)).toBe(true);
      ptlUnlock(env, ptep);
      return { va, ptep, line, pid };
    },
    map(va, m = {}) {
      const pid = m.pid ?? PID;
      k.setCurrent(pid, rig.slotOf(pid), 1, 'test');
      walk(env, rig.slotOf(pid), va, true);
      const line = pcacheAlloc(k, va);
      expect(line).toBeGreaterThanOrEqual(0);
      if (m.fill !== undefined) sh.pcdata.set(pattern(m.fill), sh.lineOffset(line));
      return rig.install(va, line, m.writable ?? true, RMAP_FILL_PAGE_REMOTE, pid);
    },
    pte(p) {
      return sh.pgtable.load(p.ptep);
    },
    stat(name) {
      return sh.stats.get(env.ctx, S[name]);
    },
    violations() {
      drainReports(sh, reports);
      return reports;
    },
    expectQuiescent() {
      const r = checkQuiescent(k, 'test');
      expect(rig.violations().map((v) => v.text)).toEqual([]);
      expect(r.violations).toBe(0);
    },
    lineBytes(line) {
      return sh.pcdata.slice(sh.lineOffset(line), sh.lineOffset(line) + PAGE_SIZE);
    },
  };
  return rig;
}

/** Lines of the kernel log ring (what the host would drain), without the dmesg timestamp. */
function readPrintkRing(sh: Shared): string[] {
  const dec = new TextDecoder();
  const out: string[] = [];
  const head = sh.printkHdr.load(kPrintkHead);
  for (let seq = Math.max(0, head - kPrintkSlots); seq < head; seq++) {
    const slot = seq % kPrintkSlots;
    expect(sh.printkSlots.load(slot, kPrintkSlotSeq)).toBe(seq + 1);
    const base = slot * kPrintkSlotBytes + kPrintkTextOff;
    const text = dec.decode(sh.printkBytes.subarray(base, base + sh.printkSlots.load(slot, kPrintkSlotLen)));
    out.push(text.replace(/^\[\s*\d+\.\d{6}\] /, ''));
  }
  return out;
}

/** Each of `want` occurs in `log` after the previous one, starting at `from`; returns the index after the last. */
function expectInOrder(log: string[], from: number, want: string[]): number {
  let i = from;
  for (const w of want) {
    const j = log.indexOf(w, i);
    expect(j, `log line ${JSON.stringify(w)} (in order, from line ${i})`).toBeGreaterThanOrEqual(0);
    i = j + 1;
  }
  return i;
}

/** Number of rmaps on the pool's free list. */
function rmapFreeCount(sh: Shared): number {
  let n = 0;
  for (let e = sh.ctl.get(kCtlRmapFreeHead); e !== 0 && n <= sh.geo.nrRmaps; e = sh.rmap.get(e - 1, kRmapNext)) n++;
  return n;
}

const isMapped = (rig: Rig, p: Page): boolean => {
  const pte = rig.pte(p);
  return pteMapped(pte) && pteLine(pte) === p.line;
};

/** Fill `set` with WAYS pages of PID (allocation order = array order), each with its own data pattern. */
function fillSet(rig: Rig, set: number, writable: (i: number) => boolean = () => true): Page[] {
  const pages: Page[] = [];
  for (let i = 0; i < WAYS; i++) pages.push(rig.map(vaIn(set, i), { writable: writable(i), fill: 100 + i }));
  return pages;
}

// ------------------------------------------------------------------------------------------------

describe('set index', () => {
  it('addresses 4 KiB apart index consecutive sets; nrSets*4 KiB apart index the same set', () => {
    const rig = makeRig();
    const { sh } = rig;
    expect(sh.geo.nrSets).toBe(NR_SETS);
    const s0 = sh.setOfAddr(BASE);
    expect(s0).toBe(0);
    for (let i = 0; i < 3 * NR_SETS; i++) {
      expect(sh.setOfAddr(BASE + i * PAGE_SIZE)).toBe((s0 + i) % NR_SETS);
      expect(sh.setOfAddr(BASE + i * PAGE_SIZE + 0xabc)).toBe((s0 + i) % NR_SETS); // offset in page ignored
    }
    for (let n = 0; n < 8; n++) expect(sh.setOfAddr(BASE + 5 * PAGE_SIZE + n * NR_SETS * PAGE_SIZE)).toBe(5);
    // a line handed out for an address belongs to that address's set
    for (let i = 0; i < NR_SETS; i++) {
      const p = rig.map(BASE + i * PAGE_SIZE);
      expect(sh.setOfLine(p.line)).toBe(i);
    }
    rig.expectQuiescent();
  });

  it('47-bit addresses: no 32-bit truncation in the set index, the walk, the rmap or eviction', () => {
    const rig = makeRig();
    const { sh } = rig;
    const expectSet = (va: number): number => Number((BigInt(va) >> 12n) % BigInt(NR_SETS));
    for (const va of [VA47, VA47 + PAGE_SIZE, 2 ** 47 - PAGE_SIZE, 0x7f0000000000, 0x100000000 + 3 * PAGE_SIZE]) {
      const s = sh.setOfAddr(va);
      expect(s).toBe(expectSet(va));
      expect(s).toBeGreaterThanOrEqual(0);
    }
    const set = sh.setOfAddr(VA47);
    // VA47 and its 32-bit truncation index the same set, but are different pages
    const alias = VA47 % 2 ** 32;
    expect(sh.setOfAddr(alias)).toBe(set);
    const hi = rig.map(VA47, { fill: 1 });
    const lo = rig.map(alias, { fill: 2 });
    expect(sh.setOfLine(hi.line)).toBe(set);
    expect(hi.ptep).not.toBe(lo.ptep);
    expect(hi.line).not.toBe(lo.line);
    expect(walkNoAlloc(sh, sh.mm.get(0, kMmPgd), VA47)).toBe(hi.ptep);
    expect(walkNoAlloc(sh, sh.mm.get(0, kMmPgd), alias)).toBe(lo.ptep);
    const [r] = rmapList(sh, hi.line);
    expect(rmapView(sh, r!).address).toBe(VA47);
    expect(rmapView(sh, r!).pageTable).toBe(hi.ptep);
    rig.expectQuiescent();
    // fill the set: the next allocation evicts VA47 (oldest, fifo) through its rmap's 47-bit walk
    rig.map(VA47 + 2 * NR_SETS * PAGE_SIZE);
    rig.map(VA47 + 3 * NR_SETS * PAGE_SIZE);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(0);
    rig.map(VA47 + 4 * NR_SETS * PAGE_SIZE);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(1);
    expect(rig.pte(hi)).toBe(0);
    expect(isMapped(rig, lo)).toBe(true);
    expect(rig.log.filter((l) => l.includes('mismatched PTE and rmap'))).toEqual([]);
    rig.expectQuiescent();
  });
});

describe('allocation and eviction', () => {
  it('fills the ways, then each allocation evicts exactly one line, clears its PTE and frees its rmap', () => {
    const rig = makeRig({ evict: 'fifo' });
    const { sh, k } = rig;
    const set = 3;
    const pages: Page[] = [];
    for (let i = 0; i < WAYS; i++) {
      pages.push(rig.map(vaIn(set, i)));
      expect(setCounts(sh, set)).toEqual({ free: WAYS - 1 - i, lru: i + 1 });
      expect(rig.stat('nr_pcache_eviction_triggered')).toBe(0);
      rig.expectQuiescent();
    }
    expect(new Set(pages.map((p) => p.line)).size).toBe(WAYS);
    const othersFree = (): number[] =>
      Array.from({ length: NR_SETS }, (_, s) => setCounts(sh, s).free).filter((_, s) => s !== set);

    let live = [...pages];
    for (let n = 1; n <= 2 * WAYS; n++) {
      const victim = live[0]!; // fifo: the oldest allocation
      const [vr] = rmapList(sh, victim.line);
      const freesBefore = rig.stat('nr_pcache_rmap_free');
      const va = vaIn(set, WAYS - 1 + n);
      k.setCurrent(PID, 0, 1, 'test');
      const line = pcacheAlloc(k, va);
      // exactly one eviction, which succeeded
      expect(rig.stat('nr_pcache_eviction_triggered')).toBe(n);
      expect(rig.stat('nr_pcache_eviction_succeed')).toBe(n);
      expect(rig.stat('nr_pcache_eviction_failure_evict')).toBe(0);
      expect(rig.stat('nr_clflush_clean_skipped')).toBe(n);
      expect(rig.stat('nr_clflush')).toBe(0);
      // the victim's line was freed and handed out again; its PTE is none, its rmap back in the pool
      expect(line).toBe(victim.line);
      expect(rig.pte(victim)).toBe(0);
      expect(rig.stat('nr_pcache_rmap_free')).toBe(freesBefore + 1);
      expect(sh.rmap.get(vr!, kRmapFlags)).toBe(0);
      expect(sh.ctl.get(kCtlRmapFreeHead)).toBe(vr! + 1);
      for (const p of live.slice(1)) expect(isMapped(rig, p)).toBe(true);
      expect(setCounts(sh, set)).toEqual({ free: 0, lru: WAYS });
      expect(othersFree()).toEqual(Array(NR_SETS - 1).fill(WAYS));
      // finish the fill; the machine is consistent again
      const p = rig.install(va, line, true, RMAP_FILL_PAGE_REMOTE);
      live = [...live.slice(1), p];
      rig.expectQuiescent();
    }
    expect(rig.stat('nr_pcache_rmap_alloc') - rig.stat('nr_pcache_rmap_free')).toBe(WAYS);
    expect(rmapFreeCount(sh)).toBe(sh.geo.nrRmaps - WAYS);
  });
});

describe('eviction policies', () => {
  const clearAccessed = (rig: Rig, pages: Page[]): void => {
    for (const p of pages) rig.sh.pgtable.and(p.ptep, ~_PAGE_ACCESSED);
  };

  it('fifo evicts the oldest-allocated line, accessed or not', () => {
    const rig = makeRig({ evict: 'fifo' });
    const set = 5;
    const pages = fillSet(rig, set);
    // allocation order is the LRU from its tail (nothing but allocation moves a line on fifo)
    const fromTail: number[] = [];
    for (let e = rig.sh.set.get(set, kSetLruTail); e !== 0; e = rig.sh.meta.get(e - 1, kMetaPrev)) fromTail.push(e - 1);
    expect(fromTail).toEqual(pages.map((p) => p.line));
    expect(rig.pte(pages[0]!) & _PAGE_ACCESSED).not.toBe(0); // mkPte marks it young
    rig.map(vaIn(set, WAYS));
    expect(rig.pte(pages[0]!)).toBe(0);
    for (const p of pages.slice(1)) expect(isMapped(rig, p)).toBe(true);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(1);
    rig.expectQuiescent();
    rig.map(vaIn(set, WAYS + 1));
    expect(rig.pte(pages[1]!)).toBe(0);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(2);
    rig.expectQuiescent();
  });

  it('lru gives a second chance to a line whose PTE is accessed, and clears the bit', () => {
    const rig = makeRig({ evict: 'lru' });
    const set = 6;
    const pages = fillSet(rig, set);
    clearAccessed(rig, pages);
    const [a, b, c] = pages as [Page, Page, Page, Page];
    rig.sh.pgtable.or(a.ptep, _PAGE_ACCESSED); // the oldest line was referenced
    const e = rig.map(vaIn(set, WAYS));
    expect(rig.stat('nr_pcache_eviction_triggered')).toBe(1);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(1);
    expect(isMapped(rig, a)).toBe(true); // survived
    expect(rig.pte(a) & _PAGE_ACCESSED).toBe(0); // and lost its accessed bit
    expect(rig.pte(b)).toBe(0); // the next-oldest went instead
    expect(e.line).toBe(b.line);
    rig.expectQuiescent();
    // nothing referenced now: a was moved to the LRU head, so c is the coldest
    rig.sh.pgtable.and(e.ptep, ~_PAGE_ACCESSED);
    rig.map(vaIn(set, WAYS + 1));
    expect(rig.pte(c)).toBe(0);
    expect(isMapped(rig, a)).toBe(true);
    rig.expectQuiescent();
  });

  it('lru: when every line is young, one pass ages them all and the next evicts the coldest', () => {
    const rig = makeRig({ evict: 'lru' });
    const set = 7;
    const pages = fillSet(rig, set);
    rig.map(vaIn(set, WAYS));
    expect(rig.stat('nr_pcache_eviction_eagain_freeable')).toBe(1);
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(1);
    expect(rig.pte(pages[0]!)).toBe(0);
    for (const p of pages.slice(1)) expect(rig.pte(p) & _PAGE_ACCESSED).toBe(0);
    rig.expectQuiescent();
  });

  /** indices (allocation order) of the lines random eviction picks over `rounds` evictions of one set */
  const randomVictims = (seed: number, rounds: number): number[] => {
    const rig = makeRig({ evict: 'random', seed });
    const set = 2;
    const live = fillSet(rig, set);
    const all = [...live];
    const out: number[] = [];
    for (let n = 0; n < rounds; n++) {
      const p = rig.map(vaIn(set, WAYS + n));
      const gone = live.findIndex((q) => rig.pte(q) === 0);
      expect(gone).toBeGreaterThanOrEqual(0);
      expect(live.filter((q) => rig.pte(q) === 0)).toHaveLength(1);
      out.push(all.indexOf(live[gone]!));
      live.splice(gone, 1, p);
      all.push(p);
    }
    expect(rig.stat('nr_pcache_eviction_succeed')).toBe(rounds);
    rig.expectQuiescent();
    return out;
  };

  it('random with a fixed seed is deterministic', () => {
    const a = randomVictims(42, 6);
    const b = randomVictims(42, 6);
    expect(b).toEqual(a);
    expect(randomVictims(42, 1)).toEqual(a.slice(0, 1)); // the same first victim
    // and the seed matters: not every seed gives the same sequence
    const seqs = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((s) => randomVictims(s, 6).join(',')));
    expect(seqs.size).toBeGreaterThan(1);
  });
});

describe('victim cache', () => {
  it('an evicted clean line lands in the victim cache and refills a new line with its bytes', () => {
    const rig = makeRig({ evict: 'fifo', victim: 4 });
    const { sh, k } = rig;
    const set = 0;
    // a: writable, b: read-only, c, d writable
    const [a, b, c, d] = fillSet(rig, set, (i) => i !== 1) as [Page, Page, Page, Page];
    expect(rig.lineBytes(a.line)).toEqual(pattern(100));

    const e = rig.map(vaIn(set, WAYS), { fill: 200 }); // evicts a
    expect(rig.pte(a)).toBe(0);
    expect(rig.stat('nr_victim_prepare_insert')).toBe(1);
    expect(rig.stat('nr_victim_finish_insert')).toBe(1);
    expect(sh.set.get(set, kSetNrVictims)).toBe(1);
    const entry = Array.from({ length: 4 }, (_, v) => v).find((v) => sh.victim.get(v, kVictimPid) === PID)!;
    expect(sh.victimAddr.get(entry)).toBe(a.va);
    expect(sh.victim.get(entry, kVictimRw)).toBe(1);
    expect(sh.victimData.slice(entry * PAGE_SIZE, (entry + 1) * PAGE_SIZE)).toEqual(pattern(100));
    rig.expectQuiescent();

    // refault a: allocating evicts b (read-only) into the victim cache, then a fills from the victim cache
    k.setCurrent(PID, 0, 1, 'test');
    const la = pcacheAlloc(k, a.va);
    expect(la).toBe(b.line);
    expect(rig.stat('nr_victim_finish_insert')).toBe(2);
    sh.pcdata.fill(0, sh.lineOffset(la), sh.lineOffset(la) + PAGE_SIZE);
    expect(victimTryFill(k, PID, a.va + 123, la)).toBe(1); // writable when evicted
    expect(rig.lineBytes(la)).toEqual(pattern(100));
    expect(rig.stat('nr_victim_hit')).toBe(1);
    expect(sh.set.get(set, kSetNrVictims)).toBe(1); // a's entry dropped after the refill, b's remains
    const a2 = rig.install(a.va, la, true, RMAP_VICTIM_FILL);
    expect(rmapView(sh, rmapList(sh, la)[0]!).caller).toBe(RMAP_VICTIM_FILL);
    rig.expectQuiescent();

    // refault b: evicts c; b comes back read-only with its bytes
    const lb = pcacheAlloc(k, b.va);
    expect(lb).toBe(c.line);
    expect(victimTryFill(k, PID, b.va, lb)).toBe(0);
    expect(rig.lineBytes(lb)).toEqual(pattern(101));
    const b2 = rig.install(b.va, lb, false, RMAP_VICTIM_FILL);
    expect(rig.pte(b2) & _PAGE_RW).toBe(0);
    rig.expectQuiescent();

    // c is in the victim cache now; invalidating its range drops it, and another pid never hits it
    expect(sh.set.get(set, kSetNrVictims)).toBe(1);
    const gen = sh.ctl.load(kCtlVictimGen);
    victimInvalidateRange(k, PID2, c.va, c.va + PAGE_SIZE); // wrong pid: nothing dropped
    expect(rig.stat('nr_victim_invalidate')).toBe(0);
    expect(sh.set.get(set, kSetNrVictims)).toBe(1);
    victimInvalidateRange(k, PID, c.va, c.va + PAGE_SIZE);
    expect(rig.stat('nr_victim_invalidate')).toBe(1);
    expect(sh.ctl.load(kCtlVictimGen)).toBe(gen + 2);
    expect(sh.set.get(set, kSetNrVictims)).toBe(0);
    const lc = pcacheAlloc(k, c.va); // evicts d into the victim cache
    expect(lc).toBe(d.line);
    expect(sh.set.get(set, kSetNrVictims)).toBe(1);
    const lookups = rig.stat('nr_victim_lookup');
    expect(victimTryFill(k, PID, c.va, lc)).toBe(-1); // c is gone
    expect(victimTryFill(k, PID2, d.va, lc)).toBe(-1); // d is PID's, not PID2's
    expect(rig.stat('nr_victim_lookup')).toBe(lookups + 2);
    expect(rig.stat('nr_victim_hit')).toBe(2);
    rig.install(c.va, lc, true, RMAP_FILL_PAGE_REMOTE);
    rig.expectQuiescent();

    // a range covering several entries drops them all
    rig.map(vaIn(set, WAYS + 1)); // evicts e
    expect(sh.set.get(set, kSetNrVictims)).toBe(2);
    victimInvalidateRange(k, PID, BASE, BASE + 2 ** 30);
    expect(rig.stat('nr_victim_invalidate')).toBe(3);
    expect(sh.set.get(set, kSetNrVictims)).toBe(0);
    expect(victimTryFill(k, PID, e.va, a2.line)).toBe(-1); // a miss leaves the line alone
    expect(rig.lineBytes(a2.line)).toEqual(pattern(100));
    rig.expectQuiescent();
  });

  it('a full victim cache replaces its oldest entry', () => {
    const rig = makeRig({ evict: 'fifo', victim: 2 });
    const set = 9;
    const pages = fillSet(rig, set);
    for (let n = 0; n < 3; n++) rig.map(vaIn(set, WAYS + n)); // evicts pages 0, 1, 2
    expect(rig.stat('nr_victim_finish_insert')).toBe(3);
    expect(rig.stat('nr_victim_eviction_triggered')).toBe(1);
    expect(rig.sh.set.get(set, kSetNrVictims)).toBe(2);
    const held = [0, 1].map((v) => rig.sh.victimAddr.get(v)).sort((x, y) => x - y);
    expect(held).toEqual([pages[1]!.va, pages[2]!.va]);
    rig.expectQuiescent();
  });

  it('premise of this file: mkPte never marks a PTE dirty, so no eviction here needs the fabric', () => {
    expect(mkPte(5, true) & _PAGE_DIRTY).toBe(0);
    expect(mkPte(5, false) & _PAGE_DIRTY).toBe(0);
  });
});

describe('rmap bookkeeping', () => {
  it('add/remove rmap maintain mapcount, PC_valid and the rmap pool', () => {
    const rig = makeRig();
    const { sh, k, env } = rig;
    const poolFree = rmapFreeCount(sh);
    expect(poolFree).toBe(sh.geo.nrRmaps);
    const va = vaIn(4, 0);
    const p = rig.map(va);
    const mapcount = (): number => sh.meta.load(p.line, kMetaMapcount);
    const ref = (): number => sh.meta.load(p.line, kMetaRef);
    expect(mapcount()).toBe(1);
    expect(ref()).toBe(1);
    expect(pcacheFlags(sh, p.line) & PC_valid).toBe(PC_valid);
    expect(pcacheFlags(sh, p.line) & PC_locked).toBe(0);
    expect(rig.stat('nr_pcache_rmap_alloc')).toBe(1);
    expect(rmapFreeCount(sh)).toBe(poolFree - 1);
    const [r1] = rmapList(sh, p.line);
    expect(rmapView(sh, r1!)).toMatchObject({
      owner: PID,
      address: va,
      pageTable: p.ptep,
      flags: PCACHE_RMAP_used,
      caller: RMAP_FILL_PAGE_REMOTE,
    });

    // a second mapping of the same line by another process (a shared page): its own rmap, newest first
    k.setCurrent(PID2, 1, 1, 'test');
    const ptep2 = walk(env, 1, va, true);
    getPcache(sh, p.line);
    ptlLock(env, ptep2);
    sh.pgtable.store(ptep2, mkPte(p.line, false));
    expect(pcacheAddRmap(k, p.line, ptep2, va + 77, PID2, RMAP_FILL_PAGE_REMOTE)).toBe(true);
    ptlUnlock(env, ptep2);
    expect(mapcount()).toBe(2);
    const rl = rmapList(sh, p.line);
    expect(rl).toHaveLength(2);
    expect(rl[1]).toBe(r1);
    const r2 = rl[0]!;
    expect(sh.rmap.get(r2, kRmapOwner)).toBe(PID2);
    expect(sh.rmapAddr.get(r2)).toBe(va); // page-aligned
    expect(rig.stat('nr_pcache_rmap_alloc')).toBe(2);
    rig.expectQuiescent();

    // remove pid 9's mapping: mapcount 1, still valid
    ptlLock(env, ptep2);
    sh.pgtable.store(ptep2, 0);
    ptlUnlock(env, ptep2);
    lockPcache(k, p.line);
    expect(pcacheFlags(sh, p.line) & PC_locked).toBe(PC_locked);
    pcacheRemoveRmapLocked(k, p.line, r2);
    unlockPcache(sh, p.line);
    putPcache(k, p.line);
    expect(mapcount()).toBe(1);
    expect(ref()).toBe(1);
    expect(pcacheFlags(sh, p.line) & PC_valid).toBe(PC_valid);
    expect(rmapList(sh, p.line)).toEqual([r1]);
    expect(rig.stat('nr_pcache_rmap_free')).toBe(1);
    rig.expectQuiescent();

    // remove the last one: mapcount 0, PC_valid cleared; the final put frees the line
    ptlLock(env, p.ptep);
    sh.pgtable.store(p.ptep, 0);
    ptlUnlock(env, p.ptep);
    lockPcache(k, p.line);
    pcacheRemoveRmapLocked(k, p.line, r1!);
    expect(mapcount()).toBe(0);
    expect(pcacheFlags(sh, p.line) & PC_valid).toBe(0);
    expect(rmapList(sh, p.line)).toEqual([]);
    unlockPcache(sh, p.line);
    expect(pcacheFlags(sh, p.line)).toBe(0);
    const free = setCounts(sh, 4).free;
    putPcache(k, p.line);
    expect(ref()).toBe(0);
    expect(setCounts(sh, 4)).toEqual({ free: free + 1, lru: 0 });
    // alloc/free counters balance, and the pool is whole again
    expect(rig.stat('nr_pcache_rmap_alloc')).toBe(2);
    expect(rig.stat('nr_pcache_rmap_free')).toBe(2);
    expect(rmapFreeCount(sh)).toBe(poolFree);
    expect(rig.log.filter((l) => l.includes('WARNING') || l.includes('BUG'))).toEqual([]);
    rig.expectQuiescent();
  });
});

describe('rmap_get_pte_locked', () => {
  it('returns the ptep with its PTE lock held when PTE and rmap agree', () => {
    const rig = makeRig();
    const { sh, k, env } = rig;
    const p = rig.map(VA47);
    const [r] = rmapList(sh, p.line);
    lockPcache(k, p.line);
    const ptep = rmapGetPteLocked(k, p.line, r!, 'test');
    expect(ptep).toBe(p.ptep);
    expect(sh.ptl.load(tableOfSlot(ptep))).not.toBe(0); // PTE lock held
    ptlUnlock(env, ptep);
    expect(sh.ptl.load(tableOfSlot(ptep))).toBe(0);
    unlockPcache(sh, p.line);
    expect(rig.violations()).toEqual([]);
    rig.expectQuiescent();
  });

  it('a corrupted rmap->page_table: -1, PTE lock released, and the LegoOS report in the kernel log', () => {
    const rig = makeRig({ printk: 'ring' });
    const { sh, k } = rig;
    const p = rig.map(VA47);
    const [r] = rmapList(sh, p.line);
    const bad = p.ptep + 3;
    sh.rmap.set(r!, kRmapPageTable, bad);
    lockPcache(k, p.line);
    expect(rmapGetPteLocked(k, p.line, r!, 'pcache_try_to_unmap_reserve_one')).toBe(-1);
    expect(sh.ptl.load(tableOfSlot(p.ptep))).toBe(0); // not left locked
    unlockPcache(sh, p.line);

    const log = readPrintkRing(sh);
    const at = log.indexOf('****    ERROR: mismatched PTE and rmap');
    expect(at).toBeGreaterThan(0);
    expect(log[at - 1]).toBe(''); // the block opens with an empty line
    const pfn = `0x${sh.linePfn(p.line).toString(16)}`;
    // the 2018-02 block, then the rmap and pcache_meta dumps, then the machine-readable record
    const end = expectInOrder(log, at, [
      '****    ERROR: mismatched PTE and rmap',
      `****    rmap->owner_process: test uva: 0x7fffe5788000 ptep: ${fmtPtep(p.ptep)}, rmap->page_table: ${fmtPtep(bad)}`,
      `****    pcache_pfn: ${pfn}, pte_pfn: ${pfn}`,
      `rmap:${r} flags:0x${PCACHE_RMAP_used.toString(16)} owner-tgid:${PID} user_va:0x7fffe5788000 ptep:${fmtPtep(bad)} caller: fill_page_remote`,
      'pcache_rmap dumped because: Corrupted RMAP',
      `pcache:${p.line} mapcount:1 refcount:1 flags:(locked|valid) pfn: ${pfn}`,
      'pcache dumped because: Corrupted RMAP',
    ]);
    expect(end).toBeGreaterThan(at); // one block, in order
    // the machine-readable record travels in the report ring, not the log
    const recs = rig.violations();
    expect(recs).toHaveLength(1);
    const rec = recs[0]!;
    expect(rec.kind).toBe('rmap-pte-mismatch');
    expect(rec.pid).toBe(PID);
    expect(rec.addr).toBe('0x7fffe5788000');
    expect(rec.text).toBe('****    ERROR: mismatched PTE and rmap');

    // repaired, the machine is consistent again
    sh.rmap.set(r!, kRmapPageTable, p.ptep);
    const before = log.length;
    const res = checkQuiescent(k, 'test');
    expect(res.violations).toBe(0);
    expect(readPrintkRing(sh).slice(before)).toEqual([]);
  });

  it('a PTE that maps another line: -1 and the other line dumped as "The weirdo"', () => {
    const rig = makeRig();
    const { sh, k, env } = rig;
    const p = rig.map(vaIn(1, 0));
    const q = rig.map(vaIn(1, 1));
    const [r] = rmapList(sh, p.line);
    ptlLock(env, p.ptep);
    sh.pgtable.store(p.ptep, mkPte(q.line, true));
    ptlUnlock(env, p.ptep);
    lockPcache(k, p.line);
    expect(rmapGetPteLocked(k, p.line, r!, 'test')).toBe(-1);
    unlockPcache(sh, p.line);
    expect(sh.ptl.load(tableOfSlot(p.ptep))).toBe(0);
    expect(rig.log).toContain('****    ERROR: mismatched PTE and rmap');
    expect(rig.log).toContain(
      `****    pcache_pfn: 0x${sh.linePfn(p.line).toString(16)}, pte_pfn: 0x${sh.linePfn(q.line).toString(16)}`,
    );
    expect(rig.log).toContain('pcache dumped because: The weirdo');
    expect(rig.violations().map((v) => v.kind)).toEqual(['rmap-pte-mismatch']);
    // (meta flags of the corrupted line are untouched by the report)
    expect(sh.meta.load(p.line, kMetaFlags) & PC_locked).toBe(0);
  });
});
