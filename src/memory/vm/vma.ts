// M-side VMA management for one process (LegoOS lego_mm_struct), with Linux 6.x semantics.
//
// LegoOS's memory component runs a copy of mm/mmap.c + mm/mremap.c; where LegoOS deviates from
// Linux (every failure becomes -ENOMEM, no MREMAP_DONTUNMAP, no multi-VMA moves, ...) this file
// follows Linux. Function and variable names are Linux's so this file can be read next to
// mm/mmap.c, mm/vma.c, mm/mremap.c, mm/mprotect.c, arch/x86/kernel/sys_x86_64.c and
// mm/huge_memory.c. Errno precedence was checked against a real Linux 6.18 x86-64 kernel
// (see test/memory-vma.test.ts for the experiments).
//
// Addresses are plain numbers (< 2^47, exact in a double); they are never fed to 32-bit bit
// operators. Syscall arguments are C `unsigned long`: negative inputs are read modulo 2^64, so
// `len = -1` behaves like Linux's 0xffffffffffffffff (PAGE_ALIGN wraps to 0).
//
// This file: the constants and types of the VMA layer, the VMA tree of one process (sorted,
// non-overlapping, frozen VMAs: lookup, split, detach, merge: mm/vma.c) and get_unmapped_area
// (mm/mmap.c, arch/x86/kernel/sys_x86_64.c, mm/huge_memory.c). The syscalls build on it, one file
// each, in this order: munmap.ts -> mmap.ts -> brk.ts -> mprotect.ts -> mremap.ts -> mm.ts
// (LegoMm). M's server calls them from its single handler loop, one request at a time (server.ts;
// there is no VMA lock), so nothing here is shared between threads: worker-local state only, no
// shared memory, no lock; the MmHooks it calls (zapPages, movePages) run on the same thread.
import {
  EINVAL,
  ENOMEM,
  EPERM,
  MAP_ANONYMOUS,
  MAP_DENYWRITE,
  MAP_EXECUTABLE,
  MAP_FIXED,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_STACK,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
} from '../../uapi/abi.ts';
import { hexPad } from '../../lib/text.ts';
import { VM_MAYWRITE, VM_SHARED } from '../../fabric/proto.ts';
import { at } from '../../lib/at.ts';

// ---------------------------------------------------------------------------------------------
// Constants Linux has and uapi.ts does not.

/** include/uapi/asm-generic/errno.h (returned by MAP_SHARED_VALIDATE with unknown flags). */
export const EOPNOTSUPP = 95;

/** include/uapi/linux/mman.h: anonymous "droppable" mapping type (Linux 6.11+). */
export const MAP_DROPPABLE = 0x08;
/** arch/x86/include/uapi/asm/mman.h */
export const MAP_32BIT = 0x40;
export const MAP_ABOVE4G = 0x80;
/** include/uapi/asm-generic/mman-common.h */
export const MAP_SYNC = 0x080000;
export const MAP_UNINITIALIZED = 0x4000000;
export const MAP_HUGE_SHIFT = 26;
export const MAP_HUGE_2MB = 21 * 2 ** MAP_HUGE_SHIFT;
export const MAP_HUGE_1GB = 30 * 2 ** MAP_HUGE_SHIFT;

export const PROT_SEM = 0x8;
export const PROT_GROWSDOWN = 0x01000000;
export const PROT_GROWSUP = 0x02000000;

/** include/linux/mman.h LEGACY_MAP_MASK: flags MAP_SHARED silently drops, MAP_SHARED_VALIDATE rejects. */
export const LEGACY_MAP_MASK =
  MAP_SHARED |
  MAP_PRIVATE |
  MAP_FIXED |
  MAP_ANONYMOUS |
  MAP_DENYWRITE |
  MAP_EXECUTABLE |
  MAP_UNINITIALIZED |
  MAP_GROWSDOWN |
  MAP_LOCKED |
  MAP_NORESERVE |
  MAP_POPULATE |
  MAP_NONBLOCK |
  MAP_STACK |
  MAP_HUGETLB |
  MAP_32BIT |
  MAP_ABOVE4G |
  MAP_HUGE_2MB |
  MAP_HUGE_1GB;

