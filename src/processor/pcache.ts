// The pcache: P's DRAM as a virtually indexed, set-associative cache of remote memory
// (managers/processor/pcache/{alloc,evict,evict_lru,perset,rmap,victim}.c).
//
// Lock order (rmap.c FAT NOTE, 933163e8): P's mmap_sem -> set lock (lru_lock) -> pcache line lock
// -> PTE lock -> leaf locks. The leaf locks take nothing beneath them: the victim cache lock
// (kCtlVictimLock, which also guards kSetNrVictims), the rmap free-list lock and mm->page_table_lock.
// Where a path must go against the order it never blocks, so no cycle can form:
//   - under a PTE lock a line is only trylocked; on failure lockLineUnderPtl (mm.ts) takes a
//     reference, drops the PTE lock, sleeps on the line lock, retakes the PTE lock and re-checks
//     the PTE (pte_same);
//   - eviction holds the line lock and pins each mapping's mm with down_read_trylock
//     (pcacheEvictLine), giving up on the line if one fails;
//   - the walkers that only test and clear the accessed bit (pcacheReferencedTrylock: the LRU
//     second-chance scan, kevict_sweepd) take each PTE lock by trylock (rmap_get_pte_trylock) and
//     skip a PTE whose lock is busy.
// Refcount: one per rmap (the allocation ref becomes the first rmap's), plus transient refs of
// evictors and lock-drop paths.
import { P2M_PCACHE_FLUSH } from '../fabric/opcodes.ts';
import {
  _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_RW, kCtlRmapFreeHead, kCtlRmapFreeLock, kCtlVictimClock, kCtlVictimGen, kCtlVictimLock,
  kEvictEntries, kListFree, kListLru, kListNone, kMetaAllocSeq, kMetaFlags, kMetaList, kMetaMapcount, kMetaNext,
  kMetaPrev, kMetaRef, kMetaRmapHead, kMmFloatStride, kMmMovingEnd, kMmMovingStart, kMmSem, kNodeMemory,
  kRmapCaller, kRmapFlags, kRmapNext, kRmapOwner, kRmapPageTable, kSetAllocSeq, kSetFreeHead, kSetLock,
  kSetLruHead, kSetLruTail, kSetNrEviction, kSetNrFree, kSetNrLru, kSetNrVictims, kSetStatAlloc, kSetStatEviction,
  kSetStatFillVictim, kVictimGen, kVictimPid, kVictimRw, kVictimSet, PC_FLAG_NAMES, PC_locked, PC_reclaim, PC_valid,
  PC_writeback, PCACHE_FLAGS_CHECK_AT_FREE, PCACHE_RMAP_reserved, PCACHE_RMAP_used, RMAP_CALLER_NAMES, type Shared,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { bitLock, bitTrylock, bitUnlock, downReadTrylock, spinLock, spinUnlock, upRead } from '../kernel/sync.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';
import { kernelWarn, reportViolation } from '../kernel/report.ts';
import type { Kern } from './kern.ts';
import { fmtPtep, pteFlagsString, pteLine, pteMapped, ptePfn, ptlLock, ptlTrylock, ptlUnlock, walkNoAlloc } from './pgtable.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from './tlb.ts';
import { kCpuPid, kMmPendingFlush, kMmPgd, kTlbEntries } from '../kernel/layout.ts';

// ------------------------------------------------------------------------------------------------
// Boot-time initialisation (pcache_early_init), run once by the host before any worker starts.

export function pcacheEarlyInit(sh: Shared): void {
  const { nrSets, nrLines } = sh.geo;
  for (let s = 0; s < nrSets; s++) {
    sh.set[sh.setIdx(s, kSetFreeHead)] = 0;
    sh.set[sh.setIdx(s, kSetNrFree)] = 0;
  }
  // Push every line on its set's free list (LIFO), highest way first so way 0 is handed out first.
  for (let line = nrLines - 1; line >= 0; line--) pushFree(sh, sh.setOfLine(line), line);
  // rmap pool free list
  for (let r = sh.geo.nrRmaps - 1; r >= 0; r--) {
    sh.rmap[sh.rmapIdx(r, kRmapNext)] = sh.ctl[kCtlRmapFreeHead]!;
    sh.ctl[kCtlRmapFreeHead] = r + 1;
  }
}

function pushFree(sh: Shared, set: number, line: number): void {
  sh.meta[sh.metaIdx(line, kMetaNext)] = sh.set[sh.setIdx(set, kSetFreeHead)]!;
  sh.meta[sh.metaIdx(line, kMetaPrev)] = 0;
  sh.meta[sh.metaIdx(line, kMetaList)] = kListFree;
  sh.set[sh.setIdx(set, kSetFreeHead)] = line + 1;
  sh.set[sh.setIdx(set, kSetNrFree)]! += 1;
}

function popFree(sh: Shared, set: number): number {
  const head = sh.set[sh.setIdx(set, kSetFreeHead)]!;
  if (head === 0) return -1;
  const line = head - 1;
  sh.set[sh.setIdx(set, kSetFreeHead)] = sh.meta[sh.metaIdx(line, kMetaNext)]!;
  sh.set[sh.setIdx(set, kSetNrFree)]! -= 1;
  sh.meta[sh.metaIdx(line, kMetaList)] = kListNone;
  return line;
}

// LRU list: head = newest, tail = oldest. Under the set lock.
function lruAddHead(sh: Shared, set: number, line: number): void {
  const head = sh.set[sh.setIdx(set, kSetLruHead)]!;
  sh.meta[sh.metaIdx(line, kMetaPrev)] = 0;
  sh.meta[sh.metaIdx(line, kMetaNext)] = head;
  if (head) sh.meta[sh.metaIdx(head - 1, kMetaPrev)] = line + 1;
  else sh.set[sh.setIdx(set, kSetLruTail)] = line + 1;
  sh.set[sh.setIdx(set, kSetLruHead)] = line + 1;
  sh.set[sh.setIdx(set, kSetNrLru)]! += 1;
  sh.meta[sh.metaIdx(line, kMetaList)] = kListLru;
}

function lruDel(sh: Shared, set: number, line: number): void {
  const prev = sh.meta[sh.metaIdx(line, kMetaPrev)]!;
  const next = sh.meta[sh.metaIdx(line, kMetaNext)]!;
  if (prev) sh.meta[sh.metaIdx(prev - 1, kMetaNext)] = next;
  else sh.set[sh.setIdx(set, kSetLruHead)] = next;
  if (next) sh.meta[sh.metaIdx(next - 1, kMetaPrev)] = prev;
  else sh.set[sh.setIdx(set, kSetLruTail)] = prev;
  sh.set[sh.setIdx(set, kSetNrLru)]! -= 1;
  sh.meta[sh.metaIdx(line, kMetaList)] = kListNone;
  sh.meta[sh.metaIdx(line, kMetaPrev)] = 0;
  sh.meta[sh.metaIdx(line, kMetaNext)] = 0;
}

export function lockSet(k: Kern, set: number): void {
  spinLock(k.env, k.sh.set, k.sh.setIdx(set, kSetLock), set);
}
export function unlockSet(k: Kern, set: number): void {
  spinUnlock(k.sh.set, k.sh.setIdx(set, kSetLock));
}

// ------------------------------------------------------------------------------------------------
// Line lock and references.

export const pcacheFlags = (sh: Shared, line: number): number => Atomics.load(sh.meta, sh.metaIdx(line, kMetaFlags));
export const trylockPcache = (sh: Shared, line: number): boolean => bitTrylock(sh.meta, sh.metaIdx(line, kMetaFlags), PC_locked);
export function lockPcache(k: Kern, line: number): void {
  bitLock(k.env, k.sh.meta, k.sh.metaIdx(line, kMetaFlags), PC_locked, line);
}
export function unlockPcache(sh: Shared, line: number): void {
  bitUnlock(sh.meta, sh.metaIdx(line, kMetaFlags), PC_locked);
}
export function getPcache(sh: Shared, line: number): void {
  Atomics.add(sh.meta, sh.metaIdx(line, kMetaRef), 1);
}
/** get_pcache_unless_zero */
function getPcacheUnlessZero(sh: Shared, line: number): boolean {
  const i = sh.metaIdx(line, kMetaRef);
  for (;;) {
    const r = Atomics.load(sh.meta, i);
    if (r === 0) return false;
    if (Atomics.compareExchange(sh.meta, i, r, r + 1) === r) return true;
  }
}
/** put_pcache: drop `n` references; the last one frees the line (__put_pcache). */
export function putPcache(k: Kern, line: number, n = 1): void {
  const old = Atomics.sub(k.sh.meta, k.sh.metaIdx(line, kMetaRef), n);
  if (old === n) freePcache(k, line);
  else if (old < n) kernelWarn(k, { fn: 'put_pcache', file: 'managers/processor/pcache/alloc.c' }, `pcache line ${line}: refcount underflow (${old} - ${n})`);
}

/** __put_pcache: detach from LRU and return to the set's free list, checking the free-line state. */
function freePcache(k: Kern, line: number): void {
  const sh = k.sh;
  const set = sh.setOfLine(line);
  lockSet(k, set);
  if (sh.meta[sh.metaIdx(line, kMetaList)] === kListLru) lruDel(sh, set, line);
  const flags = pcacheFlags(sh, line) & ~PC_locked;
  const mapcount = Atomics.load(sh.meta, sh.metaIdx(line, kMetaMapcount));
  if (mapcount !== 0 || (flags & PCACHE_FLAGS_CHECK_AT_FREE) !== 0 || sh.meta[sh.metaIdx(line, kMetaRmapHead)] !== 0) {
    reportViolation(k, 'free-line-state', {
      line,
      text: `BUG: Bad pcache state in process [${k.comm}][pid:${k.pid}]\npcache:${line} mapcount:${mapcount} flags:(${pcFlagsString(flags)})`,
    });
  }
  Atomics.store(sh.meta, sh.metaIdx(line, kMetaFlags), 0);
  pushFree(sh, set, line);
  unlockSet(k, set);
}

export function pcFlagsString(f: number): string {
  return PC_FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join('|');
}

// ------------------------------------------------------------------------------------------------
// Allocation (pcache_alloc).

const kAllocTimeoutMs = 30_000; // sysctl_pcache_alloc_timeout_sec

/** Returns a line of `va`'s set with ref=1, mapcount=0, on the LRU head, not Valid; -1 on failure. */
export function pcacheAlloc(k: Kern, va: number, maxEvictTries = Infinity): number {
  const sh = k.sh;
  const set = sh.setOfAddr(va);
  const t0 = k.env.nowMs();
  let tries = 0;
  for (;;) {
    lockSet(k, set);
    const line = popFree(sh, set);
    if (line >= 0) {
      Atomics.store(sh.meta, sh.metaIdx(line, kMetaFlags), 0);
      Atomics.store(sh.meta, sh.metaIdx(line, kMetaRef), 1);
      Atomics.store(sh.meta, sh.metaIdx(line, kMetaMapcount), 0);
      sh.meta[sh.metaIdx(line, kMetaRmapHead)] = 0;
      sh.meta[sh.metaIdx(line, kMetaAllocSeq)] = sh.set[sh.setIdx(set, kSetAllocSeq)]! + 1;
      sh.set[sh.setIdx(set, kSetAllocSeq)]! += 1;
      lruAddHead(sh, set, line);
      Atomics.add(sh.set, sh.setIdx(set, kSetStatAlloc), 1);
      unlockSet(k, set);
      if (k.env.config.check !== 'none') checkLineNotInTlbs(k, line, va);
      return line;
    }
    unlockSet(k, set);
    const r = pcacheEvictLine(k, set);
    if (r !== EVICT_SUCCEED) {
      if (tries + 1 >= maxEvictTries) return -1;
      if (k.env.nowMs() - t0 > kAllocTimeoutMs) {
        k.env.printk('error', `# CPU${k.cpu} PID${k.pid} Abort pcache alloc (${Math.round(k.env.nowMs() - t0)}ms) addr:0x${va.toString(16)} pset:${set}`);
        return -1;
      }
      // Every way is busy (being filled, evicted or flushed): let the holders make progress.
      if (++tries > 4) { k.env.irq(); Atomics.wait(sh.set, sh.setIdx(set, kSetLock), -1, 0.2); }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// rmap (struct pcache_rmap): entries from a pool, linked per line newest first, under the line lock.

function rmapAlloc(k: Kern): number {
  const sh = k.sh;
  spinLock(k.env, sh.ctl, kCtlRmapFreeLock);
  const head = sh.ctl[kCtlRmapFreeHead]!;
  if (head === 0) { spinUnlock(sh.ctl, kCtlRmapFreeLock); return -1; }
  sh.ctl[kCtlRmapFreeHead] = sh.rmap[sh.rmapIdx(head - 1, kRmapNext)]!;
  spinUnlock(sh.ctl, kCtlRmapFreeLock);
  k.env.stat(S.nr_pcache_rmap_alloc);
  return head - 1;
}

function rmapFree(k: Kern, r: number): void {
  const sh = k.sh;
  sh.rmap[sh.rmapIdx(r, kRmapFlags)] = 0;
  spinLock(k.env, sh.ctl, kCtlRmapFreeLock);
  sh.rmap[sh.rmapIdx(r, kRmapNext)] = sh.ctl[kCtlRmapFreeHead]!;
  sh.ctl[kCtlRmapFreeHead] = r + 1;
  spinUnlock(sh.ctl, kCtlRmapFreeLock);
  k.env.stat(S.nr_pcache_rmap_free);
}

export interface RmapView { r: number; owner: number; address: number; pageTable: number; flags: number; caller: number }
export function rmapView(sh: Shared, r: number): RmapView {
  return {
    r,
    owner: sh.rmap[sh.rmapIdx(r, kRmapOwner)]!,
    address: sh.rmapAddr[r]!,
    pageTable: sh.rmap[sh.rmapIdx(r, kRmapPageTable)]!,
    flags: sh.rmap[sh.rmapIdx(r, kRmapFlags)]!,
    caller: sh.rmap[sh.rmapIdx(r, kRmapCaller)]!,
  };
}
/** rmap indices of a line (caller holds the line lock, or the world is stopped). */
export function rmapList(sh: Shared, line: number): number[] {
  const out: number[] = [];
  for (let e = sh.meta[sh.metaIdx(line, kMetaRmapHead)]!; e !== 0; e = sh.rmap[sh.rmapIdx(e - 1, kRmapNext)]!) out.push(e - 1);
  return out;
}

/**
 * Take an rmap from the pool before anything becomes visible: a fill (or the mremap slowpath) that
 * only learned of an empty pool after setting its PTE would have to retract a PTE another CPU may
 * already have walked into its TLB, and free the line without a flush. -1 if the pool is empty.
 */
export function rmapReserve(k: Kern): number {
  return rmapAlloc(k);
}
/** Give back an rmap taken by rmapReserve that was never linked (the fill lost a race). */
export function rmapUnreserve(k: Kern, r: number): void {
  rmapFree(k, r);
}

/**
 * pcache_add_rmap: the line must not be locked on entry; the caller holds the PTE lock of `ptep`.
 * Sets PC_valid. With `reserved` (from rmapReserve) it cannot fail; without, it returns false if the
 * rmap pool is exhausted.
 */
export function pcacheAddRmap(k: Kern, line: number, ptep: number, address: number, owner: number, caller: number, reserved = -1): boolean {
  const sh = k.sh;
  lockPcache(k, line);
  const r = reserved >= 0 ? reserved : rmapAlloc(k);
  if (r < 0) { unlockPcache(sh, line); return false; }
  sh.rmap[sh.rmapIdx(r, kRmapFlags)] = PCACHE_RMAP_used;
  sh.rmap[sh.rmapIdx(r, kRmapOwner)] = owner;
  sh.rmap[sh.rmapIdx(r, kRmapPageTable)] = ptep;
  sh.rmap[sh.rmapIdx(r, kRmapCaller)] = caller;
  sh.rmapAddr[r] = address - (address % PAGE_SIZE);
  sh.rmap[sh.rmapIdx(r, kRmapNext)] = sh.meta[sh.metaIdx(line, kMetaRmapHead)]!;
  sh.meta[sh.metaIdx(line, kMetaRmapHead)] = r + 1;
  Atomics.add(sh.meta, sh.metaIdx(line, kMetaMapcount), 1);
  Atomics.or(sh.meta, sh.metaIdx(line, kMetaFlags), PC_valid);
  unlockPcache(sh, line);
  return true;
}

/** __pcache_remove_rmap (line locked): unlink and free; clears PC_valid when mapcount drops to 0. */
export function pcacheRemoveRmapLocked(k: Kern, line: number, r: number): void {
  const sh = k.sh;
  let prev = -1;
  for (let e = sh.meta[sh.metaIdx(line, kMetaRmapHead)]!; e !== 0; e = sh.rmap[sh.rmapIdx(e - 1, kRmapNext)]!) {
    if (e - 1 === r) {
      const next = sh.rmap[sh.rmapIdx(r, kRmapNext)]!;
      if (prev < 0) sh.meta[sh.metaIdx(line, kMetaRmapHead)] = next;
      else sh.rmap[sh.rmapIdx(prev, kRmapNext)] = next;
      break;
    }
    prev = e - 1;
  }
  rmapFree(k, r);
  if (Atomics.sub(sh.meta, sh.metaIdx(line, kMetaMapcount), 1) === 1) Atomics.and(sh.meta, sh.metaIdx(line, kMetaFlags), ~PC_valid);
}

/** Find the rmap of (ptep, owner, address) on a locked line, -1 if none. */
export function findRmap(sh: Shared, line: number, ptep: number, owner: number, address: number): number {
  for (const r of rmapList(sh, line)) {
    if (sh.rmap[sh.rmapIdx(r, kRmapPageTable)] === ptep && sh.rmap[sh.rmapIdx(r, kRmapOwner)] === owner && sh.rmapAddr[r] === address) return r;
  }
  return -1;
}

/** Update an rmap to a new (ptep, address) — the mremap fastpath, line locked. */
export function rmapRepoint(sh: Shared, r: number, ptep: number, address: number): void {
  sh.rmap[sh.rmapIdx(r, kRmapPageTable)] = ptep;
  sh.rmapAddr[r] = address;
}

// ------------------------------------------------------------------------------------------------
// rmap_get_pte_locked and report_bad_rmap (rmap.c). Every rmap walker goes through here.

/**
 * Walk the owner's page table at rmap->address; the slot must be rmap->page_table and the PTE must
 * map this line. The fixed kernel checks under the PTE lock (and the line lock, held by the caller),
 * where the PTE of a mapped line cannot change, so a report is never a transient state.
 * Returns the ptep with its PTE lock held, or -1 (reported) if they disagree.
 */
export function rmapGetPteLocked(k: Kern, line: number, r: number, caller: string): number {
  const sh = k.sh;
  const v = rmapView(sh, r);
  const slot = k.mmSlotOf(v.owner);
  const ptep = slot < 0 ? -1 : walkNoAlloc(sh, sh.mm[sh.mmIdx(slot, kMmPgd)]!, v.address);
  if (ptep >= 0) ptlLock(k.env, ptep);
  const pte = ptep >= 0 ? Atomics.load(sh.pgtable, ptep) : 0;
  if (ptep === v.pageTable && pteMapped(pte) && pteLine(pte) === line) return ptep;
  if (ptep >= 0) ptlUnlock(k.env, ptep);
  reportBadRmap(k, line, r, ptep, pte, caller);
  return -1;
}

/** Full reports per context before the rest are only counted (LegoOS HEAD prints one per boot). */
const kBadRmapReports = 16;
const kBadRmapRecords = 256;
let badRmapReports = 0;

export function reportBadRmap(k: Kern, line: number, r: number, ptep: number, pte: number, caller: string): void {
  const sh = k.sh;
  const v = rmapView(sh, r);
  const pcachePfn = sh.linePfn(line);
  const ptePfnV = ptePfn(pte);
  const hex = (n: number) => `0x${n.toString(16)}`;
  const sameSlot = ptep === v.pageTable ? '==' : '!=';
  const samePfn = pcachePfn === ptePfnV ? '==' : '!=';
  const facts = badRmapFacts(k, line, v, ptep, pte, caller);
  const details = { line, pid: v.owner, addr: v.address, ptep, rmapPageTable: v.pageTable, pcachePfn, ptePfn: ptePfnV, caller, facts };
  if (++badRmapReports > kBadRmapReports) {
    // Past the first reports only a one-line record each (still collected), then nothing.
    if (badRmapReports === kBadRmapReports + 1) k.env.printk('error', `report_bad_rmap: ${k.env.name}: further reports shortened`);
    if (badRmapReports <= kBadRmapRecords) {
      reportViolation(k, 'rmap-pte-mismatch', { ...details, text: `mismatched PTE and rmap: pcache:${line} uva:${hex(v.address)} [pte ${sameSlot} rmap->page_table] && [pcache_pfn ${samePfn} pte_pfn] caller: ${caller}` });
    }
    return;
  }
  // LegoOS's two formats (legoos-facts §5.4): the 2018-02 block (a873eba6) and HEAD's.
  const lines = k.env.config.rmapReportFormat === 'head'
    ? [
        '',
        '****    ERROR:',
        `****    current: ${k.pid}:${k.comm || k.env.name} caller: ${caller}`,
        `****    [pte ${sameSlot} rmap->page_table] && [pcache_pfn ${samePfn} pte_pfn]`,
        `****    rmap->owner_process: ${commOf(k, v.owner)} rmap->address: ${hex(v.address)} rmap->page_table: ${fmtPtep(v.pageTable)}`,
        `****    address: ${hex(v.address)} ptep: ${fmtPtep(ptep)}`,
        `****    pcache_pfn: ${hex(pcachePfn)}, pte_pfn: ${hex(ptePfnV)}`,
        '',
      ]
    : [
        '',
        '****    ERROR: mismatched PTE and rmap',
        `****    rmap->owner_process: ${commOf(k, v.owner)} uva: ${hex(v.address)} ptep: ${fmtPtep(ptep)}, rmap->page_table: ${fmtPtep(v.pageTable)}`,
        `****    pcache_pfn: ${hex(pcachePfn)}, pte_pfn: ${hex(ptePfnV)}`,
        `****    current: ${k.pid}:${k.comm || k.env.name} caller: ${caller}`,
        `****    [pte ${sameSlot} rmap->page_table] && [pcache_pfn ${samePfn} pte_pfn]`,
        '',
      ];
  lines.push(dumpRmap(sh, r, 'Corrupted RMAP'), dumpPcacheMeta(sh, line, 'Corrupted RMAP'));
  if (pteMapped(pte) && pteLine(pte) !== line) lines.push(dumpPcacheMeta(sh, pteLine(pte), 'The weirdo'));
  reportViolation(k, 'rmap-pte-mismatch', {
    line, pid: v.owner, addr: v.address, ptep, rmapPageTable: v.pageTable, pcachePfn, ptePfn: ptePfnV, facts, text: lines.join('\n'),
  });
}

/**
 * The signature facts of a mismatch (src/racelab/bugzoo.ts compares them), read from the state the
 * walker holds locked: whether the walked slot is the rmap's, what the PTE maps (none, this line,
 * another line), whether the owner's mm is inside move_page_tables for that address right now, and
 * which walker found it.
 */
function badRmapFacts(k: Kern, line: number, v: RmapView, ptep: number, pte: number, caller: string): string[] {
  const slot = k.mmSlotOf(v.owner);
  const during = slot >= 0 && movingRangeCovers(k.sh, slot, v.address) ? 'mremap' : 'none';
  const what = !pteMapped(pte) ? 'none' : pteLine(pte) === line ? 'this-line' : 'other-line';
  return [`slot=${ptep === v.pageTable ? 'same' : 'differs'}`, `pte=${what}`, `during=${during}`, `by=${caller.split(' ')[0]}`];
}

const commOf = (k: Kern, pid: number): string => (pid === k.pid && k.comm ? k.comm : `pid${pid}`);

export function dumpRmap(sh: Shared, r: number, why: string): string {
  const v = rmapView(sh, r);
  return `rmap:${r} flags:0x${v.flags.toString(16)} owner-tgid:${v.owner} user_va:0x${v.address.toString(16)} ptep:${fmtPtep(v.pageTable)} caller: ${RMAP_CALLER_NAMES[v.caller] ?? v.caller}\npcache_rmap dumped because: ${why}`;
}
export function dumpPcacheMeta(sh: Shared, line: number, why: string): string {
  const f = pcacheFlags(sh, line);
  return `pcache:${line} mapcount:${Atomics.load(sh.meta, sh.metaIdx(line, kMetaMapcount))} refcount:${Atomics.load(sh.meta, sh.metaIdx(line, kMetaRef))} flags:(${pcFlagsString(f)}) pfn: 0x${sh.linePfn(line).toString(16)}\npcache dumped because: ${why}`;
}
export function dumpPte(pte: number): string {
  return `pte (0x${(pte >>> 0).toString(16)}) pfn:0x${ptePfn(pte).toString(16)} flags:(${pteFlagsString(pte)})`;
}

// ------------------------------------------------------------------------------------------------
// Per-set eviction list (perset.c): while a dirty evicted line is on its way to M, a fault on
// (tgid, page) must not fetch the stale copy from M; it waits while an entry exists.

function psetAddEviction(k: Kern, set: number, pid: number, address: number): number {
  const sh = k.sh;
  for (;;) {
    lockSet(k, set);
    for (let e = 0; e < kEvictEntries; e++) {
      const pi = sh.setEvictPidIdx(set, e);
      if (sh.set[pi] === 0) {
        sh.setEvictAddr[sh.setEvictAddrIdx(set, e)] = address;
        Atomics.store(sh.set, pi, pid);
        sh.set[sh.setIdx(set, kSetNrEviction)]! += 1;
        unlockSet(k, set);
        return e;
      }
    }
    unlockSet(k, set);
    k.env.irq();
    Atomics.wait(sh.set, sh.setIdx(set, kSetNrEviction), kEvictEntries, 0.2);
  }
}

function psetRemoveEviction(k: Kern, set: number, e: number): void {
  const sh = k.sh;
  lockSet(k, set);
  Atomics.store(sh.set, sh.setEvictPidIdx(set, e), 0);
  sh.set[sh.setIdx(set, kSetNrEviction)]! -= 1;
  unlockSet(k, set);
  Atomics.notify(sh.set, sh.setEvictPidIdx(set, e));
  Atomics.notify(sh.set, sh.setIdx(set, kSetNrEviction));
}

/** pset_find_eviction: is (pid, page of va) being written back? Lockless quick check first. */
export function psetFindEviction(sh: Shared, set: number, pid: number, va: number): number {
  if (Atomics.load(sh.set, sh.setIdx(set, kSetNrEviction)) === 0) return -1;
  const page = va - (va % PAGE_SIZE);
  for (let e = 0; e < kEvictEntries; e++) {
    if (Atomics.load(sh.set, sh.setEvictPidIdx(set, e)) === pid && sh.setEvictAddr[sh.setEvictAddrIdx(set, e)] === page) return e;
  }
  return -1;
}

// ------------------------------------------------------------------------------------------------
// Eviction (pcache_evict_line, evict_find_line_{lru,fifo,random}, evict_line_perset_list).

export const EVICT_SUCCEED = 0;
export const EVICT_EAGAIN_FREEABLE = 1;
export const EVICT_EAGAIN_CONCURRENT = 2;
export const EVICT_FAILURE_FIND = 3;
export const EVICT_FAILURE_EVICT = 4;

/** Is the PTE of this rmap young? Clears the accessed bit (pcache_referenced_trylock). Line locked. */
export function pcacheReferencedTrylock(k: Kern, line: number): boolean {
  const sh = k.sh;
  let young = false;
  for (const r of rmapList(sh, line)) {
    const v = rmapView(sh, r);
    if (v.pageTable < 0) continue;
    if (!ptlTrylock(k.env, v.pageTable)) continue;
    // rmap_get_pte_trylock's two comparisons, under the line lock (held by the caller) and the PTE
    // lock: where every fixed path changes a PTE and its rmap together, so a mismatch is never transient.
    const slot = k.mmSlotOf(v.owner);
    const ptep = slot < 0 ? -1 : walkNoAlloc(sh, sh.mm[sh.mmIdx(slot, kMmPgd)]!, v.address);
    const pte = Atomics.load(sh.pgtable, v.pageTable);
    if (slot >= 0 && (ptep !== v.pageTable || !pteMapped(pte) || pteLine(pte) !== line)) {
      const shown = ptep >= 0 ? Atomics.load(sh.pgtable, ptep) : 0;
      ptlUnlock(k.env, v.pageTable);
      reportBadRmap(k, line, r, ptep, shown, 'pcache_referenced_trylock_one');
      continue;
    }
    if (pteMapped(pte) && pteLine(pte) === line && (pte & _PAGE_ACCESSED)) {
      Atomics.and(sh.pgtable, v.pageTable, ~_PAGE_ACCESSED);
      young = true;
    }
    ptlUnlock(k.env, v.pageTable);
  }
  return young;
}

/**
 * Stale-TLB detector (--check end|syscall), at allocation: the line being handed out must not be
 * mapped by any CPU's TLB. On the fixed kernel a line is freed only after the TLB flush of every
 * mapping of it completed (each target acked), and CPUs that left the mm flushed everything, so a hit
 * here means a shootdown was skipped or the line was freed before its flush.
 */
function checkLineNotInTlbs(k: Kern, line: number, va: number): void {
  const sh = k.sh;
  for (let c = 0; c < sh.geo.ctx.cpus; c++) {
    for (let e = 0; e < kTlbEntries; e++) {
      const i = sh.tlbIdx(c, e);
      const vpn = sh.tlbVpn[i]!;
      if (vpn < 0 || Atomics.load(sh.tlbVal, i) >>> 12 !== line || sh.tlbVpn[i] !== vpn) continue;
      // Was the flush that will remove this entry still on its way (the line was freed before its
      // flush: free-before-flush), or had it completed and left the entry (a shootdown that never
      // reached this CPU: tlb-shootdown-skip)? The IPI removes the entry before the gather ends, so
      // read the pending count, then the entry again: pending, or gone since, means "before its flush".
      const slot = k.mmSlotOf(Atomics.load(sh.ctl, sh.cpuIdx(c, kCpuPid)));
      const pending = slot >= 0 && Atomics.load(sh.mm, sh.mmIdx(slot, kMmPendingFlush)) > 0;
      const still = sh.tlbVpn[i] === vpn && Atomics.load(sh.tlbVal, i) >>> 12 === line;
      reportViolation(k, 'stale-tlb', {
        line,
        addr: vpn * PAGE_SIZE,
        cpu: c,
        facts: ['at=alloc', `flush=${pending || !still ? 'pending' : 'done'}`],
        text: `stale TLB: CPU#${c} still translates 0x${(vpn * PAGE_SIZE).toString(16)} to pcache line ${line} (pfn 0x${sh.linePfn(line).toString(16)}), which is free and being reallocated for 0x${(va - (va % PAGE_SIZE)).toString(16)} by ${k.env.name} (pid ${k.pid})`,
      });
      return;
    }
  }
}

/**
 * evict_find_line: pick a victim line in `set`. Returns it Locked, Reclaim, off the LRU, ref+1, or -1.
 * Candidates must be Valid (a line inside common_do_fill_page is not), trylockable, not Writeback, and
 * have no users beyond their mappings (ref <= 2 after our get).
 */
function evictFindLine(k: Kern, set: number): number {
  const sh = k.sh;
  const policy = k.env.config.evict;
  lockSet(k, set);
  const cands: number[] = [];
  for (let e = sh.set[sh.setIdx(set, kSetLruTail)]!; e !== 0; e = sh.meta[sh.metaIdx(e - 1, kMetaPrev)]!) cands.push(e - 1);
  if (policy === 'random') {
    for (let i = cands.length - 1; i > 0; i--) {
      const j = Math.floor(k.random() * (i + 1));
      [cands[i], cands[j]] = [cands[j]!, cands[i]!];
    }
  }
  let picked = -1;
  const deferredPuts: number[] = [];
  for (const line of cands) {
    if (!getPcacheUnlessZero(sh, line)) continue;
    const flags = pcacheFlags(sh, line);
    // Our reference may turn out to be the last one (a fault that lost its pte_same race puts its
    // fresh line meanwhile): drop it with put_pcache semantics, outside the set lock, or the line
    // leaks with ref 0 and the set shrinks forever.
    if ((flags & PC_valid) === 0 || (flags & PC_writeback) !== 0 || !trylockPcache(sh, line)) {
      if (Atomics.sub(sh.meta, sh.metaIdx(line, kMetaRef), 1) === 1) deferredPuts.push(line);
      continue;
    }
    if (Atomics.load(sh.meta, sh.metaIdx(line, kMetaRef)) > Atomics.load(sh.meta, sh.metaIdx(line, kMetaMapcount)) + 1) {
      unlockPcache(sh, line);
      if (Atomics.sub(sh.meta, sh.metaIdx(line, kMetaRef), 1) === 1) deferredPuts.push(line);
      continue;
    }
    // lru: second chance for lines whose PTE was referenced since the last scan (the sweep's aging,
    // done inline). fifo: allocation order, no second chance. random: shuffled candidates.
    if (policy === 'lru' && picked < 0 && cands.length > 1 && pcacheReferencedTrylock(k, line)) {
      lruDel(sh, set, line);
      lruAddHead(sh, set, line);
      unlockPcache(sh, line);
      if (Atomics.sub(sh.meta, sh.metaIdx(line, kMetaRef), 1) === 1) deferredPuts.push(line);
      continue;
    }
    lruDel(sh, set, line);
    Atomics.or(sh.meta, sh.metaIdx(line, kMetaFlags), PC_reclaim);
    picked = line;
    break;
  }
  unlockSet(k, set);
  for (const line of deferredPuts) freePcache(k, line);
  return picked;
}

/**
 * pcache_evict_line with the per-set eviction list mechanism (evict_line_perset_list):
 *   add eviction entries -> for each rmap: lock PTE (re-checked), clear it, flush TLBs, reserve the
 *   rmap -> write back to M if any PTE was dirty -> victim cache -> free the rmaps -> remove entries
 *   -> freeze the refcount and free the line.
 * The owner mm's P-side mmap_sem is read-trylocked for the whole write-back, so an mremap/munmap of
 * that mm (which holds it for write while M moves the VMA) never races with a write-back to an
 * address M no longer maps (that would lose the dirty data).
 */
export function pcacheEvictLine(k: Kern, set: number): number {
  const sh = k.sh;
  k.env.stat(S.nr_pcache_eviction_triggered);
  const line = evictFindLine(k, set);
  if (line < 0) { k.env.stat(S.nr_pcache_eviction_eagain_freeable); return EVICT_EAGAIN_FREEABLE; }
  const rmaps = rmapList(sh, line);
  const nrMapped = Atomics.load(sh.meta, sh.metaIdx(line, kMetaMapcount));
  // Pin the owners' address spaces (reader-trylock; skip the line if an address-space change runs,
  // or if it is the very range this CPU is moving in mremap).
  const pinned: number[] = [];
  let ok = nrMapped > 0;
  for (const r of rmaps) {
    const v = rmapView(sh, r);
    const slot = k.mmSlotOf(v.owner);
    if (slot < 0) { ok = false; break; }
    if (slot === k.mmSlot && movingRangeCovers(sh, slot, v.address)) { ok = false; break; }
    if (pinned.includes(slot)) continue;
    // Our own mm while we hold its mmap_sem for write (mremap slowpath allocating in the new set):
    // M and P agree on every address outside the range being moved, so the write-back is safe.
    if (slot === k.mmSlot && k.mmapWriteHeld) continue;
    if (!downReadTrylock(sh.mm, sh.mmIdx(slot, kMmSem))) { ok = false; break; }
    pinned.push(slot);
  }
  if (!ok) {
    for (const s of pinned) upRead(sh.mm, sh.mmIdx(s, kMmSem));
    lockSet(k, set);
    Atomics.and(sh.meta, sh.metaIdx(line, kMetaFlags), ~PC_reclaim);
    lruAddHead(sh, set, line);
    unlockSet(k, set);
    unlockPcache(sh, line);
    putPcache(k, line);
    k.env.stat(S.nr_pcache_eviction_failure_evict);
    return EVICT_FAILURE_EVICT;
  }
  const gen = Atomics.load(sh.ctl, kCtlVictimGen);
  const entries = rmaps.map((r) => psetAddEviction(k, set, sh.rmap[sh.rmapIdx(r, kRmapOwner)]!, sh.rmapAddr[r]!));
  k.env.sched('evict:entries_added');
  // pcache_try_to_unmap_reserve_check_dirty
  let dirty = false;
  let writable = false;
  for (const r of rmaps) {
    const v = rmapView(sh, r);
    const ownerSlot = k.mmSlotOf(v.owner);
    tlbGatherStart(k, ownerSlot);
    const ptep = rmapGetPteLocked(k, line, r, 'pcache_try_to_unmap_reserve_one');
    if (ptep < 0) { tlbGatherEnd(k, ownerSlot); continue; }
    const old = Atomics.exchange(sh.pgtable, ptep, 0);
    if (old & _PAGE_DIRTY) dirty = true;
    if (old & _PAGE_RW) writable = true;
    ptlUnlock(k.env, ptep);
    k.env.sched('evict:pte_cleared');
    flushTlbMmRange(k, v.owner, ownerSlot, v.address, v.address + PAGE_SIZE);
    tlbGatherEnd(k, ownerSlot);
    sh.rmap[sh.rmapIdx(r, kRmapFlags)]! |= PCACHE_RMAP_reserved;
  }
  // Write back (pcache_flush_one): one P2M_PCACHE_FLUSH per mapping.
  const data = sh.pcdata.subarray(sh.lineOffset(line), sh.lineOffset(line) + PAGE_SIZE);
  if (dirty) {
    Atomics.or(sh.meta, sh.metaIdx(line, kMetaFlags), PC_writeback);
    for (const r of rmaps) {
      const v = rmapView(sh, r);
      const rep = k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: v.owner, vaddr: v.address, page: data });
      k.env.stat(rep.status < 0 ? S.nr_clflush_fail : S.nr_clflush);
    }
    Atomics.and(sh.meta, sh.metaIdx(line, kMetaFlags), ~PC_writeback);
  } else k.env.stat(S.nr_clflush_clean_skipped);
  if (sh.geo.victims > 0 && rmaps.length === 1) victimInsert(k, set, rmapView(sh, rmaps[0]!).owner, rmapView(sh, rmaps[0]!).address, data, gen, writable);
  // pcache_free_reserved_rmap
  for (const r of rmaps) pcacheRemoveRmapLocked(k, line, r);
  for (const e of entries) psetRemoveEviction(k, set, e);
  for (const s of pinned) upRead(sh.mm, sh.mmIdx(s, kMmSem));
  // pcache_ref_freeze(pcm, nr_mapped + 1): the mappings' refs and ours.
  Atomics.and(sh.meta, sh.metaIdx(line, kMetaFlags), ~PC_reclaim);
  const refIdx = sh.metaIdx(line, kMetaRef);
  if (Atomics.compareExchange(sh.meta, refIdx, nrMapped + 1, 0) === nrMapped + 1) {
    unlockPcache(sh, line);
    freePcache(k, line);
    Atomics.add(sh.set, sh.setIdx(set, kSetStatEviction), 1);
    k.env.stat(S.nr_pcache_eviction_succeed);
    return EVICT_SUCCEED;
  }
  // Concurrent users hold references: they free it on their last put.
  unlockPcache(sh, line);
  putPcache(k, line, nrMapped + 1);
  k.env.stat(S.nr_pcache_eviction_eagain_concurrent);
  return EVICT_EAGAIN_CONCURRENT;
}

function movingRangeCovers(sh: Shared, slot: number, va: number): boolean {
  const s = sh.mmF[slot * kMmFloatStride + kMmMovingStart]!;
  const e = sh.mmF[slot * kMmFloatStride + kMmMovingEnd]!;
  return s >= 0 && va >= s && va < e;
}

// ------------------------------------------------------------------------------------------------
// Victim cache (victim.c), simplified: entries hold (pid, page) copies of lines whose data M already
// has (written back before insertion), so dropping or replacing one is always safe. One lock guards
// the whole cache (usable_victims_lock). An address-space generation, bumped under that lock by every
// unmap/move, keeps an eviction that started before an munmap from inserting a now-stale copy.

function victimInsert(k: Kern, set: number, pid: number, address: number, data: Uint8Array, gen: number, writable: boolean): void {
  const sh = k.sh;
  spinLock(k.env, sh.ctl, kCtlVictimLock);
  if (Atomics.load(sh.ctl, kCtlVictimGen) !== gen) { spinUnlock(sh.ctl, kCtlVictimLock); return; }
  k.env.stat(S.nr_victim_prepare_insert);
  let v = -1;
  for (let i = 0; i < sh.geo.victims; i++) if (sh.victim[sh.victimIdx(i, kVictimPid)] === 0) { v = i; break; }
  if (v < 0) {
    // FIFO replacement (find_victim_to_evict); every entry is already flushed.
    v = sh.ctl[kCtlVictimClock]! % sh.geo.victims;
    sh.ctl[kCtlVictimClock] = v + 1;
    victimDrop(sh, v);
    k.env.stat(S.nr_victim_eviction_triggered);
    k.env.stat(S.nr_victim_eviction_succeed);
  }
  sh.victim[sh.victimIdx(v, kVictimPid)] = pid;
  sh.victim[sh.victimIdx(v, kVictimSet)] = set;
  sh.victim[sh.victimIdx(v, kVictimGen)] = gen;
  sh.victim[sh.victimIdx(v, kVictimRw)] = writable ? 1 : 0;
  sh.victimAddr[v] = address;
  sh.victimData.set(data, v * PAGE_SIZE);
  sh.set[sh.setIdx(set, kSetNrVictims)]! += 1;
  k.env.stat(S.nr_victim_finish_insert);
  spinUnlock(sh.ctl, kCtlVictimLock);
}

function victimDrop(sh: Shared, v: number): void {
  const set = sh.victim[sh.victimIdx(v, kVictimSet)]!;
  sh.set[sh.setIdx(set, kSetNrVictims)]! -= 1;
  sh.victim[sh.victimIdx(v, kVictimPid)] = 0;
}

/**
 * victim_try_fill_pcache: on a miss, look for (pid, page) in the victim cache; on a hit copy it into
 * `line` and drop the entry (LegoOS drops a victim after its refill). Returns -1 on a miss, else
 * 1 if the page was mapped writable when evicted, 0 if read-only (mprotect invalidates entries).
 */
export function victimTryFill(k: Kern, pid: number, va: number, line: number): number {
  const sh = k.sh;
  if (sh.geo.victims === 0) return -1;
  const set = sh.setOfAddr(va);
  if (Atomics.load(sh.set, sh.setIdx(set, kSetNrVictims)) === 0) return -1;
  const page = va - (va % PAGE_SIZE);
  k.env.stat(S.nr_victim_lookup);
  spinLock(k.env, sh.ctl, kCtlVictimLock);
  for (let v = 0; v < sh.geo.victims; v++) {
    if (sh.victim[sh.victimIdx(v, kVictimPid)] === pid && sh.victimAddr[v] === page) {
      sh.pcdata.set(sh.victimData.subarray(v * PAGE_SIZE, (v + 1) * PAGE_SIZE), sh.lineOffset(line));
      const rw = sh.victim[sh.victimIdx(v, kVictimRw)]!;
      victimDrop(sh, v);
      spinUnlock(sh.ctl, kCtlVictimLock);
      Atomics.add(sh.set, sh.setIdx(set, kSetStatFillVictim), 1);
      k.env.stat(S.nr_victim_hit);
      return rw;
    }
  }
  spinUnlock(sh.ctl, kCtlVictimLock);
  return -1;
}

/** Drop victim entries of pid in [start, end) and bump the generation (munmap/mremap/brk shrink). */
export function victimInvalidateRange(k: Kern, pid: number, start: number, end: number): void {
  const sh = k.sh;
  spinLock(k.env, sh.ctl, kCtlVictimLock);
  Atomics.add(sh.ctl, kCtlVictimGen, 1);
  for (let v = 0; v < sh.geo.victims; v++) {
    if (sh.victim[sh.victimIdx(v, kVictimPid)] === pid && sh.victimAddr[v]! >= start && sh.victimAddr[v]! < end) {
      victimDrop(sh, v);
      k.env.stat(S.nr_victim_invalidate);
    }
  }
  spinUnlock(sh.ctl, kCtlVictimLock);
}

/** Lines in `set`: free + LRU + off-list (being evicted or freed) must equal the ways (set conservation). */
export function setCounts(sh: Shared, set: number): { free: number; lru: number } {
  return { free: sh.set[sh.setIdx(set, kSetNrFree)]!, lru: sh.set[sh.setIdx(set, kSetNrLru)]! };
}

export { kListFree, kListLru, kListNone };

/**
 * kevict_sweepd's pass over one set (sweep.c): from the LRU tail, lines whose PTEs were referenced
 * since the last pass get their accessed bits cleared and move to the head, so eviction finds cold
 * lines at the tail. Only trylocks, like the sweep: a busy line is left for the next pass.
 */
export function pcacheSweepSet(k: Kern, set: number): number {
  const sh = k.sh;
  let moved = 0;
  lockSet(k, set);
  const lines: number[] = [];
  for (let e = sh.set[sh.setIdx(set, kSetLruTail)]!; e !== 0; e = sh.meta[sh.metaIdx(e - 1, kMetaPrev)]!) lines.push(e - 1);
  for (const line of lines) {
    if ((pcacheFlags(sh, line) & PC_valid) === 0 || !trylockPcache(sh, line)) continue;
    if (pcacheReferencedTrylock(k, line)) {
      lruDel(sh, set, line);
      lruAddHead(sh, set, line);
      moved++;
    }
    unlockPcache(sh, line);
  }
  unlockSet(k, set);
  return moved;
}
