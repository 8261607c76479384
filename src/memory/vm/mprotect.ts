// mm/mprotect.c do_mprotect_pkey and mprotect_fixup; and the fault-time access check of
// arch/x86/mm/fault.c with the stack's expand_downwards (mm/mmap.c).
// The VMA layer's conventions (unsigned long arguments, Linux errno order) are in vma.ts.
// Worker-local state only (one process's VMA list, on M's thread): no shared memory, no lock; M's
// server calls it one request at a time, so callers hold nothing.
import { EACCES, EINVAL, ENOMEM, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, TASK_SIZE } from '../../uapi/abi.ts';
import { Brk } from './brk.ts';
import {
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_SEM,
  STACK_GUARD_GAP,
  TWO64,
  VM_ACCESS_FLAGS,
  VM_GROWSDOWN,
  VM_WRITE,
  calcVmProtBits,
  canMerge,
  makeVma,
  offsetInPage,
  pageAlignArg,
  pageAlignDown,
  ulong,
  withFlags,
  withRange,
} from './vma.ts';
import { at } from '../../lib/at.ts';

export class Mprotect extends Brk {
  // ----- mprotect -----------------------------------------------------------------------------

  /** mm/mprotect.c do_mprotect_pkey (pkey = -1) */
  mprotect(addr: number, len: number, prot: number): number {
    let start = ulong(addr, 'start');
    const aligned = pageAlignArg(len, 'len');
    len = ulong(len, 'len');
    prot = ulong(prot, 'prot');
    // prot is an unsigned long: take the PROT_GROWS* bits off arithmetically, keep any high bits
    // so that arch_validate_prot() below rejects them.
    const grows = (prot % 2 ** 32) & (PROT_GROWSDOWN | PROT_GROWSUP);
    prot = prot - grows;
    if (grows === (PROT_GROWSDOWN | PROT_GROWSUP)) return -EINVAL; // can't be both
    if (offsetInPage(start)) return -EINVAL;
    if (!len) return 0;
    len = aligned;
    const end = start + len;
    if (end <= start || end >= TWO64) return -ENOMEM;
    // arch_validate_prot(): only PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM
    if (prot > (PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM)) return -EINVAL;

    let i = this.findVmaIndex(start);
    let vma = this.list[i];
    if (!vma || vma.start >= end) return -ENOMEM;
    if (grows & PROT_GROWSDOWN) {
      start = vma.start;
      if (!(vma.flags & VM_GROWSDOWN)) return -EINVAL;
    } else {
      if (vma.start > start) return -ENOMEM;
      if (grows & PROT_GROWSUP) return -EINVAL; // no VM_GROWSUP on x86
    }

    let error = 0;
    let tmp = vma.start;
    let nstart = start;
    while (vma && vma.start < end) {
      if (vma.start !== tmp) {
        error = -ENOMEM;
        break;
      }
      const newflags = calcVmProtBits(prot) | (vma.flags & ~VM_ACCESS_FLAGS);
      // newflags >> 4 shift VM_MAY% in place of VM_%
      if (newflags & ~(newflags >> 4) & VM_ACCESS_FLAGS) {
        error = -EACCES;
        break;
      }
      const pieceEnd = Math.min(vma.end, end);
      error = this.mprotectFixup(i, nstart, pieceEnd, newflags);
      if (error) break;
      // tmp = vma_iter_end(&vmi): the end of the VMA now holding the piece (merges may extend it)
      const j = this.findVmaIndex(pieceEnd - 1);
      tmp = at(this.list, j).end;
      nstart = tmp;
      i = j + 1;
      vma = this.list[i];
    }
    if (!error && tmp < end) error = -ENOMEM;
    return error;
  }

  /** mm/mprotect.c mprotect_fixup -> vma_modify_flags (merge first, split only if no merge). */
  protected mprotectFixup(i: number, start: number, end: number, newflags: number): number {
    const vma = at(this.list, i);
    if (newflags === vma.flags) return 0;
    const piece = makeVma(start, end, newflags, vma.pgoff + (start - vma.start) / PAGE_SIZE, vma.file, vma.shmemId);
    const prev = i > 0 ? this.list[i - 1] : undefined;
    const next = this.list[i + 1];
    const mergesPrev = start === vma.start && prev !== undefined && canMerge(prev, piece);
    const mergesNext = end === vma.end && next !== undefined && canMerge(piece, next);
    if (!mergesPrev && !mergesNext) {
      // split_vma() refuses once map_count has reached the limit; the first split stays.
      if (start > vma.start) {
        if (this.list.length >= this.maxMapCount) return -ENOMEM;
        this.splitAt(start);
      }
      if (end < vma.end) {
        if (this.list.length >= this.maxMapCount) return -ENOMEM;
        this.splitAt(end);
      }
    } else {
      this.splitAt(start);
      this.splitAt(end);
    }
    const j = this.findVmaIndex(start);
    this.list[j] = withFlags(at(this.list, j), newflags);
    this.mergeRange(start, end);
    return 0;
  }

  // ----- page faults --------------------------------------------------------------------------

  /**
   * The fault-time check of arch/x86/mm/fault.c (lock_mm_and_find_vma + access_error): 'ok' if the
   * access is allowed, 'maperr' (SEGV_MAPERR) without a VMA, 'accerr' (SEGV_ACCERR) if the VMA's
   * protection forbids it. Like Linux, an access just below a VM_GROWSDOWN VMA grows the stack
   * (expand_stack) when the guard gap and RLIMIT_STACK allow it - the only state change here.
   */
  access(addr: number, write: boolean): 'ok' | 'maperr' | 'accerr' {
    addr = ulong(addr, 'addr');
    if (addr >= TASK_SIZE) return 'maperr';
    const i = this.findVmaIndex(addr);
    let vma = this.list[i];
    if (!vma) return 'maperr';
    if (vma.start > addr) {
      if (!(vma.flags & VM_GROWSDOWN)) return 'maperr';
      if (!this.expandDownwards(i, addr)) return 'maperr';
      vma = at(this.list, i);
    }
    if (write) return vma.flags & VM_WRITE ? 'ok' : 'accerr';
    // read, not present: vma_is_accessible()
    return vma.flags & VM_ACCESS_FLAGS ? 'ok' : 'accerr';
  }

  /** mm/mmap.c expand_downwards + acct_stack_growth */
  protected expandDownwards(i: number, address: number): boolean {
    const vma = at(this.list, i);
    address = pageAlignDown(address);
    if (address < this.mmapMinAddr) return false;
    // Enforce stack_guard_gap
    const prev = i > 0 ? this.list[i - 1] : undefined;
    if (prev && !(prev.flags & VM_GROWSDOWN) && prev.flags & VM_ACCESS_FLAGS && address - prev.end < STACK_GUARD_GAP) {
      return false;
    }
    // Stack limit test
    if (vma.end - address > this.stackRlimit) return false;
    if (!this.mlockFutureOk(vma.flags, vma.start - address)) return false;
    this.list[i] = withRange(vma, address, vma.end);
    return true;
  }
}
