// The pcache miss path (arch/x86/mm/fault.c do_page_fault -> pcache_handle_fault ->
// pcache_handle_pte_fault -> common_do_fill_page), DESIGN.md §5:
//   TLB miss -> walk -> PTE not present -> wait for a pending write-back of this page -> allocate a line
//   in the address's set (evicting if full) -> victim cache -> P2M_PCACHE_MISS -> copy 4 KiB into the
//   line -> set PTE -> add rmap. The MMU then refills its TLB from the new PTE.
// Unlike LegoOS, a fault takes P's mmap_sem for read, so it serialises with mremap/munmap on P.
// A page of a shared mapping (M's reply carries its shm tag) is cached in one line per set however
// many addresses map it: the fill maps the line of the set already tagged with the page, if there is
// one (shmFindAlias). M colours shared mappings so that every alias of a page indexes the same set,
// which makes the pcache physically tagged for shared pages, as sparc64's D-cache is. The alias scan
// takes the set lock under the PTE lock: every set-lock holder only trylocks a line or a PTE lock
// beneath it, so this cannot close a cycle.
import { P2M_PCACHE_MISS } from '../../fabric/opcodes.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_COW,
  _PAGE_DIRTY,
  _PAGE_PROTNONE,
  _PAGE_RW,
  kMetaFlags,
  kMetaMapcount,
  kMetaShm,
  kMmAsChanges,
  kMmKilled,
  kMmSem,
  kNodeMemory,
  kSetNrEviction,
  kSetShmGen,
  PC_valid,
  RMAP_COW,
  RMAP_FILL_PAGE_REMOTE,
  RMAP_VICTIM_FILL,
} from '../../kernel/layout.ts';
import { S } from '../../kernel/stats.ts';
import { downRead, upRead } from '../../kernel/sync.ts';
import { EACCES, ENOMEM, PAGE_SIZE, PROT_WRITE } from '../../uapi/abi.ts';
import type { Kern } from '../kern.ts';
import { pcacheAlloc } from './alloc.ts';
import { getPcache, lockSet, putPcache, trylockPcache, unlockPcache, unlockSet } from './meta.ts';
import { psetFindEviction } from './perset.ts';
import {
  findRmap,
  pcacheAddRmap,
  pcacheAddRmapLocked,
  pcacheRemoveRmapLocked,
  rmapReserve,
  rmapUnreserve,
} from './rmap.ts';
import { victimTryFill } from './victim.ts';
import { pteLine, pteMapped, ptlLock, ptlUnlock, walk, mkPte } from '../pgtable.ts';
import { lockLineUnderPtl } from '../mm.ts';
import { flushTlbMmRange } from '../tlb.ts';
import { kernelWarn } from '../../kernel/report.ts';

export const FAULT_OK = 0;
export const FAULT_SIGSEGV_MAPERR = 1; // no mapping (SEGV_MAPERR)
export const FAULT_SIGSEGV_ACCERR = 2; // mapping forbids the access (SEGV_ACCERR)
export const FAULT_OOM = 3; // "fail to allocate pcache or victim cache lines"
export const FAULT_KILLED = 4; // the process is being killed by a fatal signal of another thread
export const FAULT_OOM_REMOTE = 5; // the memory component has no DRAM left for the page (P2M_PCACHE_MISS -ENOMEM)

const WP_RETRY = -1;
const SHM_RETRY = -2;

/**
 * The alias scan of a shared page's fill, under the set lock: the line of this set that already
 * caches the page (`tag`) is returned locked, with a reference taken for the new mapping; if there is
 * none, `line` (fresh, not yet mapped) is tagged with the page and returned. SHM_RETRY: a line of the
 * page is busy (being filled, unmapped or evicted), or one left the set since the fill read `gen0`
 * before asking M, so its write-back may be newer than the copy M sent.
 */
function shmFindAlias(k: Kern, set: number, line: number, tag: number, gen0: number): number {
  const sh = k.sh;
  lockSet(k, set);
  try {
    if (sh.set.load(set, kSetShmGen) !== gen0) return SHM_RETRY;
    for (let w = 0; w < sh.geo.ways; w++) {
      const l = set + w * sh.geo.nrSets;
      if (l === line || sh.meta.get(l, kMetaShm) !== tag) continue;
      if (!trylockPcache(sh, l)) return SHM_RETRY;
      if ((sh.meta.load(l, kMetaFlags) & PC_valid) === 0) {
        unlockPcache(sh, l); // tagged but not mapped: being filled, or unmapped and about to be freed
        return SHM_RETRY;
      }
      getPcache(sh, l);
      return l;
    }
    sh.meta.set(line, kMetaShm, tag);
    return line;
  } finally {
    unlockSet(k, set);
  }
}