// VM_* bits (include/linux/mm.h). Bits that carry a Linux name have Linux's value. VM_SHARED and
// VM_MAYWRITE are defined with the fork message that carries them to P (fabric/proto.ts).
export { VM_MAYWRITE, VM_SHARED };
export const VM_NONE = 0x0;
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_MAYREAD = 0x10;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_GROWSDOWN = 0x100;
export const VM_LOCKED = 0x2000;
export const VM_NORESERVE = 0x200000;
export const VM_WIPEONFORK = 0x2000000;
export const VM_DONTDUMP = 0x4000000;
export const VM_NOHUGEPAGE = 0x40000000;
/**
 * splitkern-only: Linux's VM_DROPPABLE is a high arch bit; here it reuses the x86 VM_PAT slot, never set
 * on user VMAs.
 */
export const VM_DROPPABLE = 0x01000000;
/** splitkern-only: anonymous memory (Linux tests vma->vm_ops == NULL; here it is a bit, in the VM_MIXEDMAP slot). */
export const VM_ANON = 0x10000000;

export const VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
export const VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
/** VM_DATA_DEFAULT_FLAGS on x86-64 (no READ_IMPLIES_EXEC): brk VMAs. */
export const VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAY_FLAGS;

export const DEFAULT_MAX_MAP_COUNT = 65530;
/** mm/mmap.c: stack_guard_gap = 256UL << PAGE_SHIFT */
export const STACK_GUARD_GAP = 256 * PAGE_SIZE;
export const PMD_SIZE = 2 * 1024 * 1024;
/** The [stack] VMA of a freshly exec'd x86-64 process: 132 KiB (0x21000). */
export const INITIAL_STACK_SIZE = 132 * 1024;
/** Default RLIMIT_STACK and RLIMIT_MEMLOCK of an unprivileged Linux process (8 MiB each). */
export const DEFAULT_RLIMIT_STACK = 8 * 1024 * 1024;
export const DEFAULT_RLIMIT_MEMLOCK = 8 * 1024 * 1024;
/** include/linux/fs.h MAX_LFS_FILESIZE on 64-bit (2^63 - 1), in pages, for file_mmap_ok(). */
export const MAX_LFS_FILESIZE_PAGES = 2 ** 51; // (2^63 - 1) >> PAGE_SHIFT == 2^51 - 1, +1 for the boundary
/** x86 MAP_32BIT window (arch/x86/kernel/sys_x86_64.c find_start_end, without randomisation). */
export const MAP_32BIT_BEGIN = 0x40000000;
export const MAP_32BIT_END = 0x80000000;

export const TWO64 = 2 ** 64;

// ---------------------------------------------------------------------------------------------
// Types

export interface VmaFile {
  path: string;
  size: number;
  /**
   * splitkern extension: the file was opened without write access. Linux then clears VM_MAYWRITE
   * on MAP_SHARED mappings, so mmap(PROT_WRITE, MAP_SHARED) and a later mprotect(PROT_WRITE) fail
   * with -EACCES. Absent = opened read-write.
   */
  readOnly?: boolean;
}

export interface Vma {
  start: number;
  end: number;
  /** PROT_READ/WRITE/EXEC, always equal to flags & (VM_READ|VM_WRITE|VM_EXEC). */
  prot: number;
  /** VM_* bits above. */
  flags: number;
  file?: VmaFile;
  /**
   * In pages: file offset for file VMAs, shmem offset for shared anonymous, addr >> PAGE_SHIFT at creation
   * for private anonymous.
   */
  pgoff: number;
  /** Shared anonymous memory: identity of the backing shmem object ("/dev/zero (deleted)"). */
  shmemId?: number;
}

