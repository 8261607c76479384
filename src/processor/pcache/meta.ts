// struct pcache_meta, pcache_set and pcache_rmap as every pcache file sees them (LegoOS
// include/processor/pcache.h and the free half of managers/processor/pcache/alloc.c): a line's
// flags, its lock (PC_locked, lock_pcache), its references (get_pcache / put_pcache, whose last put
// frees it: __put_pcache), the set's free and LRU lists, and read-only views of a line's rmaps.
//
// Locks and words:
//   - a line's flags word holds the line lock (PC_locked, bit spin lock); the other flags change by
//     Atomics bit ops; ref and mapcount by Atomics;
//   - the set lock (lru_lock, kSetLock) guards the set's free list, LRU list, their counters and the
//     lines' list links (kMetaPrev/kMetaNext/kMetaList): pushFree, popFree, lruAddHead and lruDel
//     must be called with it held;
//   - a line's rmap list is read under the line lock, or in a stopped world (rmapList, rmapView);
//   - a line's shm tag (kMetaShm) is written under the set lock: set by the fill of a shared page
//     before any PTE maps the line, cleared here in __put_pcache with a bump of the set's kSetShmGen.
// Lock order (rmap.c FAT NOTE, 933163e8): P's mmap_sem -> set lock (lru_lock) -> pcache line lock
// -> PTE lock -> leaf locks. The leaf locks take nothing beneath them: the victim cache lock
// (kCtlVictimLock, which also guards kSetNrVictims), the rmap free-list lock and mm->page_table_lock.
// Where a path must go against the order it never blocks, so no cycle can form:
//   - under a PTE lock a line is only trylocked; on failure lockLineUnderPtl (mm.ts) takes a
//     reference, drops the PTE lock, sleeps on the line lock, retakes the PTE lock and re-checks
//     the PTE (pte_same);
//   - eviction holds the line lock and pins each mapping's mm with down_read_trylock
//     (pcacheEvictLine, evict.ts), giving up on the line if one fails;
//   - the walkers that only test and clear the accessed bit (pcacheReferencedTrylock, rmap.ts: the
//     LRU second-chance scan, kevict_sweepd) take each PTE lock by trylock (rmap_get_pte_trylock)
//     and skip a PTE whose lock is busy;
//   - the fill of a shared page takes the set lock under the PTE lock for its alias scan
//     (fault.ts shmFindAlias), and only trylocks the alias's line there: no holder of a set lock
//     waits for a line or a PTE lock (evict_find_line and the sweep only trylock them);
//   - the fill (fault.ts -> pcacheAddRmap) locks, under the PTE lock, the line it has just allocated.
//     That line is not PC_valid and no rmap or other PTE reaches it, so the only other holders are
//     set scans (eviction, kevict_sweepd) that trylock it, see it invalid and drop it at once,
//     taking no PTE lock meanwhile.
// Refcount: one per rmap (the allocation ref becomes the first rmap's), plus transient refs of
// evictors and lock-drop paths.
import {
  kListFree,
  kListLru,
  kListNone,
  kMetaFlags,
  kMetaList,
  kMetaMapcount,
  kMetaNext,
  kMetaPrev,
  kMetaRef,
  kMetaRmapHead,
  kMetaShm,
  kRmapCaller,
  kRmapFlags,
  kRmapNext,
  kRmapOwner,
  kRmapPageTable,
  kSetFreeHead,
  kSetLock,
  kSetLruHead,
  kSetLruTail,
  kSetNrFree,
  kSetNrLru,
  kSetShmGen,
  PC_FLAG_NAMES,
  PC_locked,
  PCACHE_FLAGS_CHECK_AT_FREE,
  type Shared,
} from '../../kernel/layout.ts';
import { bitLock, bitTrylock, bitUnlock, spinLock, spinUnlock } from '../../kernel/sync.ts';
import { kernelWarn, reportViolation } from '../../kernel/report.ts';
import type { Kern } from '../kern.ts';

export function pushFree(sh: Shared, set: number, line: number): void {
  sh.meta.set(line, kMetaNext, sh.set.get(set, kSetFreeHead));
  sh.meta.set(line, kMetaPrev, 0);
  sh.meta.set(line, kMetaList, kListFree);
  sh.set.set(set, kSetFreeHead, line + 1);
  sh.set.add(set, kSetNrFree, 1);
}

export function popFree(sh: Shared, set: number): number {
  const head = sh.set.get(set, kSetFreeHead);
  if (head === 0) return -1;
  const line = head - 1;
  sh.set.set(set, kSetFreeHead, sh.meta.get(line, kMetaNext));
  sh.set.sub(set, kSetNrFree, 1);
  sh.meta.set(line, kMetaList, kListNone);
  return line;
}

// LRU list: head = newest, tail = oldest. Under the set lock.
export function lruAddHead(sh: Shared, set: number, line: number): void {
  const head = sh.set.get(set, kSetLruHead);
  sh.meta.set(line, kMetaPrev, 0);
  sh.meta.set(line, kMetaNext, head);
  if (head) sh.meta.set(head - 1, kMetaPrev, line + 1);
  else sh.set.set(set, kSetLruTail, line + 1);
  sh.set.set(set, kSetLruHead, line + 1);
  sh.set.add(set, kSetNrLru, 1);
  sh.meta.set(line, kMetaList, kListLru);
}

