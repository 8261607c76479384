// mm/mremap.c: do_mremap and its helpers (check_mremap_params, remap_move, mremap_to, shrink_vma,
// expand_vma, move_vma).
// The VMA layer's conventions (unsigned long arguments, Linux errno order) are in vma.ts.
// Worker-local state only (one process's VMA list, on M's thread): no shared memory, no lock; M's
// server calls it one request at a time, so callers hold nothing.
import {
  EAGAIN,
  EFAULT,
  EINVAL,
  ENOMEM,
  MAP_FIXED,
  MAP_SHARED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  TASK_SIZE,
} from '../../uapi/abi.ts';
import { Mprotect } from './mprotect.ts';
import {
  MapTarget,
  VM_LOCKED,
  VM_MAYSHARE,
  VM_SHARED,
  Vma,
  VmaRemap,
  isErr,
  makeVma,
  offsetInPage,
  pageAlignArg,
  ulong,
  withFlags,
} from './vma.ts';

export class Mremap extends Mprotect {
  // ----- mremap -------------------------------------------------------------------------------

  /** mm/mremap.c SYSCALL_DEFINE5(mremap) / do_mremap: new address or -errno. */
  mremap(oldAddr: number, oldLen: number, newLen: number, flags: number, newAddr: number): number {
    const vrm: VmaRemap = {
      addr: ulong(oldAddr, 'old_address'),
      oldLen: pageAlignArg(oldLen, 'old_len'),
      newLen: pageAlignArg(newLen, 'new_len'),
      flags: ulong(flags, 'flags'),
      newAddr: ulong(newAddr, 'new_address'),
      vma: undefined,
      delta: 0,
      remapType: 'noresize',
    };
    const err = this.checkMremapParams(vrm);
    if (err) return err;
    if (this.vrmMoveOnly(vrm)) return this.remapMove(vrm);
    vrm.vma = this.findVma(vrm.addr);
    const res = this.checkPrepVma(vrm);
    if (res) return res;
    return this.vrmImpliesNewAddr(vrm) ? this.mremapTo(vrm) : this.mremapAt(vrm);
  }

  /** Will a new address definitely be assigned? (MREMAP_FIXED or MREMAP_DONTUNMAP) */
  protected vrmImpliesNewAddr(vrm: VmaRemap): boolean {
    return (vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) !== 0;
  }

  /** Does this remap ONLY move mappings? (MREMAP_FIXED, old_len == new_len: may span several VMAs) */
  protected vrmMoveOnly(vrm: VmaRemap): boolean {
    return (vrm.flags & MREMAP_FIXED) !== 0 && vrm.oldLen === vrm.newLen;
  }

  /** vrm_overlaps() */
  protected vrmOverlaps(vrm: VmaRemap): boolean {
    return vrm.addr + vrm.oldLen > vrm.newAddr && vrm.newAddr + vrm.newLen > vrm.addr;
  }

  /** check_mremap_params(): everything decided before looking at a VMA. */
  protected checkMremapParams(vrm: VmaRemap): number {
    // Ensure no unexpected flag values.
    if (vrm.flags > (MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP)) return -EINVAL;
    // Start address must be page-aligned.
    if (offsetInPage(vrm.addr)) return -EINVAL;
    // We allow a zero old-len as a special case for DOS-emu "duplicate shm area" thing. But a
    // zero new-len is nonsensical.
    if (!vrm.newLen) return -EINVAL;
    // Is the new length silly?
    if (vrm.newLen > TASK_SIZE) return -EINVAL;
    // Remainder of checks are for cases with specific new_addr.
    if (!this.vrmImpliesNewAddr(vrm)) return 0;
    // Is the new address silly?
    if (vrm.newAddr > TASK_SIZE - vrm.newLen) return -EINVAL;
    // The new address must be page-aligned.
    if (offsetInPage(vrm.newAddr)) return -EINVAL;
    // A fixed address implies a move.
    if (!(vrm.flags & MREMAP_MAYMOVE)) return -EINVAL;
    // MREMAP_DONTUNMAP does not allow resizing in the process.
    if (vrm.flags & MREMAP_DONTUNMAP && vrm.oldLen !== vrm.newLen) return -EINVAL;
    // Target VMA must not overlap source VMA.
    if (this.vrmOverlaps(vrm)) return -EINVAL;
    // move_vma() needs us to stay 4 maps below the threshold: worst case both the source and the
    // destination VMA are split in 3 (measured on 6.18: -ENOMEM from map_count 65525 on).
    if (this.list.length + 2 >= this.maxMapCount - 3) return -ENOMEM;
    return 0;
  }

