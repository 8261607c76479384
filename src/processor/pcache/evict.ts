// Eviction (managers/processor/pcache/evict.c): pcache_evict_line with the per-set eviction list
// (evict_line_perset_list), and evict_find_line, whose candidate order and second chance come from
// the policy files evict_lru.ts, evict_fifo.ts and evict_random.ts (--evict). evict_find_line runs
// under the set lock and returns its victim with the line locked, PC_reclaim set, off the LRU and
// one reference taken; pcache_evict_line then works with the line lock only (see meta.ts for the
// lock order it keeps by trylocking each owner's mmap_sem).
import { P2M_PCACHE_FLUSH } from '../../fabric/opcodes.ts';
import {
  _PAGE_COW,
  _PAGE_DIRTY,
  _PAGE_RW,
  kCtlVictimGen,
  kMetaFlags,
  kMetaMapcount,
  kMetaPrev,
  kMetaRef,
  kMetaShm,
  kMmSem,
  kNodeMemory,
  kRmapFlags,
  kRmapOwner,
  kSetLruTail,
  PC_reclaim,
  PC_valid,
  PC_writeback,
  PCACHE_RMAP_reserved,
} from '../../kernel/layout.ts';
import { S } from '../../kernel/stats.ts';
import { downReadTrylock, upRead } from '../../kernel/sync.ts';
import { PAGE_SIZE } from '../../uapi/abi.ts';
import type { Kern } from '../kern.ts';
import { ptlUnlock } from '../pgtable.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from '../tlb.ts';

import { evictFifo } from './evict_fifo.ts';
import { evictLru } from './evict_lru.ts';
import { evictRandom } from './evict_random.ts';
import {
  freePcache,
  getPcacheUnlessZero,
  lockSet,
  lruAddHead,
  lruDel,
  pcacheFlags,
  putPcache,
  rmapList,
  rmapView,
  trylockPcache,
  unlockPcache,
  unlockSet,
} from './meta.ts';
import { psetAddEviction, psetRemoveEviction } from './perset.ts';
import { movingRangeCovers, pcacheRemoveRmapLocked, rmapGetPteLocked } from './rmap.ts';
import { victimInsert } from './victim.ts';
import type { EvictPolicy as EvictPolicyName } from '../../kernel/config.ts';

export const EVICT_SUCCEED = 0;
export const EVICT_EAGAIN_FREEABLE = 1;
export const EVICT_EAGAIN_CONCURRENT = 2;
export const EVICT_FAILURE_FIND = 3;
export const EVICT_FAILURE_EVICT = 4;

/**
 * An eviction policy (evict_find_line_{lru,fifo,random}): the order evict_find_line tries the
 * set's lines in, and whether a line that qualifies gets a second chance instead of being picked.
 * Both run under the set lock; secondChance also holds the line lock and a reference.
 */
export interface EvictPolicy {
  /** reorder, in place, the candidates listed from the LRU tail (oldest) to the head */
  order(k: Kern, cands: number[]): void;
  /** true if `line` was given a second chance (and moved on the LRU): it is not picked */
  secondChance(k: Kern, set: number, line: number, nrCands: number): boolean;
}

const POLICIES: Record<EvictPolicyName, EvictPolicy> = { lru: evictLru, fifo: evictFifo, random: evictRandom };

/**
 * evict_find_line: pick a victim line in `set`. Returns it Locked, Reclaim, off the LRU, ref+1, or -1.
 * Candidates must be Valid (a line inside common_do_fill_page is not), trylockable, not Writeback, and
 * have no users beyond their mappings (ref <= 2 after our get).
 */
