// The emulated MMU of one CPU: what a user load or store goes through.
//
//   access -> one-page fast translation (CPU-private, like a micro-TLB) -> TLB (shared memory, this
//   CPU's entries) -> page walk (lockless, like hardware) -> page fault (pcacheHandleFault).
//
// A TLB entry caches the PTE's line and flags at fill time. A write through an entry whose cached
// PTE is not dirty sets _PAGE_DIRTY in the PTE with a compare-and-swap that re-checks the PTE still
// maps the same line (x86 sets A/D bits with a locked RMW and faults if the PTE changed). Until this
// CPU services a shootdown IPI it may keep using a stale entry, exactly like hardware; the initiator
// waits for the ack before it reuses or writes back the line.
//
// Interrupts: user code services IPIs every kTick accesses (and at every TLB miss), and unwinds when
// another thread of the process took a fatal signal.
//
// Locks: the MMU takes none. Its TLB row is this CPU's (tags written plainly, values by Atomics.store),
// the page walk reads PTEs with Atomics.load, setDirty is a CAS on the PTE without the PTE lock, and user
// data in pcdata is read and written plainly (cas32/xadd32 by Atomics). A fault enters
// pcacheHandleFault, which takes mmap_sem for read and the pcache locks itself. A CpuMmu is used only
// by its task's worker thread, for the user thread or its syscalls (copy to/from user), on the CPU the
// task owns (bindCpu after each switch), holding no kernel lock.
import {
  _PAGE_DIRTY,
  _PAGE_PRESENT,
  _PAGE_RW,
  kMmPendingFlush,
  kCpuState,
  kCpuStateKernel,
  kCpuStateUser,
  kCpuKernelEnterMs,
  kMmKilled,
  kMmPgd,
  kTlbEntries,
} from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { PAGE_SIZE, SEGV_ACCERR, SEGV_MAPERR, X86_PF_PROT, X86_PF_USER, X86_PF_WRITE } from '../uapi/abi.ts';
import type { Mmu } from '../uapi/program.ts';
import { UserSignal } from '../uapi/program.ts';
import {
  FAULT_KILLED,
  FAULT_OK,
  FAULT_OOM,
  FAULT_OOM_REMOTE,
  FAULT_SIGSEGV_ACCERR,
  FAULT_SIGSEGV_MAPERR,
  pcacheHandleFault,
} from './pcache/fault.ts';
import type { Kern } from './kern.ts';
import { pteLine, walkNoAlloc } from './pgtable.ts';
import { safePoint } from './stop.ts';
import { reportViolation } from '../kernel/report.ts';

const kTick = 4096;
/** new-page schedule points per tick under a controlled scheduler */
const kPagePointsPerTick = 8;
export const SIGKILL = 9;
export const SIGSEGV = 11;
export const SIGBUS = 7;

export class CpuMmu implements Mmu {
  private readonly data: Uint8Array;
  private readonly data32: Int32Array;
  private readonly view: DataView;
  // this CPU's TLB: its record of the tlbVpn and tlbVal regions (only this CPU fills it; other CPUs'
  // flushes reach it by IPI, which this CPU runs; checkers read its values with Atomics and its
  // Float64 tags plainly, or in a stopped world)
  private tlbVpn: Float64Array;
  private tlbVal: Int32Array;
  // one-page fast translations: VA of the page and the byte offset of its line in pcdata
  private rBase = -1;
  private rOff = 0;
  private wBase = -1;
  private wOff = 0;
  private tick = kTick;
  private pagePoints = kPagePointsPerTick;
  private readonly controlled: boolean;
  private readonly checkTlb: boolean;

  constructor(private readonly k: Kern) {
    const sh = k.sh;
    this.data = sh.pcdata;
    this.data32 = sh.pcdata32;
    this.view = sh.pcdataView;
    // a task's MMU has no CPU until it gets one (bindCpu)
    this.tlbVpn = new Float64Array(0);
    this.tlbVal = new Int32Array(0);
    if (k.cpu >= 0) this.bindCpu();
    k.mmu = {
      invalidateFast: () => {
        this.rBase = -1;
        this.wBase = -1;
      },
    };
    this.checkTlb = k.env.config.check !== 'none';
    this.controlled = k.env.cs !== undefined;
  }

