// Processes on P: the mm slot of a new process, do_fork for a new process (kernel/fork.c copy_process
// -> p2m_fork -> fork_dup_pcache, legoos-facts §8), and the copy of the parent's page tables
// (pcache_copy_page_range / pcache_copy_one_pte, managers/processor/pgtable.c).
//
// A JS stack cannot be copied, so a fork's child does not return from fork: it starts at a named
// thread entry of the program with an argument, as clone(fn, arg) does. Everything else is fork's:
// a new pid and mm, every VMA copied by M (P2M_FORK), every mapped line of the parent shared with the
// child through a second rmap (RMAP_FORK), private writable PTEs write-protected on both sides with
// the _PAGE_COW software bit, so the first write of either side breaks the sharing (pcacheDoWpPage,
// pcache/fault.ts).
//
// Locks, in the order of meta.ts: the parent's mmap_sem for write (dup_mmap), then the child's (a
// fresh mm nobody else can reach yet), around the M call and the whole copy; per PTE, the parent's
// PTE lock, the line by lockLineUnderPtl (LegoOS calls pcache_add_rmap under the PTE lock, "XXX: May
// deadlock" with an evictor that holds the line and waits for this PTE lock; the trylock-or-drop
// dance removes that cycle), then the child's PTE lock (its table page is the child's alone). The
// parent's TLB is flushed per VMA after its PTEs are write-protected, before the child can run. With
// the rmap pool exhausted a line is not shared: its data goes to M for the child (P2M_PCACHE_FLUSH
// under the child's pid) and the child faults the page in.
import { P2M_FORK, P2M_PCACHE_FLUSH } from '../fabric/opcodes.ts';
import { isCowMapping, zForkReply, type ForkReq } from '../fabric/proto.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_COW,
  _PAGE_DIRTY,
  _PAGE_RW,
  kCtlHostDoorbell,
  kCtlLiveThreads,
  kCtlSpawnHead,
  kMaxProcs,
  kMetaShm,
  kMaxTasks,
  kMmCpumask,
  kMmFaultAddr,
  kMmKilled,
  kMmMovingEnd,
  kMmMovingStart,
  kMmPgd,
  kMmPid,
  kMmSem,
  kMmShootdowns,
  kMmSiCode,
  kMmSleepers,
  kMmUsers,
  kNodeMemory,
  kSpawnRing,
  kThreadAffinity,
  kThreadCpu,
  kThreadEntry,
  kThreadParent,
  kThreadPid,
  kThreadFClearTid,
  RMAP_FORK,
  type Shared,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { csAdmitTask } from '../kernel/ctlsched.ts';
import { downWrite, upWrite } from '../kernel/sync.ts';
import { EAGAIN, EINTR, ENOMEM, PAGE_SIZE, SIGCHLD } from '../uapi/abi.ts';
import type { Kern } from './kern.ts';
import { lockLineUnderPtl } from './mm.ts';
import { getPcache, unlockPcache } from './pcache/meta.ts';
import { pcacheAddRmapLocked, rmapReserve } from './pcache/rmap.ts';
import { allocTablePage, freePgtables, pteLine, pteMapped, ptlLock, ptlUnlock, walk, walkNoAlloc } from './pgtable.ts';
import { allocTid, abandonTid } from './pid.ts';
import { flushTlbMmRange, tlbGatherEnd, tlbGatherStart } from './tlb.ts';

const PMD_SIZE = 2 ** 21;
/**
 * mm_alloc for process `pid`: claim a free mm slot (CAS of kMmPid), give it a PGD and reset its
 * words; kMmUsers = 1 (the process's first thread). -1 if every slot is in use.
 */
export function mmSlotAlloc(k: Kern, pid: number): number {
  const sh = k.sh;
  let slot = -1;
  for (let s = 0; s < kMaxProcs; s++) {
    if (sh.mm.cas(s, kMmPid, 0, pid) === 0) {
      slot = s;
      break;
    }
  }
  if (slot < 0) return -1;
  sh.mm.set(slot, kMmPgd, allocTablePage(sh, k.env));
  for (const f of [kMmSem, kMmCpumask, kMmKilled, kMmShootdowns, kMmSiCode, kMmSleepers]) sh.mm.store(slot, f, 0);
  sh.mm.store(slot, kMmUsers, 1);
  sh.mmF.set(slot, kMmMovingStart, -1);
  sh.mmF.set(slot, kMmMovingEnd, -1);
  sh.mmF.set(slot, kMmFaultAddr, -1);
  return slot;
}