export interface MmHooks {
  /** move_page_tables: the pages of [oldStart, oldStart+len) now live at newStart (the destination is empty). */
  movePages(oldStart: number, newStart: number, len: number): void;
  /** unmap_region / zap_page_range: drop the pages of [start, start+len). */
  zapPages(start: number, len: number): void;
}

export interface MremapResult {
  ret: number;
}

export interface LegoMmOptions {
  /** mm->mmap_base: top of the top-down mmap area. */
  mmapBase: number;
  /** mm->start_brk. */
  brkStart: number;
  /** Top of the user stack; the initial [stack] VMA ends here. */
  stackTop: number;
  hooks?: MmHooks;
  /** vm.mmap_min_addr (default 65536, the effective value on Debian/Ubuntu/Fedora kernels). */
  mmapMinAddr?: number;
  /** vm.max_map_count (default 65530). */
  maxMapCount?: number;
  /** mm->mmap_legacy_base, start of the bottom-up fallback search (default PAGE_ALIGN(TASK_SIZE / 3)). */
  mmapLegacyBase?: number;
  /** RLIMIT_STACK in bytes (default 8 MiB): how far the stack may grow on faults. */
  stackRlimit?: number;
  /** RLIMIT_MEMLOCK in bytes (default 8 MiB) for MAP_LOCKED mappings; Infinity = CAP_IPC_LOCK. */
  memlockRlimit?: number;
  /**
   * CONFIG_TRANSPARENT_HUGEPAGE placement (default true): anonymous private mappings whose length
   * is a multiple of 2 MiB and file mappings spanning a 2 MiB-aligned file extent are placed on a
   * 2 MiB boundary (thp_get_unmapped_area), as Linux does with THP compiled in.
   */
  thpAlign?: boolean;
  /**
   * The colour of shared mappings, in bytes (0 = none, the default, as x86 Linux and LegoOS place
   * them): a MAP_SHARED mapping is placed so that addr - pgoff * PAGE_SIZE is a multiple of it, and a
   * MAP_FIXED one that is not gets -EINVAL (sparc64 arch_get_unmapped_area, COLOR_ALIGN / SHMLBA).
   * M gives the pcache's set span, so every alias of a shared page indexes the same pcache set.
   */
  shmColour?: number;
  /** Called when a shared mapping is placed without the colour rule (shmColour 0): bug shared-no-colour. */
  onUncolouredShared?: () => void;
  /** Identities of new shmem objects, unique across processes (default: a counter of this mm's own). */
  newShmemId?: () => number;
}

export type RemapType = 'noresize' | 'shrink' | 'expand';

/** mm/mremap.c struct vma_remap_struct (the parts that matter here). */
export interface VmaRemap {
  addr: number;
  oldLen: number;
  newLen: number;
  readonly flags: number;
  newAddr: number;
  vma: Vma | undefined;
  delta: number;
  remapType: RemapType;
}

/** What get_unmapped_area needs to know about the object being mapped. */
export interface MapTarget {
  file?: VmaFile;
  shmem: boolean;
}

// ---------------------------------------------------------------------------------------------
// Helpers (address arithmetic without 32-bit operators)

export const isErr = (v: number): boolean => v < 0;
export const offsetInPage = (a: number): number => a % PAGE_SIZE;

/** Read a syscall argument as C unsigned long. */
export function ulong(x: number, what: string): number {
  if (!Number.isInteger(x)) throw new RangeError(`${what} must be an integer, got ${x}`);
  return x < 0 ? x + TWO64 : x;
}

/** PAGE_ALIGN on an unsigned long: wraps to 0 past 2^64 - PAGE_SIZE. */
export function pageAlign(x: number): number {
  const r = Math.ceil(x / PAGE_SIZE) * PAGE_SIZE;
  return r >= TWO64 ? r - TWO64 : r;
}

export const pageAlignDown = (a: number): number => a - (a % PAGE_SIZE);

