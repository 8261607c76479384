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

import {
  EACCES,
  EAGAIN,
  EEXIST,
  EFAULT,
  EINVAL,
  ENOMEM,
  EOVERFLOW,
  EPERM,
  MAP_ANONYMOUS,
  MAP_DENYWRITE,
  MAP_EXECUTABLE,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MAP_TYPE,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
} from '../uapi/abi.ts';
import { hexPad } from '../lib/text.ts';

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
const MAP_HUGE_SHIFT = 26;
const MAP_HUGE_2MB = 21 * 2 ** MAP_HUGE_SHIFT;
const MAP_HUGE_1GB = 30 * 2 ** MAP_HUGE_SHIFT;

export const PROT_SEM = 0x8;
export const PROT_GROWSDOWN = 0x01000000;
export const PROT_GROWSUP = 0x02000000;

/** include/linux/mman.h LEGACY_MAP_MASK: flags MAP_SHARED silently drops, MAP_SHARED_VALIDATE rejects. */
const LEGACY_MAP_MASK =
  MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE | MAP_EXECUTABLE |
  MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK |
  MAP_STACK | MAP_HUGETLB | MAP_32BIT | MAP_ABOVE4G | MAP_HUGE_2MB | MAP_HUGE_1GB;

// VM_* bits (include/linux/mm.h). Bits that carry a Linux name have Linux's value.
export const VM_NONE = 0x0;
export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_GROWSDOWN = 0x100;
export const VM_LOCKED = 0x2000;
export const VM_NORESERVE = 0x200000;
export const VM_WIPEONFORK = 0x2000000;
export const VM_DONTDUMP = 0x4000000;
export const VM_NOHUGEPAGE = 0x40000000;
/** splitkern-only: Linux's VM_DROPPABLE is a high arch bit; here it reuses the x86 VM_PAT slot, never set on user VMAs. */
export const VM_DROPPABLE = 0x01000000;
/** splitkern-only: anonymous memory (Linux tests vma->vm_ops == NULL; here it is a bit, in the VM_MIXEDMAP slot). */
export const VM_ANON = 0x10000000;

const VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
const VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
/** VM_DATA_DEFAULT_FLAGS on x86-64 (no READ_IMPLIES_EXEC): brk VMAs. */
const VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAY_FLAGS;

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
const MAX_LFS_FILESIZE_PAGES = 2 ** 51; // (2^63 - 1) >> PAGE_SHIFT == 2^51 - 1, +1 for the boundary
/** x86 MAP_32BIT window (arch/x86/kernel/sys_x86_64.c find_start_end, without randomisation). */
const MAP_32BIT_BEGIN = 0x40000000;
const MAP_32BIT_END = 0x80000000;

const TWO64 = 2 ** 64;

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
  /** In pages: file offset for file VMAs, shmem offset for shared anonymous, addr >> PAGE_SHIFT at creation for private anonymous. */
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
}

type RemapType = 'noresize' | 'shrink' | 'expand';

