// mm/vma.c do_vmi_munmap: unmap a range of one process's VMAs.
// The VMA layer's conventions (unsigned long arguments, Linux errno order) are in vma.ts.
// Worker-local state only (one process's VMA list, on M's thread): no shared memory, no lock; M's
// server calls it one request at a time, so callers hold nothing.
import { EINVAL, ENOMEM, TASK_SIZE } from '../../uapi/abi.ts';
import { VmaTree } from './vma.ts';
import { offsetInPage, pageAlign, ulong } from './vma.ts';

export class Munmap extends VmaTree {
  // ----- munmap -------------------------------------------------------------------------------

  /** mm/vma.c do_vmi_munmap (+ vms_gather_munmap_vmas' map_count check). */
  protected doMunmap(start: number, len: number): number {
    if (offsetInPage(start) || start > TASK_SIZE || len > TASK_SIZE - start) return -EINVAL;
    const end = start + pageAlign(len);
    if (end === start) return -EINVAL;
    const vma = this.findVmaIntersection(start, end);
    if (!vma) return 0;
    // Make sure that map_count on return from munmap() will not exceed its limit; but let
    // map_count go just above its limit temporarily, to help free resources as expected.
    if (start > vma.start && end < vma.end && this.list.length >= this.maxMapCount) return -ENOMEM;
    this.removeRange(start, end, true);
    return 0;
  }

  munmap(addr: number, len: number): number {
    return this.doMunmap(ulong(addr, 'addr'), ulong(len, 'len'));
  }
}