  /** check_prep_vma() (vma_to_resize in older kernels) */
  protected checkPrepVma(vrm: VmaRemap): number {
    const vma = vrm.vma;
    if (!vma) return -EFAULT;
    vrm.delta = Math.abs(vrm.oldLen - vrm.newLen);
    vrm.remapType = vrm.delta === 0 ? 'noresize' : vrm.oldLen > vrm.newLen ? 'shrink' : 'expand';
    // For convenience, we set new_addr even if VMA won't move.
    if (!this.vrmImpliesNewAddr(vrm)) vrm.newAddr = vrm.addr;
    // Below only meaningful if we expand or move a VMA.
    if (!(vrm.remapType === 'expand' || this.vrmImpliesNewAddr(vrm))) return 0;
    let oldLen = vrm.oldLen;
    const newLen = vrm.newLen;
    // !old_len is a special case where an attempt is made to 'duplicate' a mapping. This makes no
    // sense for private mappings.
    if (!oldLen && !(vma.flags & (VM_SHARED | VM_MAYSHARE))) return -EINVAL;
    // We permit crossing of boundaries for the range being unmapped due to a shrink.
    if (vrm.remapType === 'shrink') oldLen = newLen;
    // We can't remap across the end of VMAs, as another VMA may be adjacent.
    if (oldLen > vma.end - vrm.addr) return -EFAULT;
    if (newLen === oldLen) return 0;
    // Need to be careful about a growing mapping (pgoff overflow cannot happen below 2^64 here).
    if (!this.mlockFutureOk(vma.flags, vrm.delta)) return -EAGAIN;
    // (may_expand_vm: RLIMIT_AS is unlimited)
    return 0;
  }

  /** remap_move(): MREMAP_FIXED with old_len == new_len, moving every VMA in the range, keeping gaps. */
  protected remapMove(vrm: VmaRemap): number {
    const start = vrm.addr;
    const end = vrm.addr + vrm.oldLen;
    let targetAddr = vrm.newAddr;
    let res = -EFAULT;
    let lastEnd = 0;
    let seen = false;
    let cursor = start;
    for (;;) {
      const vma = this.findVmaIntersection(cursor, end);
      if (!vma) break;
      // Account for start, end not aligned with VMA start, end.
      const addr = Math.max(vma.start, start);
      const len = Math.min(end, vma.end) - addr;
      // No gap permitted at the start of the range.
      if (!seen && start < vma.start) return -EFAULT;
      // Keep the gaps between source VMAs in the destination.
      const offset = seen ? vma.start - lastEnd : 0;
      lastEnd = vma.end;
      cursor = Math.min(end, vma.end);
      const sub: VmaRemap = {
        addr,
        oldLen: len,
        newLen: len,
        flags: vrm.flags,
        newAddr: targetAddr + offset,
        vma,
        delta: 0,
        remapType: 'noresize',
      };
      const err = this.checkPrepVma(sub);
      const resVma = err ? err : this.mremapTo(sub);
      if (isErr(resVma)) return resVma;
      if (!seen) res = resVma;
      seen = true;
      targetAddr = resVma + len;
      if (cursor >= end) break;
    }
    return res;
  }

  /** mremap_to(): move to an explicit (MREMAP_FIXED) or mandatory (MREMAP_DONTUNMAP) new address. */
  protected mremapTo(vrm: VmaRemap): number {
    if (vrm.flags & MREMAP_FIXED) {
      // VMA is moved to dst address, and munmap dst first.
      const err = this.doMunmap(vrm.newAddr, vrm.newLen);
      if (err) return err;
      // If we remap a portion of a VMA elsewhere in the same VMA, this can invalidate the old VMA.
      vrm.vma = this.findVma(vrm.addr);
      if (!vrm.vma) return -EFAULT;
    }
    if (vrm.remapType === 'shrink') {
      const err = this.shrinkVma(vrm);
      if (err) return err;
      // Set up for the move now shrink has been executed.
      vrm.oldLen = vrm.newLen;
    }
    const err = this.vrmSetNewAddr(vrm);
    if (err) return err;
    return this.moveVma(vrm);
  }

  /** shrink_vma(): unmap [addr + new_len, addr + old_len). */
  protected shrinkVma(vrm: VmaRemap): number {
    const res = this.doMunmap(vrm.addr + vrm.newLen, vrm.delta);
    if (res) return res;
    vrm.vma = this.findVma(vrm.addr);
    if (!vrm.vma) return -EFAULT;
    return 0;
  }