/**
 * PAGE_ALIGN of a syscall argument as it arrived (the signed 64-bit value of the register, exact in
 * a double), computed on the exact unsigned long: 0xfffffffffffff001 (-4095) wraps to 0 as in Linux,
 * where ulong() + pageAlign() would round 2^64 - 4095 first.
 */
export function pageAlignArg(x: number, what: string): number {
  if (!Number.isInteger(x)) throw new RangeError(`${what} must be an integer, got ${x}`);
  const u = BigInt.asUintN(64, BigInt(x));
  return Number(BigInt.asUintN(64, (u + BigInt(PAGE_SIZE - 1)) & ~BigInt(PAGE_SIZE - 1)));
}

/** Non-negative a mod m for possibly negative a. */
export const mod = (a: number, m: number): number => ((a % m) + m) % m;

export const sameFile = (a: VmaFile | undefined, b: VmaFile | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.path === b.path);

export const isPrivateAnon = (v: Vma): boolean => (v.flags & VM_ANON) !== 0 && v.shmemId === undefined;

export function makeVma(
  start: number,
  end: number,
  flags: number,
  pgoff: number,
  file: VmaFile | undefined,
  shmemId: number | undefined,
): Vma {
  const v: Vma = { start, end, prot: flags & VM_ACCESS_FLAGS, flags, pgoff };
  if (file !== undefined) v.file = file;
  if (shmemId !== undefined) v.shmemId = shmemId;
  return Object.freeze(v);
}

export const withRange = (v: Vma, start: number, end: number): Vma =>
  makeVma(start, end, v.flags, v.pgoff + (start - v.start) / PAGE_SIZE, v.file, v.shmemId);

export const withFlags = (v: Vma, flags: number): Vma => makeVma(v.start, v.end, flags, v.pgoff, v.file, v.shmemId);

/**
 * is_mergeable_vma + can_vma_merge_{before,after}: same flags and backing object, adjacent, and
 * (for file and shmem VMAs) contiguous pgoff. Private anonymous VMAs merge whatever their pgoff:
 * Linux also requires compatible anon_vmas, which depends on which pages were faulted - state the
 * memory component does not model (see the deviation note in the report).
 */
export function canMerge(a: Vma, b: Vma): boolean {
  if (a.end !== b.start || a.flags !== b.flags || !sameFile(a.file, b.file) || a.shmemId !== b.shmemId) return false;
  if (isPrivateAnon(a)) return true;
  return a.pgoff + (a.end - a.start) / PAGE_SIZE === b.pgoff;
}

/** vm_start_gap(): a VM_GROWSDOWN VMA reserves stack_guard_gap below itself. */
export function vmStartGap(v: Vma): number {
  if (!(v.flags & VM_GROWSDOWN)) return v.start;
  const s = v.start - STACK_GUARD_GAP;
  return s < 0 ? 0 : s;
}

/** calc_vm_prot_bits */
export const calcVmProtBits = (prot: number): number => prot & (PROT_READ | PROT_WRITE | PROT_EXEC);

/** calc_vm_flag_bits (x86-64, THP compiled in) */
export function calcVmFlagBits(flags: number): number {
  let vm = 0;
  if (flags & MAP_GROWSDOWN) vm |= VM_GROWSDOWN;
  if (flags & MAP_LOCKED) vm |= VM_LOCKED;
  if (flags & MAP_STACK) vm |= VM_NOHUGEPAGE;
  return vm;
}

/** lego_mm_struct: the VMAs of one process as the memory component keeps them. */
export class VmaTree {
  brkStart: number;
  brk: number;
  readonly mmapBase: number;
  readonly stackTop: number;
  readonly mmapMinAddr: number;
  readonly maxMapCount: number;
  readonly mmapLegacyBase: number;
  readonly stackRlimit: number;
  readonly memlockRlimit: number;
  readonly thpAlign: boolean;
  readonly shmColour: number;

