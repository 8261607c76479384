// P-side mremap: move_page_tables / move_ptes (managers/processor/pgtable.c) and pcache_move_pte
// (managers/processor/pcache/rmap.c), in every historical form the race lab can run.
//
// Contract: the caller (syscalls.ts changeAddressSpace) holds P's mmap_sem for write — unless the
// `mremap-unserialized` flag is on — and M has already moved the VMA and its own page tables ("only
// call after M updated its mmap"). Locks taken here, in this order: the PTE-page locks of old and new
// (ptlLockPair: a fixed global order), then the line lock (trylock, or the drop-and-retake dance of
// lockLineUnderPtl), and in the slowpath the new set's lock inside pcacheAlloc with no PTE lock held.
//
// The per-page move has one function per historical form, each named after the commit it stands for
// (legoos-facts §5.4, §7.4, §12). The kernel presets of src/racelab/bugzoo.ts pick among them:
//   movePteNoPcache          c9a9651a 2018-02-01 .. 571f75e0: move_ptes moves the PTE, the pcache is
//                            not told (flag mremap-no-pcache-move; preset legoos-2018-02-01)
//   pcacheMovePtePteFirst    571f75e0 2018-02-02 .. ff47ee16: move_ptes moves the PTE, then
//                            pcache_move_pte re-points the rmap; one path whatever the sets, the line
//                            stays where it is (flag mremap-pte-before-rmap; preset legoos-2018-02-03)
//   pcacheMovePteFastpath    ff47ee16 2018-02-07 / 9f3cbf08 02-08 .. HEAD, same set: PTE and rmap
//                            change together under the line lock (HEAD and fixed)
//   pcacheMovePteSlowpathHead ff47ee16 .. HEAD, different sets: copy into a line of the new set and
//                            put_pcache(old) before the extent's flush_tlb_mm_range (flag
//                            free-before-flush; preset legoos-head)
//   pcacheMovePteSlowpath    splitkern's fixed form: detach now, flush, then copy and free (attach)
import { P2M_PCACHE_FLUSH } from '../fabric/opcodes.ts';
import {
  _PAGE_DIRTY,
  kMetaShm,
  kMmMovingEnd,
  kMmMovingStart,
  kMmPgd,
  kNodeMemory,
  kPteFlagsMask,
  RMAP_MREMAP_SLOWPATH,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';
import type { Kern } from './kern.ts';
import { lockLineUnderPtl } from './mm.ts';
import { pcacheAlloc } from './pcache/alloc.ts';
import { lockPcache, putPcache, unlockPcache } from './pcache/meta.ts';
import { findRmap, pcacheAddRmap, pcacheRemoveRmapLocked, rmapRepoint, rmapReserve } from './pcache/rmap.ts';
import { victimInvalidateRange } from './pcache/victim.ts';
import { pteLine, pteMapped, ptlLock, ptlLockPair, ptlUnlock, ptlUnlockPair, walk, walkNoAlloc } from './pgtable.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from './tlb.ts';
import { kernelWarn } from '../kernel/report.ts';

const PMD_SIZE = 2 ** 21;
/** LATENCY_LIMIT of move_page_tables: extents of at most 64 pages */
const kLatencyLimitPages = 64;

/** The historical forms of the per-page move (see the file header). */
export type MoveForm = '2018-02-01' | '2018-02-02' | 'head' | 'fixed';

/** Which form this kernel runs: the bug flags of the preset select it. */
export function moveFormOf(k: Kern): MoveForm {
  const b = k.env.bugs;
  if (b.has('mremap-no-pcache-move')) return '2018-02-01';
  if (b.has('mremap-pte-before-rmap')) return '2018-02-02';
  if (b.has('free-before-flush')) return 'head';
  return 'fixed';
}

/** A slowpath page between detach (before the extent's TLB flush) and attach (after it). */
interface Detached {
  line: number;
  r: number;
  pte: number;
  newPtep: number;
  newVa: number;
}

/** One extent of move_ptes: what every per-page form is handed (mm/mremap.c style context). */
interface MoveCtx {
  k: Kern;
  form: MoveForm;
  oldVa: number;
  newVa: number;
  oldPtep: number;
  newPtep: number;
  /** slowpath pages detached in this extent, attached after its flush (fixed form only) */
  detached: Detached[];
  /** bounce buffer of the slowpath copy: one per extent, never one per page */
  bounce: Uint8Array;
}

/** What a per-page move did. MOVE_AGAIN: the PTE changed while locks were dropped; retry the page. */
const MOVE_DONE = 0;
const MOVE_AGAIN = 1;
const MOVE_SKIPPED = 2;

/**
 * move_page_tables(old, new, len): move every mapping of [old, old+len) to [new, new+len), extent by
 * extent (bounded by the old and new PMD and LATENCY_LIMIT). Returns the bytes handled.
 */
export function movePageTables(k: Kern, oldAddr: number, newAddr: number, len: number): number {
  const sh = k.sh;
  // The range being moved, for the evictor (which must not write a line of it back while its rmap and
  // M disagree about where it lives) and for the detectors (a report inside it is "during mremap").
  sh.mmF.set(k.mmSlot, kMmMovingStart, oldAddr);
  sh.mmF.set(k.mmSlot, kMmMovingEnd, oldAddr + len);
  // Victim entries of the old range name addresses that no longer map them (M moved the VMA): drop
  // them first, or a fault at the old address would be filled from the victim cache without asking M.
  // (Every victim is clean, M already has its data.) Bumping the generation also stops an eviction in
  // flight from inserting one.
  victimInvalidateRange(k, k.pid, oldAddr, oldAddr + len);
  const form = moveFormOf(k);
  const bounce = new Uint8Array(PAGE_SIZE);
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
        movePtes(k, form, o, n, extent, bounce);
      } finally {
        tlbGatherEnd(k, k.mmSlot);
      }
      done += extent;
    }
    return done;
  } finally {
    sh.mmF.set(k.mmSlot, kMmMovingStart, -1);
    sh.mmF.set(k.mmSlot, kMmMovingEnd, -1);
  }
}

