// TLBs and TLB shootdown (arch/x86/mm/tlb.c, kernel/smp.c).
//
// Each CPU has a small direct-mapped TLB in shared memory (so checkers can inspect it); only its own
// CPU fills it, and other CPUs invalidate it only through IPIs. flush_tlb_mm_range flushes locally and
// sends a synchronous call-function IPI (csd) to every other CPU in mm_cpumask, then waits for every
// ack (csd_lock_wait), servicing its own incoming IPIs while it waits. The csds, the per-CPU
// call_single_queue llists and cfd_data live in the percpu buffer (src/kernel/layout.ts), laid out so that a
// NULL csd array aliases what it would alias in Linux.
//
// Locks and words: the csd lock is CSD_FLAG_LOCK in kCsdFlags (CAS by the sender's csdLock, or stored
// on its own on-stack csd; cleared by the target's csdUnlock); kCsdFunc/kCsdInfo (by the csd lock
// holder) and the sender's own csdInfo row are written before llist_add (CAS) publishes the csd, and the
// target takes its queue with llist_del_all (exchange). kMmCpumask is or/and-ed by the CPU switching in
// or out (sched.ts switchMm) or leaving lazily (leaveMm); kMmShootdowns counts the flushes in flight that
// an exiting mm waits out; kMmPendingFlush is the stale-TLB detector's (tlbGatherStart/End). A CPU's TLB
// is written by that CPU only (tags plainly); the CPU's active_mm and TLB state by its owner.
// Callers: handleIpis, leaveMm and the local flushes run on the CPU they act on; flushTlbMmRange is
// called with mmap_sem and sometimes line locks held, never a PTE lock, and services IPIs while it waits.
import {
  kCpuActiveMm,
  kCpuActivePid,
  kCpuTlbState,
  TLBSTATE_LAZY,
  CSD_FLAG_LOCK,
  CSD_FLAG_SYNCHRONOUS,
  kCpuDoorbell,
  kCsdFlags,
  kCsdFunc,
  kCsdInfo,
  kCsdInfoEnd,
  kCsdInfoPid,
  kCsdInfoStart,
  kCsdLlist,
  kCsdWords,
  kIpiFlushTlb,
  kIpiFlushTlbAll,
  kMmCpumask,
  kMmPendingFlush,
  kMmShootdowns,
  kPcpuCallSingleQueue,
  kPcpuCfdCsd,
  kPcpuChunk,
  kPcpuChunkNext,
  kTlbEntries,
  type Shared,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { LOCK_KIND, waitUntil } from '../kernel/sync.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';
import { kernelWarn, reportViolation } from '../kernel/report.ts';
import type { Kern } from './kern.ts';
import { at } from '../lib/at.ts';

/** tlb_single_page_flush_ceiling (arch/x86/mm/tlb.c) */
export const kTlbSinglePageFlushCeiling = 33;

export function tlbFlushAllLocal(k: Kern): void {
  const sh = k.sh;
  for (let e = 0; e < kTlbEntries; e++) sh.tlbVpn.set(k.cpu, e, -1);
  k.mmu.invalidateFast();
  k.env.stat(S.tlb_flush_all_local);
}

export function tlbFlushRangeLocal(k: Kern, start: number, end: number): void {
  const pages = Math.ceil((end - start) / PAGE_SIZE);
  if (pages > kTlbSinglePageFlushCeiling) {
    tlbFlushAllLocal(k);
    return;
  }
  const sh = k.sh;
  const first = Math.floor(start / PAGE_SIZE);
  for (let vpn = first; vpn < first + pages; vpn++) {
    const e = vpn % kTlbEntries;
    if (sh.tlbVpn.get(k.cpu, e) === vpn) sh.tlbVpn.set(k.cpu, e, -1);
  }
  k.mmu.invalidateFast();
  k.env.stat(S.tlb_flush_local);
}

/**
 * flush_tlb_mm_range(mm, start, end): local flush if this CPU runs the mm, then IPIs to the other
 * CPUs of mm_cpumask, waiting for all of them. Bug `tlb-shootdown-skip` skips the remote part.
 */
export function flushTlbMmRange(k: Kern, pid: number, mmSlot: number, start: number, end: number): void {
  const sh = k.sh;
  k.env.sched('tlb:flush_tlb_mm_range');
  if (k.cpu >= 0 && sh.cpu.load(k.cpu, kCpuActivePid) === pid) tlbFlushRangeLocal(k, start, end);
  // Announce the shootdown before reading mm_cpumask: the exit of the mm waits until none is in flight
  // before its slot can be reused (task.ts teardown).
  const inflight = sh.mm.idx(mmSlot, kMmShootdowns);
  Atomics.add(sh.mm.a, inflight, 1);
  try {
    const mask = sh.mm.load(mmSlot, kMmCpumask) & ~(k.cpu >= 0 ? 1 << k.cpu : 0);
    if (mask === 0) return;
    if (k.env.bugs.has('tlb-shootdown-skip')) {
      k.env.bugRan('tlb-shootdown-skip');
      return;
    }
    const pages = Math.ceil((end - start) / PAGE_SIZE);
    smpCallFunctionMany(k, mask, pages > kTlbSinglePageFlushCeiling ? kIpiFlushTlbAll : kIpiFlushTlb, pid, start, end);
    k.env.stat(S.tlb_shootdown);
  } finally {
    if (Atomics.sub(sh.mm.a, inflight, 1) === 1) Atomics.notify(sh.mm.a, inflight);
  }
}

/** How many csds can exist: every CPU's csd array, every on-stack csd, and the aliased queue heads. */
function nrCsds(k: Kern): number {
  const g = k.sh.geo.ctx;
  return g.cpus * g.cpus + g.total + g.cpus;
}

/** csd_lock: wait until the previous call through this csd was acknowledged, then take it. */
function csdLock(k: Kern, csd: number, target: number): void {
  const cs = k.sh.csd;
  const f = cs.idx(csd, kCsdFlags);
  waitUntil(k.env, cs.a, f, () => cs.cas(csd, kCsdFlags, 0, CSD_FLAG_LOCK) === 0, target, LOCK_KIND.csd);
}

/** csd_lock_wait: until the target's csd_unlock. */
function csdLockWait(k: Kern, csd: number, target: number): void {
  const cs = k.sh.csd;
  const f = cs.idx(csd, kCsdFlags);
  waitUntil(k.env, cs.a, f, () => (cs.load(csd, kCsdFlags) & CSD_FLAG_LOCK) === 0, target, LOCK_KIND.csd);
}

/** csd_unlock: WARN_ON(!(csd->flags & CSD_FLAG_LOCK)), then release the csd to its sender. */
function csdUnlock(k: Kern, csd: number): void {
  const cs = k.sh.csd;
  const flags = cs.load(csd, kCsdFlags);
  if ((flags & CSD_FLAG_LOCK) === 0) {
    kernelWarn(
      k,
      { fn: 'csd_unlock', file: 'kernel/smp.c' },
      `csd 0x${csd.toString(16)} unlocked while not locked (flags 0x${flags.toString(16)})`,
    );
  }
  cs.store(csd, kCsdFlags, 0);
  cs.notify(csd, kCsdFlags);
}

/** llist_add(node, head): true if the list was empty (the target needs an IPI). */
function llistAdd(sh: Shared, node: number, head: number): boolean {
  const pc = sh.percpu;
  for (;;) {
    const first = pc.load(head);
    sh.csd.store(node, kCsdLlist, first);
    if (pc.cas(head, first, node) === first) return first === 0;
  }
}

/** Publish a locked csd to the target's call_single_queue and ring its doorbell. */
function queueCsd(k: Kern, csd: number, target: number, func: number): void {
  const sh = k.sh;
  sh.csd.store(csd, kCsdFunc, func);
  sh.csd.store(csd, kCsdInfo, k.env.ctx + 1);
  k.env.sched('smp:llist_add');
  llistAdd(sh, csd, sh.perCpuPtr(kPcpuCallSingleQueue, target));
  sh.cpu.add(target, kCpuDoorbell, 1);
  sh.cpu.notify(target, kCpuDoorbell, 1);
  k.env.stat(S.ipi_sent);
}

/**
 * smp_call_function_many(mask, func, info, wait=1) (kernel/smp.c). One target: the fast path,
 * smp_call_function_single with an on-stack csd. Several: this CPU's cfd_data, one csd per target at
 * per_cpu_ptr(cfd->csd, cpu): csd_lock, SYNCHRONOUS, llist_add, IPI; then csd_lock_wait on each.
 * A kernel thread (k.cpu < 0) runs on the last CPU and uses that CPU's cfd_data (cfdOwner), so its
 * csd_lock is a CAS: two senders may meet on one cfd here, which preemption-off Linux never sees.
 */
export function smpCallFunctionMany(
  k: Kern,
  mask: number,
  func: number,
  pid: number,
  start: number,
  end: number,
): void {
  const sh = k.sh;
  const cpus = sh.geo.ctx.cpus;
  // the flush_tlb_info the csds point at: this context's, alive until every target answered
  sh.csdInfo.set(k.env.ctx, kCsdInfoPid, pid);
  sh.csdInfo.set(k.env.ctx, kCsdInfoStart, start);
  sh.csdInfo.set(k.env.ctx, kCsdInfoEnd, end);
  const targets: number[] = [];
  for (let t = 0; t < cpus; t++) if ((mask & (1 << t)) !== 0) targets.push(t);
  if (targets.length === 1) {
    smpCallFunctionSingle(k, at(targets, 0), func);
    return;
  }
  // cfd->csd: 0 (NULL) if smpcfd_prepare_cpu never ran for the owner CPU
  const cfdCsd = sh.percpu.load(sh.perCpuPtr(kPcpuCfdCsd, cfdOwner(k)));
  for (const t of targets) {
    const csd = sh.perCpuPtr(cfdCsd, t);
    csdLock(k, csd, t);
    sh.csd.or(csd, kCsdFlags, CSD_FLAG_SYNCHRONOUS);
    queueCsd(k, csd, t, func);
  }
  for (const t of targets) csdLockWait(k, sh.perCpuPtr(cfdCsd, t), t);
}

/** smp_call_function_single(cpu, func, info, wait=1): a csd on the sender's stack, LOCK|SYNCHRONOUS. */
function smpCallFunctionSingle(k: Kern, target: number, func: number): void {
  const sh = k.sh;
  const csd = sh.csdStackPtr(k.env.ctx);
  sh.csd.store(csd, kCsdFlags, CSD_FLAG_LOCK | CSD_FLAG_SYNCHRONOUS);
  queueCsd(k, csd, target, func);
  csdLockWait(k, csd, target);
}

/** The CPU whose cfd_data a sender uses: its own, or for a kernel thread the last CPU's. */
function cfdOwner(k: Kern): number {
  return k.cpu >= 0 ? k.cpu : k.sh.geo.ctx.cpus - 1;
}

/**
 * smpcfd_prepare_cpu(cpu): allocate the cpu's cfd_data csd array (alloc_percpu(call_single_data_t)).
 * Run by the boot CPU for itself (call_function_init) and by each secondary CPU's bring-up.
 */
export function smpcfdPrepareCpu(sh: Shared, cpu: number): void {
  const off = kPcpuChunk + sh.percpu.add(kPcpuChunkNext, kCsdWords);
  sh.percpu.store(sh.perCpuPtr(kPcpuCfdCsd, cpu), off);
}

/** Was this CPU's cfd_data prepared (for the bring-up's online notice)? */
export function smpcfdPrepared(sh: Shared, cpu: number): boolean {
  return sh.percpu.load(sh.perCpuPtr(kPcpuCfdCsd, cpu)) !== 0;
}

/** Is anything queued for this CPU (watchdog backtraces)? */
export function callSingleQueued(sh: Shared, cpu: number): boolean {
  return sh.percpu.load(sh.perCpuPtr(kPcpuCallSingleQueue, cpu)) !== 0;
}

/**
 * generic_smp_call_function_single_interrupt -> flush_smp_call_function_queue: take the whole
 * call_single_queue (llist_del_all), reverse it into arrival order, and run each csd: SYNCHRONOUS ->
 * func then csd_unlock, else csd_unlock first. Called from every wait loop of this CPU (env.irq) and
 * at user-mode interrupt points. A walk longer than the number of csds that exist is a corrupted
 * (looping) list: reported, and the walk stops there rather than hanging the CPU in its IRQ.
 */
export function handleIpis(k: Kern): void {
  const sh = k.sh;
  const pc = sh.percpu;
  const cs = sh.csd;
  const head = sh.perCpuPtr(kPcpuCallSingleQueue, k.cpu);
  if (pc.load(head) === 0) return;
  let entry = pc.xchg(head, 0);
  k.env.sched('smp:llist_del_all');
  const bound = nrCsds(k);
  // llist_reverse_order
  let list = 0;
  let n = 0;
  while (entry !== 0) {
    if (++n > bound) {
      csdQueueLoops(k, bound);
      break;
    }
    const next = cs.load(entry, kCsdLlist);
    cs.store(entry, kCsdLlist, list);
    list = entry;
    entry = next;
  }
  // llist_for_each_entry_safe
  n = 0;
  for (let csd = list; csd !== 0;) {
    if (++n > bound) {
      csdQueueLoops(k, bound);
      break;
    }
    const next = cs.load(csd, kCsdLlist);
    const func = cs.load(csd, kCsdFunc);
    const info = cs.load(csd, kCsdInfo) - 1;
    if ((cs.load(csd, kCsdFlags) & CSD_FLAG_SYNCHRONOUS) !== 0) {
      flushTlbFunc(k, func, info);
      csdUnlock(k, csd);
    } else {
      csdUnlock(k, csd);
      flushTlbFunc(k, func, info);
    }
    k.env.stat(S.ipi_received);
    csd = next;
  }
}

function csdQueueLoops(k: Kern, bound: number): void {
  reportViolation(k, 'csd-queue', {
    text: `BUG: CPU: ${k.cpu} PID: ${k.pid} at kernel/smp.c flush_smp_call_function_queue: call_single_queue of CPU${k.cpu} is longer than the ${bound} csds that exist (a csd linked into itself)`,
    facts: ['queue=loop'],
  });
}

/**
 * flush_tlb_func (Linux 4.9): nothing to do unless the flush is for this CPU's active_mm; a lazy CPU
 * (idle, keeping the last mm's TLB) does not flush pages but leaves that mm.
 */
function flushTlbFunc(k: Kern, func: number, info: number): void {
  const sh = k.sh;
  if (info < 0 || info >= sh.geo.ctx.total) return;
  if (sh.csdInfo.get(info, kCsdInfoPid) !== sh.cpu.load(k.cpu, kCpuActivePid)) return;
  if (sh.cpu.load(k.cpu, kCpuTlbState) === TLBSTATE_LAZY) {
    leaveMm(k);
    return;
  }
  if (func === kIpiFlushTlbAll) tlbFlushAllLocal(k);
  else tlbFlushRangeLocal(k, sh.csdInfo.get(info, kCsdInfoStart), sh.csdInfo.get(info, kCsdInfoEnd));
}

/**
 * leave_mm: a lazy CPU stops taking flush IPIs for its active_mm (clears its mm_cpumask bit) and drops
 * the mm's translations (load_cr3(swapper_pg_dir)); active_mm stays, so switching back to that mm
 * sees the bit gone and reloads (sched.ts switchMm).
 */
export function leaveMm(k: Kern): void {
  const sh = k.sh;
  const active = sh.cpu.load(k.cpu, kCpuActiveMm);
  const bit = 1 << k.cpu;
  if (active === 0 || (sh.mm.load(active - 1, kMmCpumask) & bit) === 0) return;
  sh.mm.and(active - 1, kMmCpumask, ~bit);
  k.env.sched('tlb:leave_mm');
  tlbFlushAllLocal(k);
  k.env.stat(S.nr_leave_mm);
}

/**
 * tlb_gather_mmu / tlb_finish_mmu, for the stale-TLB detector: announce PTE changes of an mm before the
 * first one and retire them after their flush completed. A CPU that hits a TLB entry whose PTE has
 * changed while nothing is pending for its mm is using a translation the kernel believes is gone.
 */
export function tlbGatherStart(k: Kern, mmSlot: number): void {
  if (mmSlot >= 0) k.sh.mm.add(mmSlot, kMmPendingFlush, 1);
}
export function tlbGatherEnd(k: Kern, mmSlot: number): void {
  if (mmSlot >= 0) k.sh.mm.sub(mmSlot, kMmPendingFlush, 1);
}
