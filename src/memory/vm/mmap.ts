// mm/mmap.c do_mmap and mm/vma.c mmap_region: map a range (MAP_FIXED unmaps what was there first, munmap.ts).
// The VMA layer's conventions (unsigned long arguments, Linux errno order) are in vma.ts.
// Worker-local state only (one process's VMA list, on M's thread): no shared memory, no lock; M's
// server calls it one request at a time, so callers hold nothing.
import {
  EACCES,
  EAGAIN,
  EEXIST,
  EINVAL,
  ENOMEM,
  EOVERFLOW,
  EPERM,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_TYPE,
  PAGE_SIZE,
  PROT_WRITE,
} from '../../uapi/abi.ts';
import { Munmap } from './munmap.ts';
import {
  EOPNOTSUPP,
  LEGACY_MAP_MASK,
  MAP_DROPPABLE,
  MAX_LFS_FILESIZE_PAGES,
  MapTarget,
  PMD_SIZE,
  TWO64,
  VM_ANON,
  VM_DONTDUMP,
  VM_DROPPABLE,
  VM_GROWSDOWN,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_MAY_FLAGS,
  VM_NORESERVE,
  VM_SHARED,
  VM_WIPEONFORK,
  VmaFile,
  calcVmFlagBits,
  calcVmProtBits,
  isErr,
  makeVma,
  offsetInPage,
  pageAlign,
  pageAlignDown,
  ulong,
} from './vma.ts';

export class Mmap extends Munmap {
  // ----- mmap ---------------------------------------------------------------------------------

  mmap(addr: number, len: number, prot: number, flags: number, file: VmaFile | null, offset: number): number {
    addr = ulong(addr, 'addr');
    len = ulong(len, 'len');
    offset = ulong(offset, 'offset');
    // arch/x86/kernel/sys_x86_64.c sys_mmap
    if (offsetInPage(offset)) return -EINVAL;
    // mm/mmap.c ksys_mmap_pgoff (fd lookup/EBADF is the caller's)
    if (file && flags & MAP_HUGETLB) return -EINVAL; // not a hugetlbfs file
    if (!file && flags & MAP_HUGETLB) {
      // hugetlb_file_setup(): len = ALIGN(len, huge_page_size) (wrapping like an unsigned long)
      len = Math.ceil(len / PMD_SIZE) * PMD_SIZE;
      if (len >= TWO64) len -= TWO64;
    }
    return this.doMmap(file ?? undefined, addr, len, prot, flags, offset / PAGE_SIZE);
  }

