// P-side page-table maintenance for address-space changes (managers/processor/pgtable.c, rmap.c):
// release_pgtable (munmap, brk shrink, MAP_FIXED replace, exit) with pcache_zap_pte, and the PTE side
// of mprotect; mremap's move_page_tables is in mremap.ts. All run with P's mmap_sem held for write,
// after M has changed the VMAs ("only call after M updated its mmap"). Locks: a PTE-page lock, then
// the line lock by trylock or by lockLineUnderPtl's drop-and-retake (never a blocking line lock under
// a PTE lock); with both dropped, the TLB flush, the deferred putPcache of each zapped line (the set
// lock when it frees) and victimInvalidateRange (the victim lock, kCtlVictimLock). Called on the CPU's
// own thread. A dirty PTE of a shared page is written back (P2M_PCACHE_FLUSH by tag) while its line
// and PTE locks are held, as the fill holds its PTE lock across P2M_PCACHE_MISS.
import {
  _PAGE_ACCESSED,
  _PAGE_COW,
  _PAGE_DIRTY,
  _PAGE_PRESENT,
  _PAGE_PROTNONE,
  _PAGE_RW,
  _PAGE_USER,
  kMetaMapcount,
  kMetaShm,
  kMmPgd,
  kNodeMemory,
} from '../kernel/layout.ts';
import { P2M_PCACHE_FLUSH } from '../fabric/opcodes.ts';
import { S } from '../kernel/stats.ts';
import { PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE } from '../uapi/abi.ts';
import type { Kern } from './kern.ts';
import { getPcache, lockPcache, putPcache, trylockPcache, unlockPcache } from './pcache/meta.ts';
import { findRmap, pcacheRemoveRmapLocked } from './pcache/rmap.ts';
import { victimInvalidateRange } from './pcache/victim.ts';
import { pteLine, pteMapped, ptlLock, ptlUnlock, walkNoAlloc } from './pgtable.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from './tlb.ts';
import { kernelWarn } from '../kernel/report.ts';

const PMD_SIZE = 2 ** 21;

function pgdOf(k: Kern): number {
  return k.sh.mm.get(k.mmSlot, kMmPgd);
}

/**
 * Lock a present PTE's line from under the PTE lock (the pcache_zap_pte / pcache_move_pte dance):
 * trylock; on failure take a ref, drop the PTE lock(s), sleep on the line lock, retake the PTE
 * lock(s), and re-check the PTE. Returns false (all locks dropped) if the PTE changed: retry.
 */
export function lockLineUnderPtl(
  k: Kern,
  line: number,
  ptep: number,
  pte: number,
  relock: () => void,
  unlock: () => void,
): boolean {
  if (trylockPcache(k.sh, line)) return true;
  getPcache(k.sh, line);
  unlock();
  lockPcache(k, line);
  relock();
  if (k.sh.pgtable.load(ptep) !== pte) {
    unlockPcache(k.sh, line);
    unlock();
    putPcache(k, line);
    return false;
  }
  putPcache(k, line); // still mapped, so this never frees
  return true;
}

/**
 * Write back a shared line whose dirty PTE is being zapped (line and PTE locked). P2M_PCACHE_FLUSH
 * by tag: M writes the page's frame wherever it is mapped; -EFAULT means no mapping of the object is
 * left anywhere (this was the last one), and nobody can read the page again.
 */
function shmZapFlush(k: Kern, line: number, va: number): void {
  const sh = k.sh;
  const data = sh.pcdata.subarray(sh.lineOffset(line), sh.lineOffset(line) + PAGE_SIZE);
  const shm = sh.meta.load(line, kMetaShm);
  const rep = k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid: k.pid, vaddr: va, page: data, shm });
  if (rep.status === 0) k.env.stat(S.nr_shm_zap_flush);
}

