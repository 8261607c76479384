// pcache_alloc (managers/processor/pcache/alloc.c): a line of the faulting address's set, from the
// set's free list under the set lock, or by evicting one (evict.ts) when the set is full. Also the
// stale-TLB detector at allocation (--check end|syscall).
import { kMetaFlags, kMetaMapcount, kMetaRef, kMetaRmapHead, kSetLock } from '../../kernel/layout.ts';
import { PAGE_SIZE } from '../../uapi/abi.ts';
import { reportViolation } from '../../kernel/report.ts';
import type { Kern } from '../kern.ts';
import { kCpuActivePid, kMmPendingFlush, kTlbEntries } from '../../kernel/layout.ts';

import { EVICT_SUCCEED, pcacheEvictLine } from './evict.ts';
import { lockSet, lruAddHead, popFree, unlockSet } from './meta.ts';

const kAllocTimeoutMs = 30_000; // sysctl_pcache_alloc_timeout_sec

/** Returns a line of `va`'s set with ref=1, mapcount=0, on the LRU head, not Valid; -1 on failure. */
export function pcacheAlloc(k: Kern, va: number, maxEvictTries = Infinity): number {
  const sh = k.sh;
  const set = sh.setOfAddr(va);
  const t0 = k.env.nowMs();
  let tries = 0;
  for (;;) {
    lockSet(k, set);
    const line = popFree(sh, set);
    if (line >= 0) {
      sh.meta.store(line, kMetaFlags, 0);
      sh.meta.store(line, kMetaRef, 1);
      sh.meta.store(line, kMetaMapcount, 0);
      sh.meta.set(line, kMetaRmapHead, 0);
      lruAddHead(sh, set, line);
      unlockSet(k, set);
      if (k.env.config.check !== 'none') checkLineNotInTlbs(k, line, va);
      return line;
    }
    unlockSet(k, set);
    const r = pcacheEvictLine(k, set);
    if (r !== EVICT_SUCCEED) {
      if (tries + 1 >= maxEvictTries) return -1;
      if (k.env.nowMs() - t0 > kAllocTimeoutMs) {
        k.env.printk(
          'error',
          `# CPU${k.cpu} PID${k.pid} Abort pcache alloc (${Math.round(k.env.nowMs() - t0)}ms) addr:0x${va.toString(16)} pset:${set}`,
        );
        return -1;
      }
      // Every way is busy (being filled, evicted or flushed): let the holders make progress.
      if (++tries > 4) {
        k.env.irq();
        k.env.wait(sh.set.a, sh.set.idx(set, kSetLock), sh.set.load(set, kSetLock), 0.2, 'wait:pcache_alloc');
      }
    }
  }
}

/**
 * Stale-TLB detector (--check end|syscall), at allocation: the line being handed out must not be
 * mapped by any CPU's TLB. On the fixed kernel a line is freed only after the TLB flush of every
 * mapping of it completed (each target acked), and CPUs that left the mm flushed everything, so a hit
 * here means a shootdown was skipped or the line was freed before its flush.
 */
function checkLineNotInTlbs(k: Kern, line: number, va: number): void {
  const sh = k.sh;
  for (let c = 0; c < sh.geo.ctx.cpus; c++) {
    for (let e = 0; e < kTlbEntries; e++) {
      const vpn = sh.tlbVpn.get(c, e);
      if (vpn < 0 || sh.tlbVal.load(c, e) >>> 12 !== line || sh.tlbVpn.get(c, e) !== vpn) continue;
      // Was the flush that will remove this entry still on its way (the line was freed before its
      // flush: free-before-flush), or had it completed and left the entry (a shootdown that never
      // reached this CPU: tlb-shootdown-skip)? The IPI removes the entry before the gather ends, so
      // read the pending count, then the entry again: pending, or gone since, means "before its flush".
      const slot = k.mmSlotOf(sh.cpu.load(c, kCpuActivePid)); // the mm whose translations its TLB holds
      const pending = slot >= 0 && sh.mm.load(slot, kMmPendingFlush) > 0;
      const still = sh.tlbVpn.get(c, e) === vpn && sh.tlbVal.load(c, e) >>> 12 === line;
      reportViolation(k, 'stale-tlb', {
        line,
        addr: vpn * PAGE_SIZE,
        cpu: c,
        facts: ['at=alloc', `flush=${pending || !still ? 'pending' : 'done'}`],
        text: `stale TLB: CPU#${c} still translates 0x${(vpn * PAGE_SIZE).toString(16)} to pcache line ${line} (pfn 0x${sh.linePfn(line).toString(16)}), which is free and being reallocated for 0x${(va - (va % PAGE_SIZE)).toString(16)} by ${k.env.name} (pid ${k.pid})`,
      });
      return;
    }
  }
}
