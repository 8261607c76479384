// P-side page-table maintenance for address-space changes (managers/processor/pgtable.c, rmap.c):
// release_pgtable (munmap, brk shrink, MAP_FIXED replace, exit), move_page_tables / move_ptes /
// pcache_move_pte (mremap), and the PTE side of mprotect. All run with P's mmap_sem held for write,
// after M has changed the VMAs ("only call after M updated its mmap").
import { warnOnce } from '../env.ts';
import { P2M_PCACHE_FLUSH } from '../fabric/opcodes.ts';
import {
  _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_RW, _PAGE_USER, kMmFloatStride, kMmMovingEnd,
  kMmMovingStart, kNodeMemory, kPteFlagsMask, RMAP_MREMAP_SLOWPATH,
} from '../layout.ts';
import { S } from '../stats.ts';
import { PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE } from '../uapi.ts';
import type { Kern } from './kern.ts';
import {
  findRmap, getPcache, lockPcache, pcacheAddRmap, pcacheAlloc, pcacheRemoveRmapLocked, putPcache, rmapRepoint,
  trylockPcache, unlockPcache, victimInvalidateRange,
} from './pcache.ts';
import { pteLine, pteMapped, ptlLock, ptlLockPair, ptlUnlock, ptlUnlockPair, walk, walkNoAlloc } from './pgtable.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from './tlb.ts';
import { kMmPgd } from '../layout.ts';

const PMD_SIZE = 2 ** 21;
/** LATENCY_LIMIT of move_page_tables: extents of at most 64 pages */
const kLatencyLimitPages = 64;

function pgdOf(k: Kern): number { return k.sh.mm[k.sh.mmIdx(k.mmSlot, kMmPgd)]!; }

/**
 * Lock a present PTE's line from under the PTE lock (the pcache_zap_pte / pcache_move_pte dance):
 * trylock; on failure take a ref, drop the PTE lock(s), sleep on the line lock, retake the PTE
 * lock(s), and re-check the PTE. Returns false (all locks dropped) if the PTE changed: retry.
 */
function lockLineUnderPtl(k: Kern, line: number, ptep: number, pte: number, relock: () => void, unlock: () => void): boolean {
  if (trylockPcache(k.sh, line)) return true;
  getPcache(k.sh, line);
  unlock();
  lockPcache(k, line);
  relock();
  if (Atomics.load(k.sh.pgtable, ptep) !== pte) {
    unlockPcache(k.sh, line);
    unlock();
    putPcache(k, line);
    return false;
  }
  putPcache(k, line); // still mapped, so this never frees
  return true;
}

/**
 * release_pgtable(start, end) = unmap_page_range + free_pgd_range: zap every PTE, drop its rmap, and
 * free the lines only after the TLB flush (a line freed before the flush can be reused while another
 * CPU still writes through a stale TLB entry: bug `free-before-flush`). Dirty data is discarded, as
 * munmap/exit discard it (zap_pte_range).
 */
export function releasePgtable(k: Kern, start: number, end: number): void {
  const sh = k.sh;
  const pid = k.pid;
  const pgd = pgdOf(k);
  const freeAfterFlush: number[] = [];
  const earlyFree = k.env.bugs.has('free-before-flush');
  let zapped = 0;
  tlbGatherStart(k, k.mmSlot);
  try {
  for (let va = start; va < end; ) {
    const ptep = walkNoAlloc(sh, pgd, va);
    if (ptep < 0) { va = Math.min(end, (Math.floor(va / PMD_SIZE) + 1) * PMD_SIZE); continue; }
    for (;;) {
      const pte = Atomics.load(sh.pgtable, ptep);
      if (pte === 0) break;
      ptlLock(k.env, ptep);
      const cur = Atomics.load(sh.pgtable, ptep);
      if (!pteMapped(cur)) { Atomics.store(sh.pgtable, ptep, 0); ptlUnlock(k.env, ptep); break; }
      const line = pteLine(cur);
      if (!lockLineUnderPtl(k, line, ptep, cur, () => ptlLock(k.env, ptep), () => ptlUnlock(k.env, ptep))) continue;
      const r = findRmap(sh, line, ptep, pid, va);
      if (r < 0) {
        warnOnce(k.env, 'pcache_zap_pte', `pte: ${ptep} ptent: 0x${(cur >>> 0).toString(16)} address: 0x${va.toString(16)}\ncorrupted: no rmap for a mapped PTE`);
      } else {
        // The PTE is cleared only when its rmap is found (7207dd02).
        Atomics.store(sh.pgtable, ptep, 0);
        pcacheRemoveRmapLocked(k, line, r);
        k.env.sched('zap:pte_cleared');
        if (earlyFree) { unlockPcache(sh, line); ptlUnlock(k.env, ptep); putPcache(k, line); zapped++; break; }
        freeAfterFlush.push(line);
        zapped++;
      }
      unlockPcache(sh, line);
      ptlUnlock(k.env, ptep);
      break;
    }
    va += PAGE_SIZE;
  }
  if (zapped > 0 || freeAfterFlush.length) flushTlbMmRange(k, pid, k.mmSlot, start, end);
  } finally {
    tlbGatherEnd(k, k.mmSlot);
  }
  for (const line of freeAfterFlush) putPcache(k, line);
  victimInvalidateRange(k, pid, start, end);
  k.env.stat(S.zap_pages, zapped);
}