  /**
   * Stale-TLB detector (--check): a hit on an entry whose PTE no longer maps that line, while no PTE
   * change of this mm awaits its flush (tlbGatherStart/End), is a translation the kernel believes it
   * flushed. The PTE is read before the pending count: a change we see was announced before it was made.
   */
  private checkStaleUse(va: number, val: number): void {
    const k = this.k;
    const sh = k.sh;
    const ptep = walkNoAlloc(sh, sh.mm.get(k.mmSlot, kMmPgd), va);
    const cur = ptep < 0 ? 0 : sh.pgtable.load(ptep);
    if ((cur & _PAGE_PRESENT) !== 0 && cur >>> 12 === val >>> 12) return;
    if (sh.mm.load(k.mmSlot, kMmPendingFlush) !== 0) return;
    if (++this.staleReports > 16) return;
    const hx = (n: number) => `0x${(n >>> 0).toString(16)}`;
    reportViolation(k, 'stale-tlb', {
      addr: va - (va % PAGE_SIZE),
      facts: ['at=use', 'flush=done'],
      text: `stale TLB use: CPU#${k.cpu} ${k.comm}[${k.pid}] accessed 0x${va.toString(16)} through a TLB entry for pcache line ${val >>> 12} (pte ${hx(val)}), but the PTE is now ${hx(cur)} and no flush is pending`,
    });
  }
  private staleReports = 0;

  /**
   * The task now runs on CPU k.cpu (processor/sched.ts, after a context switch): use that CPU's TLB,
   * and forget the one-page shortcuts, which came from another CPU's TLB.
   */
  bindCpu(): void {
    const sh = this.k.sh;
    this.tlbVpn = sh.tlbVpn.row(this.k.cpu);
    this.tlbVal = sh.tlbVal.row(this.k.cpu);
    this.rBase = -1;
    this.wBase = -1;
  }

  /**
   * Interrupt point: service IPIs, and unwind if the process is being killed. From user mode it is
   * also the timer interrupt: the scheduler may switch this task out here (Kern.task.tick), so the
   * task may come back on another CPU.
   */
  interrupt(): void {
    this.tick = kTick;
    this.k.env.irq();
    safePoint(this.k.env);
    const sh = this.k.sh;
    this.pagePoints = kPagePointsPerTick;
    if (this.k.task && sh.cpu.load(this.k.env.ctx, kCpuState) === kCpuStateUser) {
      this.k.env.sched('mmu:tick');
      this.k.task.tick();
    }
    if (this.k.mmSlot >= 0 && sh.mm.load(this.k.mmSlot, kMmKilled) !== 0) {
      throw new UserSignal(SIGKILL, 0, 'killed: another thread of the process took a fatal signal');
    }
  }