  protected readonly list: Vma[] = [];
  protected readonly hooks: MmHooks | undefined;
  protected nextShmemId = 1;
  protected readonly newShmemId: () => number;
  private readonly onUncolouredShared: (() => void) | undefined;

  constructor(opts: LegoMmOptions) {
    this.mmapBase = pageAlignDown(opts.mmapBase);
    this.brkStart = opts.brkStart;
    this.brk = opts.brkStart;
    this.stackTop = pageAlignDown(opts.stackTop);
    this.hooks = opts.hooks;
    this.mmapMinAddr = pageAlign(opts.mmapMinAddr ?? 65536);
    this.maxMapCount = opts.maxMapCount ?? DEFAULT_MAX_MAP_COUNT;
    this.mmapLegacyBase = pageAlign(opts.mmapLegacyBase ?? Math.floor(TASK_SIZE / 3));
    this.stackRlimit = opts.stackRlimit ?? DEFAULT_RLIMIT_STACK;
    this.memlockRlimit = opts.memlockRlimit ?? DEFAULT_RLIMIT_MEMLOCK;
    this.thpAlign = opts.thpAlign ?? true;
    this.shmColour = opts.shmColour ?? 0;
    if (this.shmColour % PAGE_SIZE !== 0 || this.shmColour < 0) throw new RangeError('bad shmColour');
    this.newShmemId = opts.newShmemId ?? (() => this.nextShmemId++);
    this.onUncolouredShared = opts.onUncolouredShared;
    if (this.stackTop > TASK_SIZE || this.stackTop < INITIAL_STACK_SIZE) throw new RangeError('bad stackTop');
    // setup_arg_pages(): VM_STACK_FLAGS = VM_GROWSDOWN | VM_DATA_DEFAULT_FLAGS (| VM_ACCOUNT)
    const start = this.stackTop - INITIAL_STACK_SIZE;
    this.list.push(
      makeVma(
        start,
        this.stackTop,
        VM_DATA_DEFAULT_FLAGS | VM_GROWSDOWN | VM_ANON,
        start / PAGE_SIZE,
        undefined,
        undefined,
      ),
    );
  }

  /**
   * dup_mmap for fork: this (new, untouched) mm takes a copy of every VMA of `parent` and its brk.
   * VMAs are frozen, so the list is copied and its entries shared. Linux's VM_DONTCOPY and
   * VM_WIPEONFORK come from madvise, which splitkern does not have.
   */
  dupFrom(parent: VmaTree): void {
    this.list.splice(0, this.list.length, ...parent.list);
    this.brkStart = parent.brkStart;
    this.brk = parent.brk;
    this.nextShmemId = parent.nextShmemId;
  }

  /** Sorted, non-overlapping VMAs (frozen objects; replaced, never mutated). */
  get vmas(): readonly Vma[] {
    return this.list;
  }

  /** mm->map_count */
  get mapCount(): number {
    return this.list.length;
  }

  /** mm->locked_vm in bytes. */
  get lockedVm(): number {
    let n = 0;
    for (const v of this.list) if (v.flags & VM_LOCKED) n += v.end - v.start;
    return n;
  }

  // ----- lookup ------------------------------------------------------------------------------

  /** Index of Linux's find_vma(addr): the first VMA with end > addr (list.length if none). */
  protected findVmaIndex(addr: number): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1; // indices, not addresses
      const v = this.list[mid]; // lo <= mid < hi <= length: always a VMA
      if (v !== undefined && v.end > addr) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The VMA containing addr (Linux vma_lookup, not find_vma). */
  findVma(addr: number): Vma | undefined {
    const v = this.list[this.findVmaIndex(addr)];
    return v !== undefined && v.start <= addr ? v : undefined;
  }

  /** The VMA at addr, which the caller has already found (check_prep_vma): a missing one is a bug. */
  protected vmaAt(addr: number): Vma {
    const v = this.findVma(addr);
    if (!v) throw new Error(`mm: no VMA at 0x${addr.toString(16)} where one was found`);
    return v;
  }