/**
 * move_ptes: one extent, page by page. The PTE-page locks of old and new are taken per page in a
 * fixed global order (ptlLockPair), not "old then new" as LegoOS does (ABBA between two mremaps
 * a->b and b->a, legoos-facts §7.4 hazard 5). After the extent: flush the old range on every CPU of
 * mm_cpumask, then attach the slowpath pages detached before the flush.
 */
function movePtes(k: Kern, form: MoveForm, oldStart: number, newStart: number, len: number, bounce: Uint8Array): void {
  const sh = k.sh;
  const pgd = sh.mm.get(k.mmSlot, kMmPgd);
  const c: MoveCtx = { k, form, oldVa: 0, newVa: 0, oldPtep: -1, newPtep: -1, detached: [], bounce };
  let moved = 0;
  for (let off = 0; off < len; off += PAGE_SIZE) {
    c.oldVa = oldStart + off;
    c.newVa = newStart + off;
    c.oldPtep = walkNoAlloc(sh, pgd, c.oldVa);
    if (c.oldPtep < 0 || sh.pgtable.load(c.oldPtep) === 0) continue;
    c.newPtep = walk(k.env, k.mmSlot, c.newVa, true);
    for (;;) {
      // Both PTE locks: the old slot must not change under us (a concurrent eviction clears it under
      // its lock), and nothing may appear at the new slot between our check and our store.
      ptlLockPair(k.env, c.oldPtep, c.newPtep);
      const pte = sh.pgtable.load(c.oldPtep);
      if (pte === 0) {
        ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
        break;
      } // evicted meanwhile
      if (!destinationNone(c)) {
        ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
        break;
      }
      if (!pteMapped(pte)) {
        // A PTE that maps no line (none of splitkern's PTEs today; LegoOS's zero-fill PTEs): move it.
        sh.pgtable.store(c.oldPtep, 0);
        sh.pgtable.store(c.newPtep, pte);
        ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
        break;
      }
      // Every pcacheMovePte* form is entered with both PTE locks held and returns with them released.
      const r = pcacheMovePte(c, pte);
      if (r === MOVE_AGAIN) continue;
      if (r === MOVE_DONE) moved++;
      break;
    }
  }
  if (moved === 0) return;
  // No CPU may still write the old lines through a stale TLB entry after this: only then may the
  // detached lines be copied and freed (the old PTL no longer matters, the lines are still locked).
  flushTlbMmRange(k, k.pid, k.mmSlot, oldStart, oldStart + len);
  k.env.sched('mremap:flushed');
  for (const d of c.detached) attachSlowpath(k, d, bounce);
  k.env.stat(S.mremap_move_pages, moved);
}

/**
 * The destination slot must be none. The destination was zapped before the move and faults are
 * excluded by mmap_sem, so a present PTE here means another path mapped it meanwhile: refuse to
 * overwrite it (that would leave its line mapped by nobody while its rmap names this slot).
 * Bug `mremap-dest-overwrite` (LegoOS HEAD move_ptes, legoos-facts §7.4 hazard 4) overwrites it.
 * Both PTE locks held.
 */
function destinationNone(c: MoveCtx): boolean {
  const { k } = c;
  const dst = k.sh.pgtable.load(c.newPtep);
  if (dst === 0) return true;
  if (k.env.bugs.has('mremap-dest-overwrite')) {
    k.env.bugRan('mremap-dest-overwrite');
    return true;
  }
  kernelWarn(
    k,
    { fn: 'move_ptes', file: 'managers/processor/pgtable.c' },
    `move_ptes: destination PTE at 0x${c.newVa.toString(16)} is not none (0x${(dst >>> 0).toString(16)})`,
  );
  return false;
}

