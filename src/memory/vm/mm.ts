// lego_mm_struct (LegoOS managers/memory/vm/): the VMAs of one process as the memory component keeps
// them, with every syscall of the VMA layer. Its parts, one file each (vma.ts has the conventions):
//   vma.ts       constants, types, the VMA tree (lookup, split, detach, merge), get_unmapped_area
//   munmap.ts    do_vmi_munmap
//   mmap.ts      do_mmap, mmap_region
//   brk.ts       brk, do_brk_flags
//   mprotect.ts  do_mprotect_pkey, mprotect_fixup, the fault-time access check and stack growth
//   mremap.ts    do_mremap and its helpers
// Worker-local state only: a LegoMm lives on M's thread (server.ts keeps one per process) and touches
// no shared memory and takes no lock; M's server calls it one request at a time, so callers hold nothing.
import { Mremap } from './mremap.ts';

export * from './vma.ts';

/** lego_mm_struct: the VMAs of one process as the memory component keeps them. */
export class LegoMm extends Mremap {}