  /** mremap_at(): resize without a mandated new address. */
  protected mremapAt(vrm: VmaRemap): number {
    switch (vrm.remapType) {
      case 'noresize':
        // NO-OP CASE - resizing to the same size.
        return vrm.addr;
      case 'shrink': {
        // SHRINK CASE. Can always be done in-place.
        const res = this.shrinkVma(vrm);
        if (res) return res;
        return vrm.addr;
      }
      case 'expand':
        return this.expandVma(vrm);
    }
  }

  /** vma_expandable() */
  protected vmaExpandable(vma: Vma, delta: number): boolean {
    const end = vma.end + delta;
    if (this.findVmaIntersection(vma.end, end)) return false;
    const a = this.getUnmappedArea({ shmem: false }, vma.start, end - vma.start, 0, MAP_FIXED);
    return !isErr(a);
  }

  /** expand_vma(): grow in place if [addr, addr+old_len) ends the VMA and the gap above is free, else move. */
  protected expandVma(vrm: VmaRemap): number {
    const vma = this.vmaAt(vrm.addr);
    // vrm_can_expand_in_place()
    if (vma.end - vrm.addr === vrm.oldLen && this.vmaExpandable(vma, vrm.delta)) {
      // expand_vma_in_place() -> vma_merge_extend(): may also merge with the next VMA.
      const i = this.findVmaIndex(vma.start);
      const newEnd = vma.end + vrm.delta;
      this.list[i] = makeVma(vma.start, newEnd, vma.flags, vma.pgoff, vma.file, vma.shmemId);
      this.mergeRange(vma.start, newEnd);
      return vrm.addr;
    }
    // We weren't able to just expand or shrink the area, we need to create a new one and move it.
    if (!(vrm.flags & MREMAP_MAYMOVE)) return -ENOMEM;
    const err = this.vrmSetNewAddr(vrm);
    if (err) return err;
    return this.moveVma(vrm);
  }

  /** vrm_set_new_addr(): get_unmapped_area for the destination. */
  protected vrmSetNewAddr(vrm: VmaRemap): number {
    const vma = this.vmaAt(vrm.addr);
    const pgoff = vma.pgoff + (vrm.addr - vma.start) / PAGE_SIZE;
    const newAddr = this.vrmImpliesNewAddr(vrm) ? vrm.newAddr : 0;
    let mapFlags = 0;
    if (vrm.flags & MREMAP_FIXED) mapFlags |= MAP_FIXED;
    if (vma.flags & VM_MAYSHARE) mapFlags |= MAP_SHARED;
    const target: MapTarget = { shmem: vma.shmemId !== undefined };
    if (vma.file) target.file = vma.file;
    const res = this.getUnmappedArea(target, newAddr, vrm.newLen, pgoff, mapFlags);
    if (isErr(res)) return res;
    vrm.newAddr = res;
    return 0;
  }

  /** move_vma(): copy_vma, move_page_tables, then unmap the source (or keep it empty: DONTUNMAP). */
  protected moveVma(vrm: VmaRemap): number {
    // prep_move_vma(): we'd prefer to avoid failure later on in do_munmap: which may split one
    // vma into three before unmapping (measured on 6.18: -ENOMEM from map_count 65527 on).
    if (this.list.length >= this.maxMapCount - 3) return -ENOMEM;
    const vma = this.vmaAt(vrm.addr);
    const newPgoff = vma.pgoff + (vrm.addr - vma.start) / PAGE_SIZE;
    // copy_vma()
    const newVma = makeVma(vrm.newAddr, vrm.newAddr + vrm.newLen, vma.flags, newPgoff, vma.file, vma.shmemId);
    if (this.findVmaIntersection(newVma.start, newVma.end)) throw new Error('BUG: mremap destination not free');
    this.insertVma(newVma);
    // move_page_tables()
    if (vrm.oldLen > 0) this.hooks?.movePages(vrm.addr, vrm.newAddr, vrm.oldLen);
    const dontunmap = (vrm.flags & MREMAP_DONTUNMAP) !== 0;
    // unmap_source_vma(): do_vmi_munmap(addr, old_len); the pages already left, nothing to zap.
    // old_len == 0 ("duplicate shm area") makes that munmap fail with -EINVAL, leaving the source.
    if (!dontunmap && vrm.oldLen > 0) this.removeRange(vrm.addr, vrm.addr + vrm.oldLen, false);
    this.mergeRange(newVma.start, newVma.end);
    if (dontunmap) {
      // dontunmap_complete(): we always clear VM_LOCKED[ONFAULT] on the old vma.
      const i = this.findVmaIndex(vrm.addr);
      const old = this.list[i];
      if (old && old.start <= vrm.addr && old.flags & VM_LOCKED) this.list[i] = withFlags(old, old.flags & ~VM_LOCKED);
    }
    return vrm.newAddr;
  }
}