/**
 * pcache_do_wp_page: a write to a PTE write-protected for copy-on-write (_PAGE_COW). The only mapping
 * left of the line makes it writable in place (PCACHE_FAULT_WP_REUSE); a line still shared with
 * another process is copied into a new line of the same set, which this PTE then maps writable and
 * dirty (PCACHE_FAULT_WP_COW). Unlike LegoOS, the new line is allocated before the PTE lock is taken
 * (an eviction it triggers may need any PTE lock, this one's too), and the PTE re-checked after.
 * The TLB flush of the old translation completes with the old line still locked, so the other side
 * cannot reuse it in place while a CPU of this mm could still read it through a stale entry.
 * Returns a FAULT_* code, or WP_RETRY when the PTE changed meanwhile.
 */
function pcacheDoWpPage(k: Kern, slot: number, va: number, ptep: number, orig: number): number {
  const sh = k.sh;
  const pid = k.pid;
  const page = va - (va % PAGE_SIZE);
  k.env.stat(S.nr_pgfault_wp);
  const nline = pcacheAlloc(k, va);
  if (nline < 0) return FAULT_OOM;
  const rmap = rmapReserve(k);
  if (rmap < 0) {
    putPcache(k, nline);
    return FAULT_OOM;
  }
  const giveUp = (): void => {
    rmapUnreserve(k, rmap);
    putPcache(k, nline);
  };
  ptlLock(k.env, ptep);
  const old = pteLine(orig);
  const unlock = (): void => ptlUnlock(k.env, ptep);
  if (sh.pgtable.load(ptep) !== orig) {
    unlock();
    giveUp();
    return WP_RETRY;
  }
  if (!lockLineUnderPtl(k, old, ptep, orig, () => ptlLock(k.env, ptep), unlock)) {
    giveUp(); // every lock dropped: the PTE changed while we slept on the line
    return WP_RETRY;
  }
  if (sh.meta.load(old, kMetaMapcount) === 1) {
    // by CAS: nothing else writes a read-only PTE under its lock but the MMU's accessed/dirty bits
    let cur = orig;
    for (;;) {
      const seen = sh.pgtable.cas(ptep, cur, (cur & ~_PAGE_COW) | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED);
      if (seen === cur) break;
      cur = seen;
    }
    unlockPcache(sh, old);
    unlock();
    giveUp();
    k.env.stat(S.nr_pgfault_wp_reuse);
    return FAULT_OK;
  }
  k.env.sched('cow:line_locked');
  sh.pcdata.copyWithin(sh.lineOffset(nline), sh.lineOffset(old), sh.lineOffset(old) + PAGE_SIZE);
  sh.pgtable.store(ptep, mkPte(nline, true) | _PAGE_DIRTY);
  pcacheAddRmap(k, nline, ptep, page, pid, RMAP_COW, rmap);
  const r = findRmap(sh, old, ptep, pid, page);
  if (r >= 0) pcacheRemoveRmapLocked(k, old, r);
  else
    kernelWarn(
      k,
      { fn: 'pcache_remove_rmap', file: 'managers/processor/pcache/rmap.c' },
      `pte: ${ptep} ptent: 0x${(orig >>> 0).toString(16)} address: 0x${page.toString(16)}\nfail to remove`,
    );
  flushTlbMmRange(k, pid, slot, page, page + PAGE_SIZE);
  unlockPcache(sh, old);
  unlock();
  if (r >= 0) putPcache(k, old); // the removed rmap's reference
  k.env.stat(S.nr_pgfault_wp_cow);
  return FAULT_OK;
}

export function pcacheHandleFault(k: Kern, va: number, write: boolean): number {
  const sh = k.sh;
  const slot = k.mmSlot;
  k.env.stat(S.nr_pgfault);
  if (sh.mm.load(slot, kMmKilled) !== 0) return FAULT_KILLED;
  const sem = sh.mm.idx(slot, kMmSem);
  downRead(k.env, sh.mm.a, sem, slot);
  // A fault inside an address-space change of its own mm: mmap_sem excludes it, unless the change
  // runs without it (mremap-unserialized): count it as that flag's broken branch at work.
  if (sh.mm.load(slot, kMmAsChanges) > 0 && k.env.bugs.has('mremap-unserialized')) k.env.bugRan('mremap-unserialized');
  try {
    return handlePteFault(k, slot, va, write);
  } finally {
    upRead(sh.mm.a, sem);
  }
}