interface Detached { line: number; r: number; pte: number; newPtep: number; newVa: number }

/**
 * move_page_tables(old, new, len): move every mapping of [old, old+len) to [new, new+len).
 * Per page, pcache_move_pte: if old and new share a set, re-point the rmap and move the PTE together
 * under the line lock (fastpath, PCACHE_MREMAP_PSET_SAME); otherwise (slowpath, _DIFF) detach the old
 * PTE, flush the TLBs of the extent, then copy into a line of the new set and install PTE + rmap
 * together, freeing the old line only after the flush.
 * PTE-page locks of old and new are taken in a fixed global order (ptlLockPair), not "old then new"
 * as LegoOS does (ABBA between two mremaps a->b and b->a).
 */
export function movePageTables(k: Kern, oldAddr: number, newAddr: number, len: number): number {
  const sh = k.sh;
  const f = k.mmSlot * kMmFloatStride;
  sh.mmF[f + kMmMovingStart] = oldAddr;
  sh.mmF[f + kMmMovingEnd] = oldAddr + len;
  // Victim entries of the old range name addresses that no longer map them (M moved the VMA): drop
  // them first, or a fault at the old address would be filled from the victim cache without asking M.
  // (Every victim is clean, M already has its data.) Bumping the generation also stops an eviction in
  // flight from inserting one.
  victimInvalidateRange(k, k.pid, oldAddr, oldAddr + len);
  try {
    let done = 0;
    while (done < len) {
      const o = oldAddr + done;
      const n = newAddr + done;
      const extent = Math.min(
        len - done,
        kLatencyLimitPages * PAGE_SIZE,
        (Math.floor(o / PMD_SIZE) + 1) * PMD_SIZE - o,
        (Math.floor(n / PMD_SIZE) + 1) * PMD_SIZE - n,
      );
      tlbGatherStart(k, k.mmSlot);
      try {
        moveExtent(k, o, n, extent);
      } finally {
        tlbGatherEnd(k, k.mmSlot);
      }
      done += extent;
    }
    return done;
  } finally {
    sh.mmF[f + kMmMovingStart] = -1;
    sh.mmF[f + kMmMovingEnd] = -1;
  }
}