/**
 * __mmdrop: the slot's page tables go back to the pool and the slot is free. The caller guarantees
 * the mm is dead: no PTE left, no CPU with it loaded, no shootdown of it in flight.
 */
export function mmSlotFree(k: Kern, slot: number): void {
  const sh = k.sh;
  const pgd = sh.mm.get(slot, kMmPgd);
  sh.mm.store(slot, kMmPid, 0);
  freePgtables(k.env, pgd);
}

/** Reserve a task in threads-max (copy_process: -EAGAIN past it). */
export function reserveTask(sh: Shared): boolean {
  for (;;) {
    const live = sh.ctl.load(kCtlLiveThreads);
    if (live >= kMaxTasks) return false;
    if (sh.ctl.cas(kCtlLiveThreads, live, live + 1) === live) return true;
  }
}

/** Hand a created task to the host, which starts it in the task pool (wake_up_new_task). */
export function publishTask(sh: Shared, tid: number): void {
  csAdmitTask(sh, tid); // a controlled schedule knows it from now on (its worker arrives when chosen)
  const i = sh.ctl.add(kCtlSpawnHead, 1);
  sh.spawn.store(i % kSpawnRing, tid);
  sh.ctl.add(kCtlHostDoorbell, 1);
  sh.ctl.notify(kCtlHostDoorbell);
}

/**
 * do_fork of the calling thread's process: the child starts at thread entry `entryIndex` with `arg`.
 * Returns the child's pid, or -EAGAIN (threads-max, or no free tid), -ENOMEM (no mm slot), or M's error.
 */
export function doFork(k: Kern, entryIndex: number, arg: number): number {
  const sh = k.sh;
  // copy_process: a fatal signal already pending makes no new process (the syscall never returns)
  if (sh.mm.load(k.mmSlot, kMmKilled) !== 0) return -EINTR;
  if (!reserveTask(sh)) return -EAGAIN;
  const pid = allocTid(sh);
  if (pid < 0) {
    sh.ctl.sub(kCtlLiveThreads, 1);
    return -EAGAIN;
  }
  const slot = mmSlotAlloc(k, pid);
  if (slot < 0) {
    abandonTid(sh, pid);
    sh.ctl.sub(kCtlLiveThreads, 1);
    return -ENOMEM;
  }
  sh.threads.set(pid, kThreadPid, pid);
  sh.threads.set(pid, kThreadEntry, entryIndex);
  sh.threads.set(pid, kThreadParent, k.pid);
  sh.threads.store(pid, kThreadCpu, k.cpu);
  sh.threads.store(pid, kThreadAffinity, sh.threads.load(k.tid, kThreadAffinity));
  sh.threadArgs.set(pid, arg);
  sh.threadF.set(pid, kThreadFClearTid, 0);
  const ret = dupMmap(k, slot, pid);
  if (ret < 0) {
    mmSlotFree(k, slot);
    abandonTid(sh, pid);
    sh.ctl.sub(kCtlLiveThreads, 1);
    return ret;
  }
  k.env.stat(S.nr_fork);
  publishTask(sh, pid);
  return pid;
}

/** dup_mmap on both sides: M copies the VMAs and shares its pages; P shares its lines. */
function dupMmap(k: Kern, slot: number, pid: number): number {
  const sh = k.sh;
  const psem = sh.mm.idx(k.mmSlot, kMmSem);
  const csem = sh.mm.idx(slot, kMmSem);
  downWrite(k.env, sh.mm.a, psem, k.mmSlot);
  k.mmapWriteHeld = true;
  downWrite(k.env, sh.mm.a, csem, slot);
  try {
    const req: ForkReq = { parentTgid: k.pid, cloneFlags: SIGCHLD, comm: k.comm };
    const rep = k.fab.sendReply(kNodeMemory, P2M_FORK, { pid, payload: req }, zForkReply);
    if (rep.status < 0) return rep.status;
    for (const [start, end, flags] of rep.body?.vmas ?? []) pcacheCopyPageRange(k, slot, pid, start, end, flags);
    return 0;
  } finally {
    upWrite(sh.mm.a, csem);
    k.mmapWriteHeld = false;
    upWrite(sh.mm.a, psem);
  }
}