function handlePteFault(k: Kern, slot: number, va: number, write: boolean): number {
  const sh = k.sh;
  const pid = k.pid;
  const page = va - (va % PAGE_SIZE);
  const set = sh.setOfAddr(va);
  for (;;) {
    const ptep = walk(k.env, slot, va, true);
    const orig = sh.pgtable.load(ptep);
    if (pteMapped(orig)) {
      if (orig & _PAGE_PROTNONE) return FAULT_SIGSEGV_ACCERR;
      if (write && (orig & _PAGE_RW) === 0) {
        if ((orig & _PAGE_COW) === 0) return FAULT_SIGSEGV_ACCERR; // the mapping is read-only
        const r = pcacheDoWpPage(k, slot, va, ptep, orig);
        if (r === WP_RETRY) continue;
        return r;
      }
      // Spurious: a stale TLB entry after a remote upgrade, or another CPU filled it first.
      k.env.stat(S.spurious_fault);
      return FAULT_OK;
    }
    // A dirty copy of this page is on its way to M: wait, or we would fetch the stale copy.
    k.env.stat(S.nr_pset_list_lookup);
    if (psetFindEviction(sh, set, pid, va) >= 0) {
      k.env.stat(S.nr_pset_list_hit);
      k.env.irq();
      k.env.wait(sh.set.a, sh.set.idx(set, kSetNrEviction), sh.set.load(set, kSetNrEviction), 0.2, 'wait:eviction');
      continue;
    }
    const line = pcacheAlloc(k, va);
    if (line < 0) return FAULT_OOM;
    // The rmap is taken now, so that the PTE set below is never retracted for want of one.
    const rmap = rmapReserve(k);
    if (rmap < 0) {
      putPcache(k, line);
      k.env.printk(
        'error',
        `pcache: rmap pool exhausted (${sh.geo.nrRmaps} entries) filling 0x${page.toString(16)} for pid ${pid}: FAULT_OOM`,
      );
      return FAULT_OOM;
    }
    const giveUp = (): void => {
      rmapUnreserve(k, rmap);
      putPcache(k, line);
    };
    k.env.sched('fault:allocated');
    const victimProt = victimTryFill(k, pid, va, line);
    ptlLock(k.env, ptep);
    if (sh.pgtable.load(ptep) !== orig) {
      // A concurrent fault won the race (pte_same failed).
      ptlUnlock(k.env, ptep);
      giveUp();
      continue;
    }
    // Re-check the eviction list under the PTE lock. While we were allocating (which can take long:
    // it may evict), another CPU may have filled this page, dirtied it and started evicting it: its
    // PTE is none again (pte_same holds) but the dirty data is still on its way to M. The evictor adds
    // its entry before clearing the PTE under this lock, so here we see it. Without this, the fill
    // below reads the stale copy from M and the write is lost.
    if (victimProt < 0 && psetFindEviction(sh, set, pid, va) >= 0) {
      ptlUnlock(k.env, ptep);
      giveUp();
      k.env.stat(S.nr_pset_list_hit);
      k.env.irq();
      continue;
    }
    let writable: boolean;
    let caller = RMAP_FILL_PAGE_REMOTE;
    if (victimProt >= 0) {
      writable = victimProt === 1;
      caller = RMAP_VICTIM_FILL;
      k.env.stat(S.nr_pcache_fill_from_victim);
    } else {
      // The fill RPC runs under the PTE lock, as in LegoOS (fill_func inside common_do_fill_page).
      const gen0 = sh.set.load(set, kSetShmGen);
      const rep = k.fab.sendReply(kNodeMemory, P2M_PCACHE_MISS, { pid, vaddr: page, flags: write ? 1 : 0 });
      if (rep.status < 0) {
        ptlUnlock(k.env, ptep);
        giveUp();
        if (rep.status === -ENOMEM) return FAULT_OOM_REMOTE;
        return rep.status === -EACCES ? FAULT_SIGSEGV_ACCERR : FAULT_SIGSEGV_MAPERR;
      }
      writable = (rep.aux & PROT_WRITE) !== 0;
      // (a write the mapping forbids maps nothing: the SIGSEGV below, before any alias is taken)
      const alias = rep.shm !== 0 && (writable || !write) ? shmFindAlias(k, set, line, rep.shm, gen0) : line;
      if (alias === SHM_RETRY) {
        ptlUnlock(k.env, ptep);
        giveUp();
        k.env.stat(S.nr_pcache_fill_shm_retry);
        k.env.irq();
        k.env.wait(sh.set.a, sh.set.idx(set, kSetShmGen), sh.set.load(set, kSetShmGen), 0.2, 'wait:shm_gen');
        continue;
      }
      if (alias !== line) {
        // Another address of this shared page is cached in `alias`: map that line here too.
        sh.pgtable.store(ptep, mkPte(alias, writable));
        pcacheAddRmapLocked(k, alias, rmap, ptep, page, pid, RMAP_FILL_PAGE_REMOTE);
        unlockPcache(sh, alias);
        ptlUnlock(k.env, ptep);
        putPcache(k, line);
        k.env.stat(S.nr_pcache_fill_shm_alias);
        return FAULT_OK;
      }
      sh.pcdata.set(rep.mbox.page, sh.lineOffset(line));
      k.env.stat(S.nr_pcache_fill_from_memory);
    }
    if (write && !writable) {
      ptlUnlock(k.env, ptep);
      giveUp();
      return FAULT_SIGSEGV_ACCERR;
    }
    // "Set pte before adding rmap, cause rmap may need to validate pte"
    sh.pgtable.store(ptep, mkPte(line, writable));
    k.env.sched('fault:pte_set');
    pcacheAddRmap(k, line, ptep, page, pid, caller, rmap);
    ptlUnlock(k.env, ptep);
    return FAULT_OK;
  }
}
