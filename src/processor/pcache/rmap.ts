// The reverse map (managers/processor/pcache/rmap.c): struct pcache_rmap entries come from one
// pool (its free list under kCtlRmapFreeLock, a leaf lock) and are linked per line, newest first,
// under the line lock. rmap_get_pte_locked and report_bad_rmap are here: every rmap walker goes
// through rmapGetPteLocked (line lock held by the caller; returns with the PTE lock held), and
// pcacheReferencedTrylock is rmap_get_pte_trylock's form for the aging walkers (LRU second chance,
// kevict_sweepd), which only trylock each PTE lock.
import {
  _PAGE_ACCESSED,
  kCtlRmapFreeHead,
  kCtlRmapFreeLock,
  kMetaFlags,
  kMetaMapcount,
  kMetaRmapHead,
  kMmMovingEnd,
  kMmMovingStart,
  kRmapCaller,
  kRmapFlags,
  kRmapNext,
  kRmapOwner,
  kRmapPageTable,
  PC_valid,
  PCACHE_RMAP_used,
  type Shared,
} from '../../kernel/layout.ts';
import { S } from '../../kernel/stats.ts';
import { spinLock, spinUnlock } from '../../kernel/sync.ts';
import { PAGE_SIZE } from '../../uapi/abi.ts';
import { reportViolation } from '../../kernel/report.ts';
import type { Kern } from '../kern.ts';
import { fmtPtep, pteLine, pteMapped, ptePfn, ptlLock, ptlTrylock, ptlUnlock, walkNoAlloc } from '../pgtable.ts';
import { kMmPgd } from '../../kernel/layout.ts';

import { dumpPcacheMeta, dumpRmap } from './dump.ts';
import { lockPcache, rmapList, rmapView, unlockPcache, type RmapView } from './meta.ts';
import { hex } from '../../lib/text.ts';

function rmapAlloc(k: Kern): number {
  const sh = k.sh;
  spinLock(k.env, sh.ctl.a, kCtlRmapFreeLock);
  const head = sh.ctl.get(kCtlRmapFreeHead);
  if (head === 0) {
    spinUnlock(sh.ctl.a, kCtlRmapFreeLock);
    return -1;
  }
  sh.ctl.set(kCtlRmapFreeHead, sh.rmap.get(head - 1, kRmapNext));
  spinUnlock(sh.ctl.a, kCtlRmapFreeLock);
  k.env.stat(S.nr_pcache_rmap_alloc);
  return head - 1;
}