function moveExtent(k: Kern, oldStart: number, newStart: number, len: number): void {
  const sh = k.sh;
  const pid = k.pid;
  const pgd = pgdOf(k);
  const detached: Detached[] = [];
  let moved = 0;
  // Bug flags (src/check/bugzoo.ts): each switches one step below back to its historical form.
  const noPcacheMove = k.env.bugs.has('mremap-no-pcache-move');
  const pteBeforeRmap = k.env.bugs.has('mremap-pte-before-rmap');
  const destOverwrite = k.env.bugs.has('mremap-dest-overwrite');
  const freeBeforeFlush = k.env.bugs.has('free-before-flush');
  const bounce = new Uint8Array(PAGE_SIZE);
  for (let off = 0; off < len; off += PAGE_SIZE) {
    const oldVa = oldStart + off;
    const newVa = newStart + off;
    const oldPtep = walkNoAlloc(sh, pgd, oldVa);
    if (oldPtep < 0 || Atomics.load(sh.pgtable, oldPtep) === 0) continue;
    const newPtep = walk(k.env, k.mmSlot, newVa, true);
    for (;;) {
      ptlLockPair(k.env, oldPtep, newPtep);
      const pte = Atomics.load(sh.pgtable, oldPtep);
      if (pte === 0) { ptlUnlockPair(k.env, oldPtep, newPtep); break; }
      const dst = Atomics.load(sh.pgtable, newPtep);
      if (dst !== 0 && !destOverwrite) {
        // The destination was zapped before the move (and faults are excluded by mmap_sem), so a
        // present PTE here is a kernel bug: never overwrite it (that leaks its line and breaks rmap).
        warnOnce(k.env, 'move_ptes', `move_ptes: destination PTE at 0x${newVa.toString(16)} is not none (0x${(dst >>> 0).toString(16)})`);
        ptlUnlockPair(k.env, oldPtep, newPtep);
        break;
      }
      if (!pteMapped(pte) || noPcacheMove) {
        // (mremap-no-pcache-move: LegoOS before 2018-02-02 moved every PTE like this, mapped or not:
        // the line stays in the old set and its rmap keeps the old slot and address.)
        Atomics.store(sh.pgtable, oldPtep, 0);
        Atomics.store(sh.pgtable, newPtep, pte);
        ptlUnlockPair(k.env, oldPtep, newPtep);
        if (pteMapped(pte)) moved++;
        break;
      }
      const line = pteLine(pte);
      if (pteBeforeRmap && sh.setOfAddr(oldVa) === sh.setOfAddr(newVa)) {
        // mremap-pte-before-rmap (LegoOS 2018-02-02..06): move_ptes moves the PTE, and only then,
        // outside the locks, pcache_move_pte re-points the rmap. An rmap walker in between finds the
        // rmap's slot empty.
        Atomics.store(sh.pgtable, newPtep, Atomics.exchange(sh.pgtable, oldPtep, 0));
        ptlUnlockPair(k.env, oldPtep, newPtep);
        k.env.sched('mremap:pte_moved_before_rmap');
        lockPcache(k, line);
        const r0 = findRmap(sh, line, oldPtep, pid, oldVa);
        if (r0 >= 0) rmapRepoint(sh, r0, newPtep, newVa);
        unlockPcache(sh, line);
        k.env.stat(S.nr_mremap_pset_same);
        moved++;
        break;
      }
      if (!lockLineUnderPtl(k, line, oldPtep, pte, () => ptlLockPair(k.env, oldPtep, newPtep), () => ptlUnlockPair(k.env, oldPtep, newPtep))) continue;
      const r = findRmap(sh, line, oldPtep, pid, oldVa);
      if (r < 0) {
        warnOnce(k.env, 'pcache_move_pte', `pcache_move_pte: no rmap for PTE at 0x${oldVa.toString(16)}`);
        unlockPcache(sh, line);
        ptlUnlockPair(k.env, oldPtep, newPtep);
        break;
      }
      k.env.sched('mremap:line_locked');
      if (sh.setOfAddr(oldVa) === sh.setOfAddr(newVa)) {
        // fastpath: same set, the line is reused in place; rmap and PTE change together.
        rmapRepoint(sh, r, newPtep, newVa);
        const v = Atomics.exchange(sh.pgtable, oldPtep, 0);
        Atomics.store(sh.pgtable, newPtep, v);
        unlockPcache(sh, line);
        k.env.stat(S.nr_mremap_pset_same);
      } else {
        // slowpath, phase 1: detach. The line stays locked (so no rmap walker looks at it while its
        // rmap names a cleared slot) until phase 2 after the TLB flush.
        const v = Atomics.exchange(sh.pgtable, oldPtep, 0);
        detached.push({ line, r, pte: v, newPtep, newVa });
        k.env.stat(S.nr_mremap_pset_diff);
      }
      ptlUnlockPair(k.env, oldPtep, newPtep);
      moved++;
      // free-before-flush (LegoOS HEAD slowpath): copy and put_pcache(old) now, before the extent's
      // flush_tlb_mm_range below.
      if (freeBeforeFlush && detached.length > 0) attachSlowpath(k, detached.pop()!, bounce);
      break;
    }
  }
  if (moved === 0) return;
  // No CPU may still write the old lines through a stale TLB entry after this.
  flushTlbMmRange(k, pid, k.mmSlot, oldStart, oldStart + len);
  k.env.sched('mremap:flushed');
  for (const d of detached) attachSlowpath(k, d, bounce);
  k.env.stat(S.mremap_move_pages, moved);
}