/**
 * release_pgtable(start, end) = unmap_page_range + free_pgd_range: zap every PTE, drop its rmap, and
 * free the lines only after the TLB flush (a line freed before the flush can be reused while another
 * CPU still writes through a stale TLB entry: bug `free-before-flush`). Dirty private data is
 * discarded, as munmap/exit discard it (zap_pte_range); a dirty shared page is written back to M.
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
    for (let va = start; va < end;) {
      const ptep = walkNoAlloc(sh, pgd, va);
      if (ptep < 0) {
        va = Math.min(end, (Math.floor(va / PMD_SIZE) + 1) * PMD_SIZE);
        continue;
      }
      for (;;) {
        const pte = sh.pgtable.load(ptep);
        if (pte === 0) break;
        ptlLock(k.env, ptep);
        const cur = sh.pgtable.load(ptep);
        if (!pteMapped(cur)) {
          sh.pgtable.store(ptep, 0);
          ptlUnlock(k.env, ptep);
          break;
        }
        const line = pteLine(cur);
        if (
          !lockLineUnderPtl(
            k,
            line,
            ptep,
            cur,
            () => ptlLock(k.env, ptep),
            () => ptlUnlock(k.env, ptep),
          )
        )
          continue;
        const r = findRmap(sh, line, ptep, pid, va);
        if (r < 0) {
          kernelWarn(
            k,
            { fn: 'pcache_zap_pte', file: 'managers/processor/pcache/rmap.c' },
            `pte: ${ptep} ptent: 0x${(cur >>> 0).toString(16)} address: 0x${va.toString(16)}\ncorrupted: no rmap for a mapped PTE`,
          );
        } else {
          // The PTE is cleared only when its rmap is found (7207dd02).
          const old = sh.pgtable.xchg(ptep, 0);
          // A shared page outlives this mapping: its dirty data goes to M before the PTE that knew
          // it was dirty is gone (the line's other mappings, if any, may be clean).
          if (old & _PAGE_DIRTY && sh.meta.load(line, kMetaShm) !== 0) shmZapFlush(k, line, va);
          pcacheRemoveRmapLocked(k, line, r);
          k.env.sched('zap:pte_cleared');
          if (earlyFree) {
            // free-before-flush (LegoOS HEAD pcache_zap_pte): put_pcache now, before the flush below.
            unlockPcache(sh, line);
            ptlUnlock(k.env, ptep);
            putPcache(k, line);
            k.env.bugRan('free-before-flush');
            zapped++;
            break;
          }
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

/** The PTE side of mprotect: rewrite the protection of every mapped PTE, then flush. */
export function changeProtection(k: Kern, start: number, end: number, prot: number): void {
  const sh = k.sh;
  const pgd = pgdOf(k);
  const accessible = (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) !== 0;
  let changed = 0;
  tlbGatherStart(k, k.mmSlot);
  try {
    for (let va = start; va < end;) {
      const ptep = walkNoAlloc(sh, pgd, va);
      if (ptep < 0) {
        va = Math.min(end, (Math.floor(va / PMD_SIZE) + 1) * PMD_SIZE);
        continue;
      }
      if (sh.pgtable.load(ptep) !== 0) {
        ptlLock(k.env, ptep);
        let pte = sh.pgtable.load(ptep);
        if (pteMapped(pte)) {
          // A private line another process still maps (after fork) gets write permission as _PAGE_COW:
          // the first write copies it (pcache_do_wp_page). A private line's mapcount can only grow by
          // a fork of this mm, which our mmap_sem excludes. A line of a shared page (shm tag, stable
          // while this PTE maps it) is written in place by every mapping.
          const line = pteLine(pte);
          const shared = sh.meta.load(line, kMetaMapcount) > 1 && sh.meta.load(line, kMetaShm) === 0;
          const wr = (prot & PROT_WRITE) === 0 ? 0 : shared ? _PAGE_COW : _PAGE_RW;
          // by CAS (ptep_modify_prot_start/commit): another CPU's MMU may set _PAGE_DIRTY meanwhile
          for (;;) {
            const keep = pte & ~(_PAGE_PRESENT | _PAGE_RW | _PAGE_PROTNONE | _PAGE_COW);
            const npte = accessible ? keep | _PAGE_PRESENT | _PAGE_USER | wr : keep | _PAGE_PROTNONE;
            const seen = sh.pgtable.cas(ptep, pte, npte);
            if (seen === pte) break;
            pte = seen;
          }
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