/** pcache_move_pte: dispatch on the kernel's form (and, from ff47ee16 on, on the sets). */
function pcacheMovePte(c: MoveCtx, pte: number): number {
  const sh = c.k.sh;
  if (c.form === '2018-02-01') return movePteNoPcache(c);
  if (c.form === '2018-02-02') return pcacheMovePtePteFirst(c, pte);
  if (sh.setOfAddr(c.oldVa) === sh.setOfAddr(c.newVa)) return pcacheMovePteFastpath(c, pte);
  return c.form === 'head' ? pcacheMovePteSlowpathHead(c, pte) : pcacheMovePteSlowpath(c, pte);
}

/**
 * c9a9651a (2018-02-01) .. 571f75e0: move_ptes is not hooked to the pcache yet. The PTE moves; the
 * line stays in its old set and its rmap keeps the old slot and the old address, so the next rmap
 * walker finds the old slot empty, and a write-back goes to the old address.
 */
function movePteNoPcache(c: MoveCtx): number {
  const { k } = c;
  // ptep_get_and_clear(old); pte_set(new): both PTE locks held.
  k.sh.pgtable.store(c.newPtep, k.sh.pgtable.xchg(c.oldPtep, 0));
  ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  k.env.bugRan('mremap-no-pcache-move');
  return MOVE_DONE;
}

/**
 * 571f75e0 (2018-02-02 "hook move_ptes, zap_pte with pcache") .. ff47ee16 (02-07): move_ptes moves
 * the PTE under the PTE locks and only then calls pcache_move_pte, which takes the line lock and
 * re-points the rmap (page_table = new slot, address = new address). One path whatever the sets: the
 * line is reused in place, in the old address's set. Between the two steps an rmap walker (eviction,
 * kevict_sweepd) finds the rmap naming an empty slot: "mismatched PTE and rmap".
 */
function pcacheMovePtePteFirst(c: MoveCtx, pte: number): number {
  const { k } = c;
  const sh = k.sh;
  const line = pteLine(pte);
  // ptep_get_and_clear(old); pte_set(new): both PTE locks held, the line lock not taken.
  sh.pgtable.store(c.newPtep, sh.pgtable.xchg(c.oldPtep, 0));
  ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  // The window: the PTE is at the new slot, the rmap still names the old one, nothing is locked.
  k.env.bugRan('mremap-pte-before-rmap');
  k.env.sched('mremap:pte_moved_before_rmap');
  lockPcache(k, line);
  const r = findRmap(sh, line, c.oldPtep, k.pid, c.oldVa);
  if (r >= 0) rmapRepoint(sh, r, c.newPtep, c.newVa);
  unlockPcache(sh, line);
  k.env.stat(sh.setOfAddr(c.oldVa) === sh.setOfAddr(c.newVa) ? S.nr_mremap_pset_same : S.nr_mremap_pset_diff);
  return MOVE_DONE;
}

/**
 * Lock the line of `pte` from under both PTE locks. Returns the rmap of (old slot, pid, old address)
 * with the line locked and both PTE locks held; or -1 with every lock dropped: MOVE_AGAIN if the PTE
 * changed while the locks were dropped (pte_same failed), else (no rmap: a kernel bug) the page is
 * skipped.
 */
function lockLineAndFindRmap(c: MoveCtx, pte: number): { r: number; res: number } {
  const { k } = c;
  const line = pteLine(pte);
  const relock = (): void => ptlLockPair(k.env, c.oldPtep, c.newPtep);
  const unlock = (): void => ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  // trylock_pcache, else get a ref, drop both PTE locks, lock_pcache, retake them and re-check.
  if (!lockLineUnderPtl(k, line, c.oldPtep, pte, relock, unlock)) return { r: -1, res: MOVE_AGAIN };
  const r = findRmap(k.sh, line, c.oldPtep, k.pid, c.oldVa);
  if (r < 0) {
    kernelWarn(
      k,
      { fn: 'pcache_move_pte', file: 'managers/processor/pcache/rmap.c' },
      `pcache_move_pte: no rmap for PTE at 0x${c.oldVa.toString(16)}`,
    );
    unlockPcache(k.sh, line);
    unlock();
    return { r: -1, res: MOVE_SKIPPED };
  }
  return { r, res: MOVE_DONE };
}

/**
 * ff47ee16 fastpath (PCACHE_MREMAP_PSET_SAME): old and new share a set, so the line is reused in
 * place; the rmap and the PTE change together under the line lock and both PTE locks.
 */