  /** Translate `va` for an access; returns the byte offset in pcdata. Slow path of every access. */
  translate(va: number, write: boolean, probe = false): number {
    if (--this.tick <= 0) this.interrupt();
    const k = this.k;
    const sh = k.sh;
    // Under a controlled schedule an access to a new page from user mode is a schedule point (a few per
    // tick), so that a race needing a user access between two kernel steps can be scheduled.
    if (this.controlled && this.pagePoints > 0 && sh.cpu.load(k.env.ctx, kCpuState) === kCpuStateUser) {
      this.pagePoints--;
      k.env.sched('mmu:new_page');
    }
    const vpn = Math.floor(va / PAGE_SIZE);
    const page = vpn * PAGE_SIZE;
    const ti = vpn % kTlbEntries;
    for (let attempt = 0; ; attempt++) {
      if (this.tlbVpn[ti] === vpn) {
        const val = this.tlbVal[ti] ?? 0; // this CPU's own entry: only it writes it
        if (!write || (val & _PAGE_RW) !== 0) {
          if (this.checkTlb) this.checkStaleUse(va, val);
          const off = (val >>> 12) * PAGE_SIZE;
          if (write && (val & _PAGE_DIRTY) === 0) {
            if (!this.setDirty(va, val >>> 12)) {
              this.tlbVpn[ti] = -1;
              continue;
            }
            Atomics.store(this.tlbVal, ti, val | _PAGE_DIRTY);
          }
          // (The detector checks TLB hits here; accesses within the one-page shortcut are not checked.)
          if (write) {
            this.wBase = page;
            this.wOff = off;
          }
          this.rBase = page;
          this.rOff = off;
          return off + (va - page);
        }
      }
      // TLB miss (or a write through a read-only entry): walk, like the hardware page walker.
      const pgd = sh.mm.get(k.mmSlot, kMmPgd);
      const ptep = walkNoAlloc(sh, pgd, va);
      const pte = ptep < 0 ? 0 : sh.pgtable.load(ptep);
      if ((pte & _PAGE_PRESENT) !== 0 && (!write || (pte & _PAGE_RW) !== 0)) {
        // Invalidate, write the value, then the tag: a checker reading this CPU's TLB never sees a
        // valid tag with another entry's value.
        this.tlbVpn[ti] = -1;
        Atomics.store(this.tlbVal, ti, pte);
        this.tlbVpn[ti] = vpn;
        k.env.stat(S.tlb_fill);
        continue;
      }
      if (attempt > 64)
        throw new Error(`mmu: no progress translating 0x${va.toString(16)} (pte 0x${(pte >>> 0).toString(16)})`);
      // Page fault.
      this.tlbVpn[ti] = -1;
      const r = this.fault(va, write);
      if (r === FAULT_OK) continue;
      // a probe reports what a SIGSEGV handler would see; a fatal non-SIGSEGV fault (OOM, a kill) is delivered
      if (probe && (r === FAULT_SIGSEGV_MAPERR || r === FAULT_SIGSEGV_ACCERR)) return -r;
      this.signal(va, write, r, (pte & _PAGE_PRESENT) !== 0);
    }
  }