  /** find_vma_intersection(mm, start, end) */
  findVmaIntersection(start: number, end: number): Vma | undefined {
    const v = this.list[this.findVmaIndex(start)];
    return v !== undefined && v.start < end ? v : undefined;
  }

  /** /proc/pid/maps-style dump, handy in logs and test failures. */
  formatMaps(): string {
    return this.list
      .map((v) => {
        const perms =
          (v.flags & VM_READ ? 'r' : '-') +
          (v.flags & VM_WRITE ? 'w' : '-') +
          (v.flags & VM_EXEC ? 'x' : '-') +
          (v.flags & VM_MAYSHARE ? 's' : 'p');
        const name = v.file
          ? v.file.path
          : v.shmemId !== undefined
            ? '/dev/zero (deleted)'
            : v.end === this.stackTop
              ? '[stack]'
              : v.start >= this.brkStart && v.end <= pageAlign(this.brk) && v.start < pageAlign(this.brk)
                ? '[heap]'
                : '';
        const off = ((v.file || v.shmemId !== undefined ? v.pgoff : 0) * PAGE_SIZE).toString(16).padStart(8, '0');
        return `${hexPad(v.start, 8)}-${hexPad(v.end, 8)} ${perms} ${off} ${name}`.trimEnd();
      })
      .join('\n');
  }

  // ----- VMA tree surgery ---------------------------------------------------------------------

  /** __split_vma at addr if addr falls strictly inside a VMA. */
  protected splitAt(addr: number): void {
    const i = this.findVmaIndex(addr);
    const v = this.list[i];
    if (v === undefined || v.start >= addr) return;
    this.list.splice(i, 1, withRange(v, v.start, addr), withRange(v, addr, v.end));
  }

  /** Detach every VMA piece in [start, end); zap their pages unless the pages were moved away. */
  protected removeRange(start: number, end: number, zap: boolean): void {
    this.splitAt(start);
    this.splitAt(end);
    const i = this.findVmaIndex(start);
    let j = i;
    while (j < this.list.length && at(this.list, j).start < end) j++;
    const removed = this.list.splice(i, j - i);
    if (zap && this.hooks) for (const v of removed) this.hooks.zapPages(v.start, v.end - v.start);
  }

  protected insertVma(v: Vma): void {
    const i = this.findVmaIndex(v.start);
    const next = this.list[i];
    if (next !== undefined && next.start < v.end) throw new Error(`BUG: inserting ${v.start}-${v.end} over a mapping`);
    this.list.splice(i, 0, v);
  }

  /** vma_merge_*: merge the VMAs touching [start, end) with each other and with prev/next. */
  protected mergeRange(start: number, end: number): void {
    let k = Math.max(0, this.findVmaIndex(start) - 1);
    let last = Math.min(this.list.length - 1, this.findVmaIndex(end));
    while (k < last) {
      const a = at(this.list, k);
      const b = at(this.list, k + 1);
      if (canMerge(a, b)) {
        this.list.splice(k, 2, makeVma(a.start, b.end, a.flags, a.pgoff, a.file, a.shmemId));
        last--;
      } else {
        k++;
      }
    }
  }

  /** mlock_future_ok() */
  protected mlockFutureOk(vmFlags: number, bytes: number): boolean {
    if (!(vmFlags & VM_LOCKED)) return true;
    return this.lockedVm + bytes <= this.memlockRlimit;
  }

  // ----- get_unmapped_area --------------------------------------------------------------------

  /** mm/vma.c unmapped_area_topdown: highest gap in [low, high) that fits len. */
  protected unmappedAreaTopdown(len: number, low: number, high: number): number {
    if (high - low < len) return -ENOMEM;
    // Gaps are [prev.end, vm_start_gap(next)); walk down from the first VMA at or above high.
    let i = this.findVmaIndex(high);
    for (;;) {
      const next = this.list[i];
      const prev = i > 0 ? this.list[i - 1] : undefined;
      const gapEnd = Math.min(next ? vmStartGap(next) : TWO64, high);
      const gapStart = Math.max(prev ? prev.end : 0, low);
      if (gapEnd >= gapStart && gapEnd - gapStart >= len) return gapEnd - len;
      if (prev === undefined || prev.end <= low) return -ENOMEM;
      i--;
    }
  }