function pcacheMovePteFastpath(c: MoveCtx, pte: number): number {
  const { k } = c;
  const sh = k.sh;
  const { r, res } = lockLineAndFindRmap(c, pte);
  if (r < 0) return res;
  const line = pteLine(pte);
  k.env.sched('mremap:line_locked');
  rmapRepoint(sh, r, c.newPtep, c.newVa);
  sh.pgtable.store(c.newPtep, sh.pgtable.xchg(c.oldPtep, 0));
  unlockPcache(sh, line);
  ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  k.env.stat(S.nr_mremap_pset_same);
  return MOVE_DONE;
}

/**
 * splitkern's slowpath (PCACHE_MREMAP_PSET_DIFF), phase 1: detach. The old PTE is cleared under both
 * PTE locks; the line stays locked (so no rmap walker looks at it while its rmap names a cleared
 * slot) until phase 2, after the extent's TLB flush, copies it into a line of the new set.
 */
function pcacheMovePteSlowpath(c: MoveCtx, pte: number): number {
  const { k } = c;
  const sh = k.sh;
  const { r, res } = lockLineAndFindRmap(c, pte);
  if (r < 0) return res;
  k.env.sched('mremap:line_locked');
  const v = sh.pgtable.xchg(c.oldPtep, 0);
  ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  c.detached.push({ line: pteLine(pte), r, pte: v, newPtep: c.newPtep, newVa: c.newVa });
  k.env.stat(S.nr_mremap_pset_diff);
  return MOVE_DONE;
}

/**
 * ff47ee16 slowpath as in LegoOS HEAD: copy into a line of the new set and put_pcache(old) now, before
 * the extent's flush_tlb_mm_range (legoos-facts §7.4 hazard 1): another CPU may still write through a
 * stale TLB entry into the old line after it is free or reused.
 */
function pcacheMovePteSlowpathHead(c: MoveCtx, pte: number): number {
  const { k } = c;
  const sh = k.sh;
  const { r, res } = lockLineAndFindRmap(c, pte);
  if (r < 0) return res;
  k.env.sched('mremap:line_locked');
  const v = sh.pgtable.xchg(c.oldPtep, 0);
  ptlUnlockPair(k.env, c.oldPtep, c.newPtep);
  k.env.stat(S.nr_mremap_pset_diff);
  k.env.bugRan('free-before-flush');
  attachSlowpath(k, { line: pteLine(pte), r, pte: v, newPtep: c.newPtep, newVa: c.newVa }, c.bounce);
  return MOVE_DONE;
}

/**
 * Slowpath, phase 2 (attach): the old line's data goes to the bounce buffer, the old line's rmap is
 * removed and the line freed; then a line of the new set gets the data and PTE + rmap are installed
 * together. Entered with the old line locked and no PTE lock held. The detached lines of the extent
 * are still locked, so a new set may have no line to give (they can fill whole sets): then, after a
 * bounded number of evictions, the page is left to M, which already maps it at newVa — a dirty copy
 * is written back there first — and the next touch refaults it.
 */
function attachSlowpath(k: Kern, d: Detached, bounce: Uint8Array): void {
  const sh = k.sh;
  bounce.set(sh.pcdata.subarray(sh.lineOffset(d.line), sh.lineOffset(d.line) + PAGE_SIZE));
  const shm = sh.meta.load(d.line, kMetaShm); // read before the put below may free the line
  const dirty = (d.pte & _PAGE_DIRTY) !== 0;
  const leaveToM = (): void => {
    if (dirty) k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: k.pid, vaddr: d.newVa, page: bounce, shm });
  };
  if (shm !== 0 && dirty) leaveToM(); // before the old line, which other aliases may map, can go
  pcacheRemoveRmapLocked(k, d.line, d.r);
  unlockPcache(sh, d.line);
  putPcache(k, d.line);
  // A shared page is not copied into the new set: another alias of it may be cached there already,
  // so its next touch refills it from M through the alias scan (fault.ts).
  if (shm !== 0) return;
  const nl = pcacheAlloc(k, d.newVa, 2 * sh.geo.ways);
  if (nl < 0) {
    leaveToM();
    return;
  }
  // The rmap first: the PTE below becomes visible to other CPUs' page walks the moment it is stored.
  const rmap = rmapReserve(k);
  if (rmap < 0) {
    k.env.printk(
      'error',
      `pcache: rmap pool exhausted (${sh.geo.nrRmaps} entries) in the mremap slowpath at 0x${d.newVa.toString(16)}: the page is left to M`,
    );
    putPcache(k, nl);
    leaveToM();
    return;
  }
  sh.pcdata.set(bounce, sh.lineOffset(nl));
  ptlLock(k.env, d.newPtep);
  sh.pgtable.store(d.newPtep, (nl << 12) | (d.pte & kPteFlagsMask));
  pcacheAddRmap(k, nl, d.newPtep, d.newVa, k.pid, RMAP_MREMAP_SLOWPATH, rmap);
  ptlUnlock(k.env, d.newPtep);
}