  private fault(va: number, write: boolean): number {
    const k = this.k;
    const sh = k.sh;
    sh.cpu.store(k.env.ctx, kCpuState, kCpuStateKernel);
    sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, Math.floor(k.env.nowMs()));
    try {
      return pcacheHandleFault(k, va, write);
    } finally {
      sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, -1);
      sh.cpu.store(k.env.ctx, kCpuState, kCpuStateUser);
    }
  }

  /** force_sig_fault: log like show_signal_msg, then unwind the thread. */
  private signal(va: number, write: boolean, r: number, present: boolean): never {
    const k = this.k;
    if (r === FAULT_KILLED)
      throw new UserSignal(SIGKILL, va, 'killed: another thread of the process took a fatal signal');
    if (r === FAULT_OOM_REMOTE) {
      k.env.printk(
        'error',
        `Out of memory: Killed process ${k.pid} (${k.comm}): the memory component has no DRAM left for 0x${va.toString(16)} (--memory ${k.env.config.memoryBytes / 1048576} MiB, all in use)`,
      );
      throw new UserSignal(SIGKILL, va, `out of memory: the memory component's DRAM (--memory) is all in use`);
    }
    if (r === FAULT_OOM) {
      k.env.printk(
        'error',
        `Out of memory: Killed process ${k.pid} (${k.comm}): no pcache line for 0x${va.toString(16)}`,
      );
      throw new UserSignal(SIGKILL, va, 'out of pcache lines');
    }
    const err = X86_PF_USER | (write ? X86_PF_WRITE : 0) | (r === FAULT_SIGSEGV_ACCERR || present ? X86_PF_PROT : 0);
    k.env.stat(S.segfault);
    // show_signal_msg: "%s[%d]: segfault at %lx ip %px sp %px error %lx". splitkern has no instruction
    // or stack pointer for user code written in TypeScript: both print as 0.
    k.env.printk(
      'info',
      `${k.comm}[${k.pid}]: segfault at ${va.toString(16)} ip 0000000000000000 sp 0000000000000000 error ${err.toString(16)}`,
    );
    throw new UserSignal(SIGSEGV, va, r === FAULT_SIGSEGV_ACCERR ? 'SEGV_ACCERR' : 'SEGV_MAPERR');
  }

  /** Set _PAGE_DIRTY if the PTE still maps `line` writable; false if it changed (refault). */
  private setDirty(va: number, line: number): boolean {
    const sh = this.k.sh;
    const ptep = walkNoAlloc(sh, sh.mm.get(this.k.mmSlot, kMmPgd), va);
    if (ptep < 0) return false;
    for (;;) {
      const pte = sh.pgtable.load(ptep);
      if ((pte & _PAGE_PRESENT) === 0 || (pte & _PAGE_RW) === 0 || pteLine(pte) !== line) return false;
      if (pte & _PAGE_DIRTY) return true;
      if (sh.pgtable.cas(ptep, pte, pte | _PAGE_DIRTY) === pte) return true;
    }
  }

  // ---- kernel accesses to user memory (uaccess) ----
  /**
   * get_futex_value_locked: the aligned u32 at va if its page is mapped now, else -1. A lockless walk
   * of the page tables, as the hardware walker does on a TLB miss (a fresher translation than any TLB
   * entry, so always one the CPU could use). It never faults and never services an IPI, so a caller may
   * hold a spinlock: an evictor cannot reuse the line before this CPU acks its shootdown, which it does
   * only after this read.
   */
  loadWordNoFault(va: number): number {
    const sh = this.k.sh;
    const ptep = walkNoAlloc(sh, sh.mm.get(this.k.mmSlot, kMmPgd), va);
    const pte = ptep < 0 ? 0 : sh.pgtable.load(ptep);
    if ((pte & _PAGE_PRESENT) === 0) return -1;
    return Atomics.load(this.data32, (pteLine(pte) * PAGE_SIZE + (va % PAGE_SIZE)) / 4) >>> 0;
  }

  /** fault_in_user_readable: fault the page of va in for reading; false if the address is bad (-EFAULT). */
  faultInReadable(va: number): boolean {
    return this.translate(va, false, true) >= 0;
  }

  /** put_user of an aligned u32 (an atomic store): false instead of a signal if the address is bad. */
  putUser32(va: number, v: number): boolean {
    const p = this.translate(va, true, true);
    if (p < 0) return false;
    Atomics.store(this.data32, p / 4, v | 0);
    return true;
  }

  // ---- accesses ----
  load8(va: number): number {
    const d = va - this.rBase;
    // in range by construction: rOff and translate() name a line of pcdata, d is inside its page
    if (d >= 0 && d < PAGE_SIZE && --this.tick > 0) return this.data[this.rOff + d] ?? 0;
    return this.data[this.translate(va, false)] ?? 0;
  }
  load16(va: number): number {
    const d = va - this.rBase;
    if (d >= 0 && d <= PAGE_SIZE - 2 && --this.tick > 0) return this.view.getUint16(this.rOff + d, true);
    if (va % PAGE_SIZE > PAGE_SIZE - 2) return this.load8(va) | (this.load8(va + 1) << 8);
    return this.view.getUint16(this.translate(va, false), true);
  }
  load32(va: number): number {
    const d = va - this.rBase;
    if (d >= 0 && d <= PAGE_SIZE - 4 && --this.tick > 0) return this.view.getUint32(this.rOff + d, true);
    if (va % PAGE_SIZE > PAGE_SIZE - 4) return this.load16(va) + this.load16(va + 2) * 65536;
    return this.view.getUint32(this.translate(va, false), true);
  }
  load64(va: number): number {
    return this.load32(va) + this.load32(va + 4) * 4294967296;
  }
  store8(va: number, v: number): void {
    const d = va - this.wBase;
    if (d >= 0 && d < PAGE_SIZE && --this.tick > 0) {
      this.data[this.wOff + d] = v;
      return;
    }
    this.data[this.translate(va, true)] = v;
  }
  store16(va: number, v: number): void {
    const d = va - this.wBase;
    if (d >= 0 && d <= PAGE_SIZE - 2 && --this.tick > 0) {
      this.view.setUint16(this.wOff + d, v, true);
      return;
    }
    if (va % PAGE_SIZE > PAGE_SIZE - 2) {
      this.store8(va, v & 0xff);
      this.store8(va + 1, (v >>> 8) & 0xff);
      return;
    }
    this.view.setUint16(this.translate(va, true), v, true);
  }
  store32(va: number, v: number): void {
    const d = va - this.wBase;
    if (d >= 0 && d <= PAGE_SIZE - 4 && --this.tick > 0) {
      this.view.setUint32(this.wOff + d, v >>> 0, true);
      return;
    }
    if (va % PAGE_SIZE > PAGE_SIZE - 4) {
      this.store16(va, v & 0xffff);
      this.store16(va + 2, (v >>> 16) & 0xffff);
      return;
    }
    this.view.setUint32(this.translate(va, true), v >>> 0, true);
  }
  store64(va: number, v: number): void {
    const lo = v % 4294967296;
    this.store32(va, lo);
    this.store32(va + 4, (v - lo) / 4294967296);
  }

  /**
   * Translate [va, va+len) one page at a time and call fn(pcdata offset, bytes done so far, bytes in
   * this page). With `probe`, a fault stops the walk and returns false (copy_to/from_user's -EFAULT)
   * instead of signalling.
   */
  eachPage(
    va: number,
    len: number,
    write: boolean,
    probe: boolean,
    fn: (p: number, done: number, n: number) => void,
  ): boolean {
    for (let done = 0; done < len;) {
      const a = va + done;
      const n = Math.min(len - done, PAGE_SIZE - (a % PAGE_SIZE));
      const p = this.translate(a, write, probe);
      if (p < 0) return false;
      fn(p, done, n);
      done += n;
    }
    return true;
  }

  read(va: number, dst: Uint8Array, off = 0, len = dst.length - off): void {
    this.eachPage(va, len, false, false, (p, done, n) => dst.set(this.data.subarray(p, p + n), off + done));
  }
  write(va: number, src: Uint8Array, off = 0, len = src.length - off): void {
    this.eachPage(va, len, true, false, (p, done, n) => this.data.set(src.subarray(off + done, off + done + n), p));
  }
  fill(va: number, byte: number, len: number): void {
    this.eachPage(va, len, true, false, (p, _done, n) => this.data.fill(byte, p, p + n));
  }
  cas32(va: number, expected: number, replacement: number): number {
    if (va % 4 !== 0) throw new UserSignal(SIGBUS, va, 'misaligned atomic');
    const p = this.translate(va, true);
    return Atomics.compareExchange(this.data32, p >>> 2, expected | 0, replacement | 0) >>> 0;
  }
  xadd32(va: number, delta: number): number {
    if (va % 4 !== 0) throw new UserSignal(SIGBUS, va, 'misaligned atomic');
    const p = this.translate(va, true);
    return Atomics.add(this.data32, p >>> 2, delta | 0) >>> 0;
  }
  probe(va: number, write: boolean): boolean {
    return this.probeSiCode(va, write) === 0;
  }
  probeSiCode(va: number, write: boolean): number {
    const p = this.translate(va, write, true);
    if (p < 0) return -p === FAULT_SIGSEGV_ACCERR ? SEGV_ACCERR : SEGV_MAPERR;
    if (write) this.data[p] = this.data[p] ?? 0; // a store of the byte's own value
    return 0;
  }
}