/** mm/mremap.c struct vma_remap_struct (the parts that matter here). */
interface VmaRemap {
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
interface MapTarget {
  file?: VmaFile;
  shmem: boolean;
}

// ---------------------------------------------------------------------------------------------
// Helpers (address arithmetic without 32-bit operators)

const isErr = (v: number): boolean => v < 0;
const offsetInPage = (a: number): number => a % PAGE_SIZE;

/** Read a syscall argument as C unsigned long. */
function ulong(x: number, what: string): number {
  if (!Number.isInteger(x)) throw new RangeError(`${what} must be an integer, got ${x}`);
  return x < 0 ? x + TWO64 : x;
}

/** PAGE_ALIGN on an unsigned long: wraps to 0 past 2^64 - PAGE_SIZE. */
function pageAlign(x: number): number {
  const r = Math.ceil(x / PAGE_SIZE) * PAGE_SIZE;
  return r >= TWO64 ? r - TWO64 : r;
}

const pageAlignDown = (a: number): number => a - (a % PAGE_SIZE);

/**
 * PAGE_ALIGN of a syscall argument as it arrived (the signed 64-bit value of the register, exact in
 * a double), computed on the exact unsigned long: 0xfffffffffffff001 (-4095) wraps to 0 as in Linux,
 * where ulong() + pageAlign() would round 2^64 - 4095 first.
 */
function pageAlignArg(x: number, what: string): number {
  if (!Number.isInteger(x)) throw new RangeError(`${what} must be an integer, got ${x}`);
  const u = BigInt.asUintN(64, BigInt(x));
  return Number(BigInt.asUintN(64, (u + BigInt(PAGE_SIZE - 1)) & ~BigInt(PAGE_SIZE - 1)));
}

/** Non-negative a mod m for possibly negative a. */
const mod = (a: number, m: number): number => ((a % m) + m) % m;

const sameFile = (a: VmaFile | undefined, b: VmaFile | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.path === b.path);

const isPrivateAnon = (v: Vma): boolean => (v.flags & VM_ANON) !== 0 && v.shmemId === undefined;

function makeVma(
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

const withRange = (v: Vma, start: number, end: number): Vma =>
  makeVma(start, end, v.flags, v.pgoff + (start - v.start) / PAGE_SIZE, v.file, v.shmemId);

const withFlags = (v: Vma, flags: number): Vma => makeVma(v.start, v.end, flags, v.pgoff, v.file, v.shmemId);

/**
 * is_mergeable_vma + can_vma_merge_{before,after}: same flags and backing object, adjacent, and
 * (for file and shmem VMAs) contiguous pgoff. Private anonymous VMAs merge whatever their pgoff:
 * Linux also requires compatible anon_vmas, which depends on which pages were faulted - state the
 * memory component does not model (see the deviation note in the report).
 */
function canMerge(a: Vma, b: Vma): boolean {
  if (a.end !== b.start || a.flags !== b.flags || !sameFile(a.file, b.file) || a.shmemId !== b.shmemId) return false;
  if (isPrivateAnon(a)) return true;
  return a.pgoff + (a.end - a.start) / PAGE_SIZE === b.pgoff;
}

/** vm_start_gap(): a VM_GROWSDOWN VMA reserves stack_guard_gap below itself. */
function vmStartGap(v: Vma): number {
  if (!(v.flags & VM_GROWSDOWN)) return v.start;
  const s = v.start - STACK_GUARD_GAP;
  return s < 0 ? 0 : s;
}

/** calc_vm_prot_bits */
const calcVmProtBits = (prot: number): number => prot & (PROT_READ | PROT_WRITE | PROT_EXEC);

/** calc_vm_flag_bits (x86-64, THP compiled in) */
function calcVmFlagBits(flags: number): number {
  let vm = 0;
  if (flags & MAP_GROWSDOWN) vm |= VM_GROWSDOWN;
  if (flags & MAP_LOCKED) vm |= VM_LOCKED;
  if (flags & MAP_STACK) vm |= VM_NOHUGEPAGE;
  return vm;
}

// ---------------------------------------------------------------------------------------------

/** lego_mm_struct: the VMAs of one process as the memory component keeps them. */
export class LegoMm {
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

  private readonly list: Vma[] = [];
  private readonly hooks: MmHooks | undefined;
  private nextShmemId = 1;

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
    if (this.stackTop > TASK_SIZE || this.stackTop < INITIAL_STACK_SIZE) throw new RangeError('bad stackTop');
    // setup_arg_pages(): VM_STACK_FLAGS = VM_GROWSDOWN | VM_DATA_DEFAULT_FLAGS (| VM_ACCOUNT)
    const start = this.stackTop - INITIAL_STACK_SIZE;
    this.list.push(
      makeVma(start, this.stackTop, VM_DATA_DEFAULT_FLAGS | VM_GROWSDOWN | VM_ANON, start / PAGE_SIZE, undefined, undefined),
    );
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
  private findVmaIndex(addr: number): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1; // indices, not addresses
      if (this.list[mid]!.end > addr) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The VMA containing addr (Linux vma_lookup, not find_vma). */
  findVma(addr: number): Vma | undefined {
    const v = this.list[this.findVmaIndex(addr)];
    return v !== undefined && v.start <= addr ? v : undefined;
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
          (v.flags & VM_READ ? 'r' : '-') + (v.flags & VM_WRITE ? 'w' : '-') + (v.flags & VM_EXEC ? 'x' : '-') +
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
  private splitAt(addr: number): void {
    const i = this.findVmaIndex(addr);
    const v = this.list[i];
    if (v === undefined || v.start >= addr) return;
    this.list.splice(i, 1, withRange(v, v.start, addr), withRange(v, addr, v.end));
  }

  /** Detach every VMA piece in [start, end); zap their pages unless the pages were moved away. */
  private removeRange(start: number, end: number, zap: boolean): void {
    this.splitAt(start);
    this.splitAt(end);
    const i = this.findVmaIndex(start);
    let j = i;
    while (j < this.list.length && this.list[j]!.start < end) j++;
    const removed = this.list.splice(i, j - i);
    if (zap && this.hooks) for (const v of removed) this.hooks.zapPages(v.start, v.end - v.start);
  }

  private insertVma(v: Vma): void {
    const i = this.findVmaIndex(v.start);
    const next = this.list[i];
    if (next !== undefined && next.start < v.end) throw new Error(`BUG: inserting ${v.start}-${v.end} over a mapping`);
    this.list.splice(i, 0, v);
  }

  /** vma_merge_*: merge the VMAs touching [start, end) with each other and with prev/next. */
  private mergeRange(start: number, end: number): void {
    let k = Math.max(0, this.findVmaIndex(start) - 1);
    let last = Math.min(this.list.length - 1, this.findVmaIndex(end));
    while (k < last) {
      const a = this.list[k]!;
      const b = this.list[k + 1]!;
      if (canMerge(a, b)) {
        this.list.splice(k, 2, makeVma(a.start, b.end, a.flags, a.pgoff, a.file, a.shmemId));
        last--;
      } else {
        k++;
      }
    }
  }

  /** mlock_future_ok() */
  private mlockFutureOk(vmFlags: number, bytes: number): boolean {
    if (!(vmFlags & VM_LOCKED)) return true;
    return this.lockedVm + bytes <= this.memlockRlimit;
  }

  // ----- get_unmapped_area --------------------------------------------------------------------

  /** mm/vma.c unmapped_area_topdown: highest gap in [low, high) that fits len. */
  private unmappedAreaTopdown(len: number, low: number, high: number): number {
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
  private unmappedArea(len: number, low: number, high: number): number {
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
  private hintFree(addr: number, len: number): boolean {
    const vma = this.list[this.findVmaIndex(addr)];
    return vma === undefined || addr + len <= vmStartGap(vma);
  }

  /** arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area (bottom-up, legacy layout and MAP_32BIT). */
  private archGetUnmappedArea(addr: number, len: number, flags: number): number {
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
  private archGetUnmappedAreaTopdown(addr: number, len: number, flags: number): number {
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
  private thpGetUnmappedArea(addr: number, len: number, pgoff: number, flags: number): number {
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

  /** mm/mmap.c __get_unmapped_area */
  private getUnmappedArea(target: MapTarget, addr: number, len: number, pgoff: number, flags: number): number {
    // Careful about overflows..
    if (len > TASK_SIZE) return -ENOMEM;
    let a: number;
    if (target.file) {
      // Regular files on Linux's disk filesystems (ext4, xfs) use thp_get_unmapped_area.
      a = this.thpAlign ? this.thpGetUnmappedArea(addr, len, pgoff, flags) : this.archGetUnmappedAreaTopdown(addr, len, flags);
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

  // ----- munmap -------------------------------------------------------------------------------

  /** mm/vma.c do_vmi_munmap (+ vms_gather_munmap_vmas' map_count check). */
  private doMunmap(start: number, len: number): number {
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
  private doMmap(file: VmaFile | undefined, addr: number, len: number, prot: number, flags: number, pgoff: number): number {
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
  private mmapRegion(file: VmaFile | undefined, addr: number, len: number, vmFlags: number, pgoff: number, shmem: boolean): number {
    const end = addr + len;
    // Find the first overlapping VMA (MAP_FIXED replaces whatever is there).
    const first = this.findVmaIntersection(addr, end);
    if (first && addr > first.start && end < first.end && this.list.length >= this.maxMapCount) return -ENOMEM;
    if (first) this.removeRange(addr, end, true);
    const shmemId = shmem ? this.nextShmemId++ : undefined;
    this.insertVma(makeVma(addr, end, vmFlags, pgoff, file, shmemId));
    this.mergeRange(addr, end);
    return addr;
  }

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
  private doBrkFlags(vma: Vma | undefined, addr: number, len: number, flags: number): number {
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
      if ((newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS) {
        error = -EACCES;
        break;
      }
      const pieceEnd = Math.min(vma.end, end);
      error = this.mprotectFixup(i, nstart, pieceEnd, newflags);
      if (error) break;
      // tmp = vma_iter_end(&vmi): the end of the VMA now holding the piece (merges may extend it)
      const j = this.findVmaIndex(pieceEnd - 1);
      tmp = this.list[j]!.end;
      nstart = tmp;
      i = j + 1;
      vma = this.list[i];
    }
    if (!error && tmp < end) error = -ENOMEM;
    return error;
  }

  /** mm/mprotect.c mprotect_fixup -> vma_modify_flags (merge first, split only if no merge). */
  private mprotectFixup(i: number, start: number, end: number, newflags: number): number {
    const vma = this.list[i]!;
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
    this.list[j] = withFlags(this.list[j]!, newflags);
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
      vma = this.list[i]!;
    }
    if (write) return vma.flags & VM_WRITE ? 'ok' : 'accerr';
    // read, not present: vma_is_accessible()
    return vma.flags & VM_ACCESS_FLAGS ? 'ok' : 'accerr';
  }

  /** mm/mmap.c expand_downwards + acct_stack_growth */
  private expandDownwards(i: number, address: number): boolean {
    const vma = this.list[i]!;
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
  private vrmImpliesNewAddr(vrm: VmaRemap): boolean {
    return (vrm.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) !== 0;
  }

  /** Does this remap ONLY move mappings? (MREMAP_FIXED, old_len == new_len: may span several VMAs) */
  private vrmMoveOnly(vrm: VmaRemap): boolean {
    return (vrm.flags & MREMAP_FIXED) !== 0 && vrm.oldLen === vrm.newLen;
  }

  /** vrm_overlaps() */
  private vrmOverlaps(vrm: VmaRemap): boolean {
    return vrm.addr + vrm.oldLen > vrm.newAddr && vrm.newAddr + vrm.newLen > vrm.addr;
  }

  /** check_mremap_params(): everything decided before looking at a VMA. */
  private checkMremapParams(vrm: VmaRemap): number {
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
  private checkPrepVma(vrm: VmaRemap): number {
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
  private remapMove(vrm: VmaRemap): number {
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
  private mremapTo(vrm: VmaRemap): number {
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
  private shrinkVma(vrm: VmaRemap): number {
    const res = this.doMunmap(vrm.addr + vrm.newLen, vrm.delta);
    if (res) return res;
    vrm.vma = this.findVma(vrm.addr);
    if (!vrm.vma) return -EFAULT;
    return 0;
  }

  /** mremap_at(): resize without a mandated new address. */
  private mremapAt(vrm: VmaRemap): number {
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
  private vmaExpandable(vma: Vma, delta: number): boolean {
    const end = vma.end + delta;
    if (this.findVmaIntersection(vma.end, end)) return false;
    const a = this.getUnmappedArea({ shmem: false }, vma.start, end - vma.start, 0, MAP_FIXED);
    return !isErr(a);
  }

  /** expand_vma(): grow in place if [addr, addr+old_len) ends the VMA and the gap above is free, else move. */
  private expandVma(vrm: VmaRemap): number {
    const vma = this.findVma(vrm.addr)!;
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
  private vrmSetNewAddr(vrm: VmaRemap): number {
    const vma = this.findVma(vrm.addr)!;
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
  private moveVma(vrm: VmaRemap): number {
    // prep_move_vma(): we'd prefer to avoid failure later on in do_munmap: which may split one
    // vma into three before unmapping (measured on 6.18: -ENOMEM from map_count 65527 on).
    if (this.list.length >= this.maxMapCount - 3) return -ENOMEM;
    const vma = this.findVma(vrm.addr)!;
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