/**
 * pcache_copy_page_range for one VMA: each mapped PTE of the parent is copied to the child
 * (pcacheCopyOnePte); the parent's TLB is flushed over the VMA if any PTE of it was write-protected.
 */
function pcacheCopyPageRange(k: Kern, slot: number, pid: number, start: number, end: number, flags: number): void {
  const sh = k.sh;
  const pgd = sh.mm.get(k.mmSlot, kMmPgd);
  let protectedPtes = 0;
  tlbGatherStart(k, k.mmSlot);
  try {
    for (let va = start; va < end; va += PAGE_SIZE) {
      const ptep = walkNoAlloc(sh, pgd, va);
      if (ptep < 0) {
        va = Math.min(end, (Math.floor(va / PMD_SIZE) + 1) * PMD_SIZE) - PAGE_SIZE;
        continue;
      }
      if (sh.pgtable.load(ptep) === 0) continue;
      protectedPtes += pcacheCopyOnePte(k, ptep, walk(k.env, slot, va, true), va, pid, flags);
    }
    if (protectedPtes > 0) flushTlbMmRange(k, k.pid, k.mmSlot, start, end);
  } finally {
    tlbGatherEnd(k, k.mmSlot);
  }
}

/**
 * pcache_copy_one_pte: share the parent's line at `va` with the child. Returns 1 if the parent's PTE
 * was write-protected (its TLB entries must go), else 0.
 */
function pcacheCopyOnePte(k: Kern, ptep: number, cptep: number, va: number, pid: number, vmFlags: number): number {
  const sh = k.sh;
  for (;;) {
    ptlLock(k.env, ptep);
    const pte = sh.pgtable.load(ptep);
    if (!pteMapped(pte)) {
      ptlUnlock(k.env, ptep);
      return 0;
    }
    const line = pteLine(pte);
    const relock = (): void => ptlLock(k.env, ptep);
    const unlock = (): void => ptlUnlock(k.env, ptep);
    if (!lockLineUnderPtl(k, line, ptep, pte, relock, unlock)) continue;
    const r = rmapReserve(k);
    if (r < 0) {
      // No rmap for the child's mapping: the child gets the page from M instead. A dirty line holds
      // data M does not have yet, so it goes to M under the child's pid first.
      if (pte & _PAGE_DIRTY) {
        const page = sh.pcdata.subarray(sh.lineOffset(line), sh.lineOffset(line) + PAGE_SIZE);
        const shm = sh.meta.load(line, kMetaShm); // a shared page is written back by its tag
        k.fab.sendReply(kNodeMemory, P2M_PCACHE_FLUSH, { pid, vaddr: va, page, shm });
      }
      k.env.stat(S.nr_fork_rmap_fallback);
      unlockPcache(sh, line);
      ptlUnlock(k.env, ptep);
      return 0;
    }
    // copy_present_pte: a COW mapping is write-protected on both sides; the child's copy is old. It
    // keeps the dirty bit, also in a shared mapping (Linux cleans it there, as its struct page keeps
    // the dirtiness; a line has only its PTEs to say it is dirty).
    let wp = 0;
    let cur = pte;
    if (isCowMapping(vmFlags) && (pte & (_PAGE_RW | _PAGE_COW)) !== 0) {
      // by CAS: the MMU of another thread may be setting _PAGE_DIRTY through its TLB meanwhile
      for (;;) {
        const seen = sh.pgtable.cas(ptep, cur, (cur & ~_PAGE_RW) | _PAGE_COW);
        if (seen === cur) break;
        cur = seen;
      }
      cur = (cur & ~_PAGE_RW) | _PAGE_COW;
      wp = pte & _PAGE_RW ? 1 : 0;
    }
    ptlLock(k.env, cptep);
    sh.pgtable.store(cptep, cur & ~_PAGE_ACCESSED);
    getPcache(sh, line);
    pcacheAddRmapLocked(k, line, r, cptep, va, pid, RMAP_FORK);
    ptlUnlock(k.env, cptep);
    unlockPcache(sh, line);
    ptlUnlock(k.env, ptep);
    k.env.stat(S.nr_fork_ptes);
    return wp;
  }
}
