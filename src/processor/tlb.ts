// TLBs and TLB shootdown (arch/x86/mm/tlb.c, kernel/smp.c).
//
// Each CPU has a small direct-mapped TLB in shared memory (so checkers can inspect it); only its own
// CPU fills it, and other CPUs invalidate it only through IPIs. flush_tlb_mm_range flushes locally and
// sends a synchronous call-function IPI (csd) to every other CPU in mm_cpumask, then waits for every
// ack (csd_lock_wait), servicing its own incoming IPIs while it waits.
import {
  CSD_FLAG_LOCK, CSD_FLAG_SYNCHRONOUS, kCpuCsdInit, kCpuDoorbell, kCpuIpiPending, kCsdFlags, kCsdFunc, kCsdPid,
  kIpiFlushTlb, kIpiFlushTlbAll, kMmCpumask, kMmPendingFlush, kMmShootdowns, kTlbEntries,
} from '../layout.ts';
import { S } from '../stats.ts';
import { LOCK_KIND, waitUntil } from '../sync.ts';
import { PAGE_SIZE } from '../uapi.ts';
import { warnOnce } from '../env.ts';
import { reportViolation } from '../check/report.ts';
import type { Kern } from './kern.ts';

/** tlb_single_page_flush_ceiling (arch/x86/mm/tlb.c) */
export const kTlbSinglePageFlushCeiling = 33;

export function tlbFlushAllLocal(k: Kern): void {
  const sh = k.sh;
  const base = sh.tlbIdx(k.cpu, 0);
  sh.tlbVpn.fill(-1, base, base + kTlbEntries);
  k.mmu.invalidateFast();
  k.env.stat(S.tlb_flush_all_local);
}