function rmapFree(k: Kern, r: number): void {
  const sh = k.sh;
  sh.rmap.set(r, kRmapFlags, 0);
  spinLock(k.env, sh.ctl.a, kCtlRmapFreeLock);
  sh.rmap.set(r, kRmapNext, sh.ctl.get(kCtlRmapFreeHead));
  sh.ctl.set(kCtlRmapFreeHead, r + 1);
  spinUnlock(sh.ctl.a, kCtlRmapFreeLock);
  k.env.stat(S.nr_pcache_rmap_free);
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
export function pcacheAddRmap(
  k: Kern,
  line: number,
  ptep: number,
  address: number,
  owner: number,
  caller: number,
  reserved = -1,
): boolean {
  const sh = k.sh;
  lockPcache(k, line);
  const r = reserved >= 0 ? reserved : rmapAlloc(k);
  if (r < 0) {
    unlockPcache(sh, line);
    return false;
  }
  pcacheAddRmapLocked(k, line, r, ptep, address, owner, caller);
  unlockPcache(sh, line);
  return true;
}

/**
 * The body of pcache_add_rmap on a line the caller has locked, with an rmap from rmapReserve: fork
 * (pcache_copy_one_pte) adds the child's mapping to a live line it already holds locked.
 */
export function pcacheAddRmapLocked(
  k: Kern,
  line: number,
  r: number,
  ptep: number,
  address: number,
  owner: number,
  caller: number,
): void {
  const sh = k.sh;
  sh.rmap.set(r, kRmapFlags, PCACHE_RMAP_used);
  sh.rmap.set(r, kRmapOwner, owner);
  sh.rmap.set(r, kRmapPageTable, ptep);
  sh.rmap.set(r, kRmapCaller, caller);
  sh.rmapAddr.set(r, address - (address % PAGE_SIZE));
  sh.rmap.set(r, kRmapNext, sh.meta.get(line, kMetaRmapHead));
  sh.meta.set(line, kMetaRmapHead, r + 1);
  sh.meta.add(line, kMetaMapcount, 1);
  sh.meta.or(line, kMetaFlags, PC_valid);
}

/** __pcache_remove_rmap (line locked): unlink and free; clears PC_valid when mapcount drops to 0. */
export function pcacheRemoveRmapLocked(k: Kern, line: number, r: number): void {
  const sh = k.sh;
  let prev = -1;
  for (let e = sh.meta.get(line, kMetaRmapHead); e !== 0; e = sh.rmap.get(e - 1, kRmapNext)) {
    if (e - 1 === r) {
      const next = sh.rmap.get(r, kRmapNext);
      if (prev < 0) sh.meta.set(line, kMetaRmapHead, next);
      else sh.rmap.set(prev, kRmapNext, next);
      break;
    }
    prev = e - 1;
  }
  rmapFree(k, r);
  if (sh.meta.sub(line, kMetaMapcount, 1) === 1) sh.meta.and(line, kMetaFlags, ~PC_valid);
}

/** Find the rmap of (ptep, owner, address) on a locked line, -1 if none. */
export function findRmap(sh: Shared, line: number, ptep: number, owner: number, address: number): number {
  for (const r of rmapList(sh, line)) {
    if (
      sh.rmap.get(r, kRmapPageTable) === ptep &&
      sh.rmap.get(r, kRmapOwner) === owner &&
      sh.rmapAddr.get(r) === address
    )
      return r;
  }
  return -1;
}

/** Update an rmap to a new (ptep, address) — the mremap fastpath, line locked. */
export function rmapRepoint(sh: Shared, r: number, ptep: number, address: number): void {
  sh.rmap.set(r, kRmapPageTable, ptep);
  sh.rmapAddr.set(r, address);
}

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
  const ptep = slot < 0 ? -1 : walkNoAlloc(sh, sh.mm.get(slot, kMmPgd), v.address);
  if (ptep >= 0) ptlLock(k.env, ptep);
  const pte = ptep >= 0 ? sh.pgtable.load(ptep) : 0;
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
  const sameSlot = ptep === v.pageTable ? '==' : '!=';
  const samePfn = pcachePfn === ptePfnV ? '==' : '!=';
  const facts = badRmapFacts(k, line, v, ptep, pte, caller);
  // the facts both the full and the shortened report carry
  const common = { line, pid: v.owner, addr: v.address, ptep, rmapPageTable: v.pageTable, pcachePfn, ptePfn: ptePfnV };
  const details = { ...common, caller, facts };
  if (++badRmapReports > kBadRmapReports) {
    // Past the first reports only a one-line record each (still collected), then nothing.
    if (badRmapReports === kBadRmapReports + 1)
      k.env.printk('error', `report_bad_rmap: ${k.env.name}: further reports shortened`);
    if (badRmapReports <= kBadRmapRecords) {
      reportViolation(k, 'rmap-pte-mismatch', {
        ...details,
        text: `mismatched PTE and rmap: pcache:${line} uva:${hex(v.address)} [pte ${sameSlot} rmap->page_table] && [pcache_pfn ${samePfn} pte_pfn] caller: ${caller}`,
      });
    }
    return;
  }
  // LegoOS's two formats (legoos-facts §5.4): the 2018-02 block (a873eba6) and HEAD's.
  const lines =
    k.env.config.rmapReportFormat === 'head'
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
    ...common,
    facts,
    text: lines.join('\n'),
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
  return [
    `slot=${ptep === v.pageTable ? 'same' : 'differs'}`,
    `pte=${what}`,
    `during=${during}`,
    `by=${caller.split(' ')[0]}`,
  ];
}

const commOf = (k: Kern, pid: number): string => (pid === k.pid && k.comm ? k.comm : `pid${pid}`);

export function movingRangeCovers(sh: Shared, slot: number, va: number): boolean {
  const s = sh.mmF.get(slot, kMmMovingStart);
  const e = sh.mmF.get(slot, kMmMovingEnd);
  return s >= 0 && va >= s && va < e;
}

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
    const ptep = slot < 0 ? -1 : walkNoAlloc(sh, sh.mm.get(slot, kMmPgd), v.address);
    const pte = sh.pgtable.load(v.pageTable);
    if (slot >= 0 && (ptep !== v.pageTable || !pteMapped(pte) || pteLine(pte) !== line)) {
      const shown = ptep >= 0 ? sh.pgtable.load(ptep) : 0;
      ptlUnlock(k.env, v.pageTable);
      reportBadRmap(k, line, r, ptep, shown, 'pcache_referenced_trylock_one');
      continue;
    }
    if (pteMapped(pte) && pteLine(pte) === line && pte & _PAGE_ACCESSED) {
      sh.pgtable.and(v.pageTable, ~_PAGE_ACCESSED);
      young = true;
    }
    ptlUnlock(k.env, v.pageTable);
  }
  return young;
}