  /** mm/mmap.c do_mmap */
  protected doMmap(
    file: VmaFile | undefined,
    addr: number,
    len: number,
    prot: number,
    flags: number,
    pgoff: number,
  ): number {
    if (!len) return -EINVAL;
    // force arch specific MAP_FIXED handling in get_unmapped_area (before the hint is rounded,
    // so an unaligned MAP_FIXED_NOREPLACE address is -EINVAL, as measured [M9d])
    if (flags & MAP_FIXED_NOREPLACE) flags |= MAP_FIXED;
    // round_hint_to_min()
    if (!(flags & MAP_FIXED)) {
      addr = pageAlignDown(addr);
      if (addr && addr < this.mmapMinAddr) addr = this.mmapMinAddr;
    }
    // Careful about overflows..
    len = pageAlign(len);
    if (!len) return -ENOMEM;
    // offset overflow? (pgoff + (len >> PAGE_SHIFT) < pgoff): unreachable from the 64-bit mmap()
    // syscall, whose pgoff is at most 2^52.
    if (pgoff + len / PAGE_SIZE >= TWO64) return -EOVERFLOW;
    // Too many mappings?
    if (this.list.length > this.maxMapCount) return -ENOMEM;

    const target: MapTarget = { shmem: !file && (flags & MAP_SHARED) !== 0 };
    if (file) target.file = file;
    const a = this.getUnmappedArea(target, addr, len, pgoff, flags);
    if (isErr(a)) return a;
    addr = a;

    if (flags & MAP_FIXED_NOREPLACE) {
      if (this.findVmaIntersection(addr, addr + len)) return -EEXIST;
    }

    let vmFlags = calcVmProtBits(prot) | calcVmFlagBits(flags) | VM_MAY_FLAGS;
    // Lock the VMA if MAP_LOCKED is set (can_do_mlock() holds while RLIMIT_MEMLOCK > 0)
    if (flags & MAP_LOCKED && this.memlockRlimit <= 0) return -EPERM;
    if (!this.mlockFutureOk(vmFlags, len)) return -EAGAIN;

    let shmem = false;
    if (file) {
      // file_mmap_ok(): offset + len must fit below MAX_LFS_FILESIZE
      if (pgoff + len / PAGE_SIZE > MAX_LFS_FILESIZE_PAGES - 1) return -EOVERFLOW;
      switch (flags & MAP_TYPE) {
        case MAP_SHARED:
        case MAP_SHARED_VALIDATE: {
          // MAP_SHARED silently ignores non-legacy flags; MAP_SHARED_VALIDATE rejects them.
          if ((flags & MAP_TYPE) === MAP_SHARED) flags &= LEGACY_MAP_MASK;
          else if (flags & ~LEGACY_MAP_MASK) return -EOPNOTSUPP;
          if (prot & PROT_WRITE && file.readOnly) return -EACCES;
          vmFlags |= VM_SHARED | VM_MAYSHARE;
          if (file.readOnly) vmFlags &= ~(VM_MAYWRITE | VM_SHARED);
          if (vmFlags & VM_GROWSDOWN) return -EINVAL;
          break;
        }
        case MAP_PRIVATE:
          if (vmFlags & VM_GROWSDOWN) return -EINVAL;
          break;
        default:
          return -EINVAL;
      }
    } else {
      switch (flags & MAP_TYPE) {
        case MAP_SHARED:
          if (vmFlags & VM_GROWSDOWN) return -EINVAL;
          // Ignore pgoff.
          pgoff = 0;
          vmFlags |= VM_SHARED | VM_MAYSHARE;
          shmem = true;
          break;
        case MAP_DROPPABLE:
          // A locked or stack area makes no sense to be droppable.
          if (flags & (MAP_LOCKED | MAP_HUGETLB)) return -EINVAL;
          if (vmFlags & VM_GROWSDOWN) return -EINVAL;
          vmFlags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP;
          pgoff = addr / PAGE_SIZE;
          break;
        case MAP_PRIVATE:
          // Set pgoff according to addr for anon_vma.
          pgoff = addr / PAGE_SIZE;
          break;
        default:
          return -EINVAL;
      }
      vmFlags |= VM_ANON;
    }
    // We honor MAP_NORESERVE if allowed to overcommit (vm.overcommit_memory != 2).
    if (flags & MAP_NORESERVE) vmFlags |= VM_NORESERVE;
    // No hugetlbfs pool: hugetlb_reserve_pages() fails, as on a machine with nr_hugepages = 0.
    if (!file && flags & MAP_HUGETLB) return -ENOMEM;

    return this.mmapRegion(file, addr, len, vmFlags, pgoff, shmem);
  }

  /** mm/vma.c mmap_region / __mmap_region */
  protected mmapRegion(
    file: VmaFile | undefined,
    addr: number,
    len: number,
    vmFlags: number,
    pgoff: number,
    shmem: boolean,
  ): number {
    const end = addr + len;
    // Find the first overlapping VMA (MAP_FIXED replaces whatever is there).
    const first = this.findVmaIntersection(addr, end);
    if (first && addr > first.start && end < first.end && this.list.length >= this.maxMapCount) return -ENOMEM;
    if (first) this.removeRange(addr, end, true);
    const shmemId = shmem ? this.newShmemId() : undefined;
    this.insertVma(makeVma(addr, end, vmFlags, pgoff, file, shmemId));
    this.mergeRange(addr, end);
    return addr;
  }
}