export function tlbFlushRangeLocal(k: Kern, start: number, end: number): void {
  const pages = Math.ceil((end - start) / PAGE_SIZE);
  if (pages > kTlbSinglePageFlushCeiling) { tlbFlushAllLocal(k); return; }
  const sh = k.sh;
  const base = sh.tlbIdx(k.cpu, 0);
  const first = Math.floor(start / PAGE_SIZE);
  for (let vpn = first; vpn < first + pages; vpn++) {
    const i = base + (vpn % kTlbEntries);
    if (sh.tlbVpn[i] === vpn) sh.tlbVpn[i] = -1;
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
  if (k.cpu >= 0 && k.pid === pid) tlbFlushRangeLocal(k, start, end);
  // Announce the shootdown before reading mm_cpumask, so a CPU leaving the mm concurrently either is
  // not in the mask we read or waits in switchMmOut until we are done (and answers our IPI meanwhile).
  const inflight = sh.mmIdx(mmSlot, kMmShootdowns);
  Atomics.add(sh.mm, inflight, 1);
  try {
    const mask = Atomics.load(sh.mm, sh.mmIdx(mmSlot, kMmCpumask)) & ~(k.cpu >= 0 ? 1 << k.cpu : 0);
    if (mask === 0) return;
    if (k.env.bugs.has('tlb-shootdown-skip')) { k.env.bugRan('tlb-shootdown-skip'); return; }
    const pages = Math.ceil((end - start) / PAGE_SIZE);
    smpCallFunctionMany(k, mask, pages > kTlbSinglePageFlushCeiling ? kIpiFlushTlbAll : kIpiFlushTlb, pid, start, end);
    k.env.stat(S.tlb_shootdown);
  } finally {
    if (Atomics.sub(sh.mm, inflight, 1) === 1) Atomics.notify(sh.mm, inflight);
  }
}

/**
 * smp_call_function_many(mask, func, info, wait=1): one csd per target (cfd_data), csd_lock, queue,
 * doorbell, then csd_lock_wait on each. A kernel thread (k.cpu < 0) sends through csdSource().
 */
export function smpCallFunctionMany(k: Kern, mask: number, func: number, pid: number, start: number, end: number): void {
  const sh = k.sh;
  const src = csdSource(k);
  const cpus = sh.geo.ctx.cpus;
  for (let t = 0; t < cpus; t++) {
    if ((mask & (1 << t)) === 0) continue;
    const fi = sh.csdIdx(t, src, kCsdFlags);
    // csd_lock: wait until the previous call through this csd was acknowledged, and take it.
    waitUntil(k.env, sh.csd, fi, () => Atomics.compareExchange(sh.csd, fi, 0, CSD_FLAG_LOCK) === 0, t, LOCK_KIND.csd);
    sh.csd[sh.csdIdx(t, src, kCsdFunc)] = func;
    sh.csd[sh.csdIdx(t, src, kCsdPid)] = pid;
    const r = sh.csdRangeIdx(t, src);
    sh.csdRange[r] = start;
    sh.csdRange[r + 1] = end;
    Atomics.store(sh.csd, fi, CSD_FLAG_LOCK | CSD_FLAG_SYNCHRONOUS);
    Atomics.or(sh.ctl, sh.cpuIdx(t, kCpuIpiPending), 1 << src);
    const db = sh.cpuIdx(t, kCpuDoorbell);
    Atomics.add(sh.ctl, db, 1);
    Atomics.notify(sh.ctl, db, 1);
    k.env.stat(S.ipi_sent);
  }
  for (let t = 0; t < cpus; t++) {
    if ((mask & (1 << t)) === 0) continue;
    const fi = sh.csdIdx(t, src, kCsdFlags);
    waitUntil(k.env, sh.csd, fi, () => (Atomics.load(sh.csd, fi) & CSD_FLAG_LOCK) === 0, t, LOCK_KIND.csd);
  }
}

/**
 * Kernel threads of P (kevict_sweepd) are not CPUs; they send IPIs through a csd column of their own.
 * The csd matrix has one column per CPU, so a kthread borrows the column of the last CPU and
 * serialises on its csd lock like any sender would.
 */
function csdSource(k: Kern): number {
  return k.cpu >= 0 ? k.cpu : k.sh.geo.ctx.cpus - 1;
}

/**
 * generic_smp_call_function_single_interrupt: run every queued csd for this CPU, then csd_unlock.
 * Called from every wait loop of this CPU (env.irq) and at user-mode interrupt points.
 */
export function handleIpis(k: Kern): void {
  const sh = k.sh;
  const pi = sh.cpuIdx(k.cpu, kCpuIpiPending);
  if (Atomics.load(sh.ctl, pi) === 0) return;
  const pending = Atomics.exchange(sh.ctl, pi, 0);
  for (let src = 0; src < sh.geo.ctx.cpus; src++) {
    if ((pending & (1 << src)) === 0) continue;
    const fi = sh.csdIdx(k.cpu, src, kCsdFlags);
    if (Atomics.load(sh.ctl, sh.cpuIdx(k.cpu, kCpuCsdInit)) === 0) {
      // csd data never initialised by this CPU's bring-up (cpuhp): LegoOS 2018-02-05.
      if (!csdWarned) {
        csdWarned = true;
        warnOnce(k.env, 'kernel/smp.c:219 generic_smp_call_function_single_interrupt', `csd for CPU${k.cpu} was never initialised (smpcfd_prepare_cpu missed); IPI from CPU${src} dropped`);
        reportViolation(k, 'csd-not-initialised', { text: `WARNING: CPU: ${k.cpu} PID: ${k.pid} at kernel/smp.c:219 generic_smp_call_function_single_interrupt: IPI from CPU${src} for csd data that was never initialised` });
      }
      continue;
    }
    const func = sh.csd[sh.csdIdx(k.cpu, src, kCsdFunc)]!;
    const pid = sh.csd[sh.csdIdx(k.cpu, src, kCsdPid)]!;
    const r = sh.csdRangeIdx(k.cpu, src);
    // flush_tlb_func: nothing to do unless this CPU runs that mm.
    if (pid === k.pid) {
      if (func === kIpiFlushTlbAll) tlbFlushAllLocal(k);
      else tlbFlushRangeLocal(k, sh.csdRange[r]!, sh.csdRange[r + 1]!);
    }
    k.env.stat(S.ipi_received);
    // csd_unlock: WARN_ON(!(csd->flags & CSD_FLAG_LOCK)), then release.
    Atomics.store(sh.csd, fi, 0);
    Atomics.notify(sh.csd, fi);
    const db = sh.cpuIdx(src, kCpuDoorbell);
    Atomics.add(sh.ctl, db, 1);
    Atomics.notify(sh.ctl, db, 1);
  }
}

let csdWarned = false;

/** switch_mm: join the mm's cpumask (the TLB is empty: flushed when the last task left). */
export function switchMmIn(k: Kern, mmSlot: number): void {
  Atomics.or(k.sh.mm, k.sh.mmIdx(mmSlot, kMmCpumask), 1 << k.cpu);
}
/**
 * Leave the mm: flush everything, clear the cpumask bit, then answer IPIs until no shootdown that may
 * have read the old mask is in flight (an idle CPU answers none, so it must not go idle before).
 */
export function switchMmOut(k: Kern, mmSlot: number): void {
  const sh = k.sh;
  tlbFlushAllLocal(k);
  Atomics.and(sh.mm, sh.mmIdx(mmSlot, kMmCpumask), ~(1 << k.cpu));
  const inflight = sh.mmIdx(mmSlot, kMmShootdowns);
  waitUntil(k.env, sh.mm, inflight, () => Atomics.load(sh.mm, inflight) === 0, mmSlot, LOCK_KIND.csd);
  handleIpis(k);
}

/**
 * tlb_gather_mmu / tlb_finish_mmu, for the stale-TLB detector: announce PTE changes of an mm before the
 * first one and retire them after their flush completed. A CPU that hits a TLB entry whose PTE has
 * changed while nothing is pending for its mm is using a translation the kernel believes is gone.
 */
export function tlbGatherStart(k: Kern, mmSlot: number): void {
  if (mmSlot >= 0) Atomics.add(k.sh.mm, k.sh.mmIdx(mmSlot, kMmPendingFlush), 1);
}
export function tlbGatherEnd(k: Kern, mmSlot: number): void {
  if (mmSlot >= 0) Atomics.sub(k.sh.mm, k.sh.mmIdx(mmSlot, kMmPendingFlush), 1);
}