  /** mm/vma.c unmapped_area (bottom-up): lowest gap in [low, high) that fits len. */
  protected unmappedArea(len: number, low: number, high: number): number {
    if (high - low < len) return -ENOMEM;
    let i = this.findVmaIndex(low);
    for (;;) {
      const next = this.list[i];
      const prev = i > 0 ? this.list[i - 1] : undefined;
      const gapStart = Math.max(prev ? prev.end : 0, low);
      const gapEnd = Math.min(next ? vmStartGap(next) : TWO64, high);
      if (gapStart + len > high) return -ENOMEM;
      if (gapEnd >= gapStart && gapEnd - gapStart >= len) return gapStart;
      if (next === undefined) return -ENOMEM;
      i++;
    }
  }

  /** Is [addr, addr+len) free, counting a stack guard gap below the next VMA? (hint check) */
  protected hintFree(addr: number, len: number): boolean {
    const vma = this.list[this.findVmaIndex(addr)];
    return vma === undefined || addr + len <= vmStartGap(vma);
  }

  /** arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area (bottom-up, legacy layout and MAP_32BIT). */
  protected archGetUnmappedArea(addr: number, len: number, flags: number): number {
    if (flags & MAP_FIXED) return addr;
    const begin = flags & MAP_32BIT ? MAP_32BIT_BEGIN : this.mmapLegacyBase;
    const end = flags & MAP_32BIT ? MAP_32BIT_END : TASK_SIZE;
    if (len > end) return -ENOMEM;
    if (addr) {
      addr = pageAlign(addr);
      // mmap_address_hint_valid(): TASK_SIZE - len >= addr
      if (TASK_SIZE - len >= addr && end - len >= addr && this.hintFree(addr, len)) return addr;
    }
    return this.unmappedArea(len, Math.max(begin, this.mmapMinAddr), end);
  }

  /** arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area_topdown */
  protected archGetUnmappedAreaTopdown(addr: number, len: number, flags: number): number {
    // requested length too big for entire address space
    if (len > TASK_SIZE) return -ENOMEM;
    // No address checking. See comment at mmap_address_hint_valid()
    if (flags & MAP_FIXED) return addr;
    // for MAP_32BIT mappings we force the legacy mmap base
    if (flags & MAP_32BIT) return this.archGetUnmappedArea(addr, len, flags);
    if (addr) {
      addr = pageAlignDown(addr);
      if (TASK_SIZE - len >= addr && this.hintFree(addr, len)) return addr;
    }
    // info.low_limit = PAGE_SIZE (raised to mmap_min_addr by vm_unmapped_area), high_limit = mmap_base
    const r = this.unmappedAreaTopdown(len, Math.max(PAGE_SIZE, this.mmapMinAddr), this.mmapBase);
    if (!isErr(r)) return r;
    // A failed mmap() very likely causes application failure, so fall back to the bottom-up
    // function here. This scenario can happen with large stack limits and large mmap() allocations.
    return this.archGetUnmappedArea(addr, len, flags);
  }