export function lruDel(sh: Shared, set: number, line: number): void {
  const prev = sh.meta.get(line, kMetaPrev);
  const next = sh.meta.get(line, kMetaNext);
  if (prev) sh.meta.set(prev - 1, kMetaNext, next);
  else sh.set.set(set, kSetLruHead, next);
  if (next) sh.meta.set(next - 1, kMetaPrev, prev);
  else sh.set.set(set, kSetLruTail, prev);
  sh.set.sub(set, kSetNrLru, 1);
  sh.meta.set(line, kMetaList, kListNone);
  sh.meta.set(line, kMetaPrev, 0);
  sh.meta.set(line, kMetaNext, 0);
}

export function lockSet(k: Kern, set: number): void {
  spinLock(k.env, k.sh.set.a, k.sh.set.idx(set, kSetLock), set);
}

export function unlockSet(k: Kern, set: number): void {
  spinUnlock(k.sh.set.a, k.sh.set.idx(set, kSetLock));
}

export const pcacheFlags = (sh: Shared, line: number): number => sh.meta.load(line, kMetaFlags);

export const trylockPcache = (sh: Shared, line: number): boolean =>
  bitTrylock(sh.meta.a, sh.meta.idx(line, kMetaFlags), PC_locked);

export function lockPcache(k: Kern, line: number): void {
  bitLock(k.env, k.sh.meta.a, k.sh.meta.idx(line, kMetaFlags), PC_locked, line);
}

export function unlockPcache(sh: Shared, line: number): void {
  bitUnlock(sh.meta.a, sh.meta.idx(line, kMetaFlags), PC_locked);
}

export function getPcache(sh: Shared, line: number): void {
  sh.meta.add(line, kMetaRef, 1);
}

/** get_pcache_unless_zero */
export function getPcacheUnlessZero(sh: Shared, line: number): boolean {
  const i = sh.meta.idx(line, kMetaRef);
  for (;;) {
    const r = Atomics.load(sh.meta.a, i);
    if (r === 0) return false;
    if (Atomics.compareExchange(sh.meta.a, i, r, r + 1) === r) return true;
  }
}

/** put_pcache: drop `n` references; the last one frees the line (__put_pcache). */
export function putPcache(k: Kern, line: number, n = 1): void {
  const old = k.sh.meta.sub(line, kMetaRef, n);
  if (old === n) freePcache(k, line);
  else if (old < n)
    kernelWarn(
      k,
      { fn: 'put_pcache', file: 'managers/processor/pcache/alloc.c' },
      `pcache line ${line}: refcount underflow (${old} - ${n})`,
    );
}

/** __put_pcache: detach from LRU and return to the set's free list, checking the free-line state. */
export function freePcache(k: Kern, line: number): void {
  const sh = k.sh;
  const set = sh.setOfLine(line);
  lockSet(k, set);
  if (sh.meta.get(line, kMetaList) === kListLru) lruDel(sh, set, line);
  const flags = pcacheFlags(sh, line) & ~PC_locked;
  const mapcount = sh.meta.load(line, kMetaMapcount);
  if (mapcount !== 0 || (flags & PCACHE_FLAGS_CHECK_AT_FREE) !== 0 || sh.meta.get(line, kMetaRmapHead) !== 0) {
    reportViolation(k, 'free-line-state', {
      line,
      text: `BUG: Bad pcache state in process [${k.comm}][pid:${k.pid}]\npcache:${line} mapcount:${mapcount} flags:(${pcFlagsString(flags)})`,
    });
  }
  sh.meta.store(line, kMetaFlags, 0);
  // A line that cached a shared page leaves: its data is in M now (written back when it was evicted,
  // or when its dirty PTE was zapped), and a fill that fetched the page before that must fetch again.
  const shm = sh.meta.get(line, kMetaShm) !== 0;
  if (shm) {
    sh.meta.set(line, kMetaShm, 0);
    sh.set.add(set, kSetShmGen, 1);
  }
  pushFree(sh, set, line);
  unlockSet(k, set);
  if (shm) sh.set.notify(set, kSetShmGen);
}

export function pcFlagsString(f: number): string {
  return PC_FLAG_NAMES.filter(([b]) => f & b)
    .map(([, n]) => n)
    .join('|');
}

export interface RmapView {
  r: number;
  owner: number;
  address: number;
  pageTable: number;
  flags: number;
  caller: number;
}

export function rmapView(sh: Shared, r: number): RmapView {
  return {
    r,
    owner: sh.rmap.get(r, kRmapOwner),
    address: sh.rmapAddr.get(r),
    pageTable: sh.rmap.get(r, kRmapPageTable),
    flags: sh.rmap.get(r, kRmapFlags),
    caller: sh.rmap.get(r, kRmapCaller),
  };
}

/** rmap indices of a line (caller holds the line lock, or the world is stopped). */
export function rmapList(sh: Shared, line: number): number[] {
  const out: number[] = [];
  for (let e = sh.meta.get(line, kMetaRmapHead); e !== 0; e = sh.rmap.get(e - 1, kRmapNext)) out.push(e - 1);
  return out;
}

/** Lines in `set`: free + LRU + off-list (being evicted or freed) must equal the ways (set conservation). */
export function setCounts(sh: Shared, set: number): { free: number; lru: number } {
  return { free: sh.set.get(set, kSetNrFree), lru: sh.set.get(set, kSetNrLru) };
}

export { kListFree, kListLru, kListNone };
