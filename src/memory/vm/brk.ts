// mm/mmap.c SYSCALL_DEFINE1(brk) and do_brk_flags: the program break, grown as an anonymous VMA and shrunk by munmap.
// The VMA layer's conventions (unsigned long arguments, Linux errno order) are in vma.ts.
// Worker-local state only (one process's VMA list, on M's thread): no shared memory, no lock; M's
// server calls it one request at a time, so callers hold nothing.
import { ENOMEM, MAP_FIXED, PAGE_SIZE } from '../../uapi/abi.ts';
import { Mmap } from './mmap.ts';
import {
  STACK_GUARD_GAP,
  VM_ANON,
  VM_DATA_DEFAULT_FLAGS,
  Vma,
  isErr,
  makeVma,
  pageAlign,
  ulong,
  vmStartGap,
} from './vma.ts';

export class Brk extends Mmap {
  // ----- brk ----------------------------------------------------------------------------------

  /** mm/mmap.c SYSCALL_DEFINE1(brk): returns the new brk, or the unchanged one on failure. */
  brkSet(addr: number): number {
    const brk = ulong(addr, 'brk');
    const origbrk = this.brk;
    const minBrk = this.brkStart; // !CONFIG_COMPAT_BRK
    if (brk < minBrk) return origbrk;
    // (RLIMIT_DATA is unlimited)
    const newbrk = pageAlign(brk);
    const oldbrk = pageAlign(this.brk);
    if (oldbrk === newbrk) {
      this.brk = brk;
      return brk;
    }
    // Always allow shrinking brk.
    if (brk <= this.brk) {
      // Search one past newbrk
      const brkvma = this.findVmaIntersection(newbrk, oldbrk);
      if (!brkvma || brkvma.start >= oldbrk) return origbrk; // mapping intersects with an existing non-brk vma
      // do_vmi_align_munmap(newbrk, oldbrk)
      if (newbrk > brkvma.start && oldbrk < brkvma.end && this.list.length >= this.maxMapCount) return origbrk;
      this.removeRange(newbrk, oldbrk, true);
      this.brk = brk;
      return brk;
    }
    // check_brk_limits(): get_unmapped_area(NULL, oldbrk, len, 0, MAP_FIXED), mlock_future_ok(def_flags)
    if (isErr(this.getUnmappedArea({ shmem: false }, oldbrk, newbrk - oldbrk, 0, MAP_FIXED))) return origbrk;
    // Only check if the next VMA is within the stack_guard_gap of the expansion area
    const next = this.findVmaIntersection(oldbrk, newbrk + PAGE_SIZE + STACK_GUARD_GAP);
    if (next && newbrk + PAGE_SIZE > vmStartGap(next)) return origbrk;
    // brkvma = vma_prev_limit(&vmi, mm->start_brk)
    const i = this.findVmaIndex(oldbrk);
    const prev = i > 0 ? this.list[i - 1] : undefined;
    const brkvma = prev && prev.end > this.brkStart ? prev : undefined;
    if (isErr(this.doBrkFlags(brkvma, oldbrk, newbrk - oldbrk, 0))) return origbrk;
    this.brk = brk;
    return brk;
  }

  /** mm/vma.c do_brk_flags */
  protected doBrkFlags(vma: Vma | undefined, addr: number, len: number, flags: number): number {
    // (may_expand_vm: RLIMIT_AS is unlimited)
    if (this.list.length > this.maxMapCount) return -ENOMEM;
    flags |= VM_DATA_DEFAULT_FLAGS | VM_ANON;
    // Expand the existing vma if possible; Note that singular lists do not occur after expanding.
    if (vma && vma.end === addr && vma.flags === flags && vma.file === undefined && vma.shmemId === undefined) {
      const i = this.findVmaIndex(vma.start);
      this.list[i] = makeVma(vma.start, addr + len, vma.flags, vma.pgoff, undefined, undefined);
      return 0;
    }
    // create a vma struct for an anonymous mapping
    this.insertVma(makeVma(addr, addr + len, flags, addr / PAGE_SIZE, undefined, undefined));
    return 0;
  }
}