/**
 * slowpath, phase 2: the old line's data goes to a bounce buffer and the old line is freed (the TLBs
 * were flushed in between), then a line of the new set gets the data and PTE + rmap are installed
 * together. The detached lines of the extent are still locked, so a new set may have no line to give
 * (they can fill whole sets): then, after a bounded number of evictions, the page is left to M, which
 * already maps it at newVa — a dirty copy is written back there first — and the next touch refaults it.
 */
function attachSlowpath(k: Kern, d: Detached, bounce: Uint8Array): void {
  const sh = k.sh;
  bounce.set(sh.pcdata.subarray(sh.lineOffset(d.line), sh.lineOffset(d.line) + PAGE_SIZE));
  pcacheRemoveRmapLocked(k, d.line, d.r);
  unlockPcache(sh, d.line);
  putPcache(k, d.line);
  const dirty = (d.pte & _PAGE_DIRTY) !== 0;
  const nl = pcacheAlloc(k, d.newVa, 2 * sh.geo.ways);
  if (nl < 0) {
    if (dirty) k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: k.pid, vaddr: d.newVa, page: bounce });
    return;
  }
  sh.pcdata.set(bounce, sh.lineOffset(nl));
  ptlLock(k.env, d.newPtep);
  Atomics.store(sh.pgtable, d.newPtep, (nl << 12) | (d.pte & kPteFlagsMask));
  if (!pcacheAddRmap(k, nl, d.newPtep, d.newVa, k.pid, RMAP_MREMAP_SLOWPATH)) {
    warnOnce(k.env, 'pcache_move_pte_slowpath', 'rmap pool exhausted in mremap slowpath');
    Atomics.store(sh.pgtable, d.newPtep, 0);
    ptlUnlock(k.env, d.newPtep);
    putPcache(k, nl);
    if (dirty) k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: k.pid, vaddr: d.newVa, page: bounce });
    return;
  }
  ptlUnlock(k.env, d.newPtep);
}

/** The PTE side of mprotect: rewrite the protection of every mapped PTE, then flush. */
export function changeProtection(k: Kern, start: number, end: number, prot: number): void {
  const sh = k.sh;
  const pgd = pgdOf(k);
  const accessible = (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) !== 0;
  let changed = 0;
  tlbGatherStart(k, k.mmSlot);
  try {
  for (let va = start; va < end; ) {
    const ptep = walkNoAlloc(sh, pgd, va);
    if (ptep < 0) { va = Math.min(end, (Math.floor(va / PMD_SIZE) + 1) * PMD_SIZE); continue; }
    if (Atomics.load(sh.pgtable, ptep) !== 0) {
      ptlLock(k.env, ptep);
      const pte = Atomics.load(sh.pgtable, ptep);
      if (pteMapped(pte)) {
        const keep = pte & ~(_PAGE_PRESENT | _PAGE_RW | _PAGE_PROTNONE);
        const npte = accessible ? keep | _PAGE_PRESENT | _PAGE_USER | ((prot & PROT_WRITE) ? _PAGE_RW : 0) : keep | _PAGE_PROTNONE;
        Atomics.store(sh.pgtable, ptep, npte | (pte & (_PAGE_ACCESSED | _PAGE_DIRTY)));
        changed++;
      }
      ptlUnlock(k.env, ptep);
    }
    va += PAGE_SIZE;
  }
  if (changed) flushTlbMmRange(k, k.pid, k.mmSlot, start, end);
  } finally {
    tlbGatherEnd(k, k.mmSlot);
  }
  victimInvalidateRange(k, k.pid, start, end);
}