  /** mm/huge_memory.c __thp_get_unmapped_area (+ the fallback of thp_get_unmapped_area_vmflags). */
  protected thpGetUnmappedArea(addr: number, len: number, pgoff: number, flags: number): number {
    const plain = (): number => this.archGetUnmappedAreaTopdown(addr, len, flags);
    const pmdPages = PMD_SIZE / PAGE_SIZE;
    // off_end = off + len; off_align = round_up(off, size), computed in pages to stay exact
    const offEnd = pgoff + len / PAGE_SIZE;
    const offAlign = Math.ceil(pgoff / pmdPages) * pmdPages;
    if (offEnd <= offAlign || offEnd - offAlign < pmdPages) return plain();
    const lenPad = len + PMD_SIZE;
    const ret = this.archGetUnmappedAreaTopdown(addr, lenPad, flags);
    // The failure might be due to length padding. The caller will retry without the padding.
    if (isErr(ret)) return plain();
    // Do not try to align to THP boundary if allocation at the address hint succeeds.
    if (ret === addr) return addr;
    const offSub = mod(mod(pgoff, pmdPages) * PAGE_SIZE - mod(ret, PMD_SIZE), PMD_SIZE);
    // MMF_TOPDOWN
    if (offSub === 0) return ret + PMD_SIZE;
    return ret + offSub;
  }

  /**
   * sparc64 arch_get_unmapped_area_topdown's colour rule for a shared mapping (SHMLBA = shmColour):
   * a MAP_FIXED address must have the colour of pgoff; a hint is moved up to it (COLOR_ALIGN); the
   * search asks vm_unmapped_area for align_mask = shmColour - PAGE_SIZE, align_offset = pgoff << 12.
   */
  protected colouredUnmappedArea(addr: number, len: number, pgoff: number, flags: number): number {
    const span = this.shmColour;
    const off = mod(pgoff * PAGE_SIZE, span);
    if (flags & MAP_FIXED) return mod(addr - off, span) === 0 ? addr : -EINVAL;
    if (addr) {
      addr = Math.ceil(addr / span) * span + off; // COLOR_ALIGN(addr, pgoff)
      if (TASK_SIZE - len >= addr && this.hintFree(addr, len)) return addr;
    }
    const pad = len + span - PAGE_SIZE;
    const top = this.unmappedAreaTopdown(pad, Math.max(PAGE_SIZE, this.mmapMinAddr), this.mmapBase);
    if (!isErr(top)) {
      const a = top + pad - len; // the highest fit in the gap, moved down to the colour
      return a - mod(a - off, span);
    }
    const bottom = this.unmappedArea(pad, Math.max(this.mmapLegacyBase, this.mmapMinAddr), TASK_SIZE);
    return isErr(bottom) ? bottom : bottom + mod(off - bottom, span);
  }

  /** mm/mmap.c __get_unmapped_area */
  protected getUnmappedArea(target: MapTarget, addr: number, len: number, pgoff: number, flags: number): number {
    // Careful about overflows..
    if (len > TASK_SIZE) return -ENOMEM;
    let a: number;
    const shared = (flags & MAP_SHARED) !== 0;
    if (shared && this.shmColour === 0) this.onUncolouredShared?.();
    if (shared && this.shmColour > 0) {
      a = this.colouredUnmappedArea(addr, len, pgoff, flags);
    } else if (target.file) {
      // Regular files on Linux's disk filesystems (ext4, xfs) use thp_get_unmapped_area.
      a = this.thpAlign
        ? this.thpGetUnmappedArea(addr, len, pgoff, flags)
        : this.archGetUnmappedAreaTopdown(addr, len, flags);
    } else if (target.shmem) {
      // shmem_get_unmapped_area with shmem_enabled=never (the default): no THP alignment.
      a = this.archGetUnmappedAreaTopdown(addr, len, flags);
    } else if (this.thpAlign && !addr && len % PMD_SIZE === 0) {
      // Ensures that larger anonymous mappings are THP aligned (pgoff is 0 for anonymous memory).
      a = this.thpGetUnmappedArea(0, len, 0, flags);
    } else {
      a = this.archGetUnmappedAreaTopdown(addr, len, flags);
    }
    if (isErr(a)) return a;
    if (a > TASK_SIZE - len) return -ENOMEM;
    if (offsetInPage(a)) return -EINVAL;
    // security_mmap_addr(): cap_mmap_addr for a process without CAP_SYS_RAWIO
    if (a < this.mmapMinAddr) return -EPERM;
    return a;
  }
}