function evictFindLine(k: Kern, set: number): number {
  const sh = k.sh;
  const policy = POLICIES[k.env.config.evict];
  lockSet(k, set);
  const cands: number[] = [];
  for (let e = sh.set.get(set, kSetLruTail); e !== 0; e = sh.meta.get(e - 1, kMetaPrev)) cands.push(e - 1);
  policy.order(k, cands);
  let picked = -1;
  const deferredPuts: number[] = [];
  for (const line of cands) {
    if (!getPcacheUnlessZero(sh, line)) continue;
    const flags = pcacheFlags(sh, line);
    // Our reference may turn out to be the last one (a fault that lost its pte_same race puts its
    // fresh line meanwhile): drop it with put_pcache semantics, outside the set lock, or the line
    // leaks with ref 0 and the set shrinks forever.
    if ((flags & PC_valid) === 0 || (flags & PC_writeback) !== 0 || !trylockPcache(sh, line)) {
      if (sh.meta.sub(line, kMetaRef, 1) === 1) deferredPuts.push(line);
      continue;
    }
    if (sh.meta.load(line, kMetaRef) > sh.meta.load(line, kMetaMapcount) + 1) {
      unlockPcache(sh, line);
      if (sh.meta.sub(line, kMetaRef, 1) === 1) deferredPuts.push(line);
      continue;
    }
    if (policy.secondChance(k, set, line, cands.length)) {
      unlockPcache(sh, line);
      if (sh.meta.sub(line, kMetaRef, 1) === 1) deferredPuts.push(line);
      continue;
    }
    lruDel(sh, set, line);
    sh.meta.or(line, kMetaFlags, PC_reclaim);
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
  if (line < 0) {
    k.env.stat(S.nr_pcache_eviction_eagain_freeable);
    return EVICT_EAGAIN_FREEABLE;
  }
  const rmaps = rmapList(sh, line);
  const nrMapped = sh.meta.load(line, kMetaMapcount);
  // Pin the owners' address spaces (reader-trylock; skip the line if an address-space change runs,
  // or if it is the very range this CPU is moving in mremap).
  const pinned: number[] = [];
  let ok = nrMapped > 0;
  for (const r of rmaps) {
    const v = rmapView(sh, r);
    const slot = k.mmSlotOf(v.owner);
    if (slot < 0) {
      ok = false;
      break;
    }
    if (slot === k.mmSlot && movingRangeCovers(sh, slot, v.address)) {
      ok = false;
      break;
    }
    if (pinned.includes(slot)) continue;
    // Our own mm while we hold its mmap_sem for write (mremap slowpath allocating in the new set):
    // M and P agree on every address outside the range being moved, so the write-back is safe.
    if (slot === k.mmSlot && k.mmapWriteHeld) continue;
    if (!downReadTrylock(sh.mm.a, sh.mm.idx(slot, kMmSem))) {
      ok = false;
      break;
    }
    pinned.push(slot);
  }
  if (!ok) {
    for (const s of pinned) upRead(sh.mm.a, sh.mm.idx(s, kMmSem));
    lockSet(k, set);
    sh.meta.and(line, kMetaFlags, ~PC_reclaim);
    lruAddHead(sh, set, line);
    unlockSet(k, set);
    unlockPcache(sh, line);
    putPcache(k, line);
    k.env.stat(S.nr_pcache_eviction_failure_evict);
    return EVICT_FAILURE_EVICT;
  }
  const gen = sh.ctl.load(kCtlVictimGen);
  const entries = rmaps.map((r) => psetAddEviction(k, set, sh.rmap.get(r, kRmapOwner), sh.rmapAddr.get(r)));
  k.env.sched('evict:entries_added');
  // pcache_try_to_unmap_reserve_check_dirty
  let dirty = false;
  let writable = false;
  for (const r of rmaps) {
    const v = rmapView(sh, r);
    const ownerSlot = k.mmSlotOf(v.owner);
    tlbGatherStart(k, ownerSlot);
    const ptep = rmapGetPteLocked(k, line, r, 'pcache_try_to_unmap_reserve_one');
    if (ptep < 0) {
      tlbGatherEnd(k, ownerSlot);
      continue;
    }
    const old = sh.pgtable.xchg(ptep, 0);
    if (old & _PAGE_DIRTY) dirty = true;
    // a COW-protected PTE is writable for the victim copy: only a line with one mapping goes there
    if (old & (_PAGE_RW | _PAGE_COW)) writable = true;
    ptlUnlock(k.env, ptep);
    k.env.sched('evict:pte_cleared');
    flushTlbMmRange(k, v.owner, ownerSlot, v.address, v.address + PAGE_SIZE);
    tlbGatherEnd(k, ownerSlot);
    sh.rmap.or(r, kRmapFlags, PCACHE_RMAP_reserved);
  }
  // Write back (pcache_flush_one): one P2M_PCACHE_FLUSH per mapping; a shared page once, by its tag.
  const data = sh.pcdata.subarray(sh.lineOffset(line), sh.lineOffset(line) + PAGE_SIZE);
  const shm = sh.meta.load(line, kMetaShm);
  if (shm !== 0) k.env.stat(S.nr_shm_evict);
  if (dirty) {
    sh.meta.or(line, kMetaFlags, PC_writeback);
    for (const r of shm !== 0 ? rmaps.slice(0, 1) : rmaps) {
      const v = rmapView(sh, r);
      const rep = k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: v.owner, vaddr: v.address, page: data, shm });
      k.env.stat(rep.status < 0 ? S.nr_clflush_fail : S.nr_clflush);
    }
    sh.meta.and(line, kMetaFlags, ~PC_writeback);
  } else k.env.stat(S.nr_clflush_clean_skipped);
  // The victim cache is keyed by (pid, address): a shared page, which other addresses may map, stays
  // out of it (its fill must go through M's tag and the alias scan).
  const only = rmaps.length === 1 && shm === 0 ? rmaps[0] : undefined;
  if (sh.geo.victims > 0 && only !== undefined) {
    const v = rmapView(sh, only);
    victimInsert(k, set, v.owner, v.address, data, gen, writable);
  }
  // pcache_free_reserved_rmap
  for (const r of rmaps) pcacheRemoveRmapLocked(k, line, r);
  for (const e of entries) psetRemoveEviction(k, set, e);
  for (const s of pinned) upRead(sh.mm.a, sh.mm.idx(s, kMmSem));
  // pcache_ref_freeze(pcm, nr_mapped + 1): the mappings' refs and ours.
  sh.meta.and(line, kMetaFlags, ~PC_reclaim);
  const refIdx = sh.meta.idx(line, kMetaRef);
  if (Atomics.compareExchange(sh.meta.a, refIdx, nrMapped + 1, 0) === nrMapped + 1) {
    unlockPcache(sh, line);
    freePcache(k, line);
    k.env.stat(S.nr_pcache_eviction_succeed);
    return EVICT_SUCCEED;
  }
  // Concurrent users hold references: they free it on their last put.
  unlockPcache(sh, line);
  putPcache(k, line, nrMapped + 1);
  k.env.stat(S.nr_pcache_eviction_eagain_concurrent);
  return EVICT_EAGAIN_CONCURRENT;
}
