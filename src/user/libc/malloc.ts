// glibc's malloc over a UserContext, shaped so the kernel sees glibc's syscall pattern: a brk heap
// for small blocks (grown by brk with a 128 KiB top pad, trimmed by brk when the top chunk exceeds
// the trim threshold), one mmap(MAP_PRIVATE|MAP_ANONYMOUS) per block of 128 KiB or more, realloc of
// an mmapped block through mremap(MREMAP_MAYMOVE) (glibc's mremap_chunk), free of an mmapped block
// through munmap.
//
// Design (see also the README-style notes in each section):
// - Arenas: ONE arena (glibc's main_arena), shared by every thread of the process and protected by a
//   spinlock word in emulated memory -- glibc's behaviour with the tunable glibc.malloc.arena_max=1.
//   A block freed by another thread is simply returned to the shared arena.
// - Everything the allocator knows lives in emulated memory: the arena state (lock, top, heap bounds,
//   bin heads, binmap) in one anonymous page mmapped at init ("libc .data"), and glibc-format chunk
//   headers (prev_size, size|PREV_INUSE|IS_MMAPPED) and free-list links inside the heap. A JS `Libc`
//   object is a per-thread handle holding only immutable facts (the state address) and scratch buffers;
//   other threads get theirs with `Libc.attach(u, stateVa)`.
// - No tcache and no fastbins: every heap free coalesces with its neighbours (glibc with
//   tcache_count=0 and mxfast=0). Free chunks are kept in 64 exact small bins and glibc's large-bin
//   size classes (best fit within a bin). The mmap threshold is fixed (as after mallopt(M_MMAP_THRESHOLD)),
//   not glibc's dynamic one, so every block >= 128 KiB is mmapped.
// - The lock is taken with cas32(0 -> tid) and released with store32(0) after the critical section's
//   writes; waiters spin (test-and-test-and-set) with a bounded busy loop: after `spinLimitMs` the thread
//   aborts with SIGABRT as glibc does on a corrupted heap. Syscalls for mmapped chunks
//   (mmap/mremap/munmap) run outside the lock; brk runs inside it (libc owns the program break).
// - Heap corruption is detected the way glibc detects it (double free, corrupted linked list, invalid
//   sizes) and kills the thread with SIGABRT via a UserSignal.
// - Callers hold nothing: malloc, calloc, free, realloc and checkHeap take the arena lock themselves (a
//   thread that finds its own tid in it aborts). It is a user-space lock; no kernel lock is involved.
import {
  CLOCK_MONOTONIC,
  ENOMEM,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  pageAlignUp,
} from '../../uapi/abi.ts';
import { UserSignal } from '../../uapi/program.ts';
import { LibcBase, SIGABRT } from './base.ts';

/** glibc DEFAULT_MMAP_THRESHOLD_MIN: chunks this big or bigger get their own mmap. */
export const M_MMAP_THRESHOLD = 128 * 1024;
/** glibc DEFAULT_TRIM_THRESHOLD: the brk heap is trimmed when its top chunk reaches this size. */
export const M_TRIM_THRESHOLD = 128 * 1024;
/** glibc DEFAULT_TOP_PAD: extra bytes requested from brk each time the heap grows. */
export const M_TOP_PAD = 128 * 1024;

export const SIZE_SZ = 8;
export const MALLOC_ALIGNMENT = 16;
export const MINSIZE = 32;
export const PREV_INUSE = 1;
export const IS_MMAPPED = 2;
export const HDR = 2 * SIZE_SZ; // chunk header: prev_size, size
export const MAX_REQUEST = 2 ** 46;

// ---- arena state (malloc_state + mp_), one anonymous page --------------------------------------
export const A_LOCK = 0; //           u32 spinlock: 0 free, else the owner's tid
export const A_MAGIC = 4; //          u32
export const A_HEAP_BASE = 8; //      u64 first chunk of the brk heap (0: heap not created yet)
export const A_TOP = 16; //           u64 top chunk
export const A_HEAP_END = 24; //      u64 end of the heap == program break set by malloc
export const A_SYSTEM_MEM = 32; //    u64 bytes obtained with brk
export const A_N_MMAPS = 40; //       u32 (atomic) live mmapped chunks
export const A_MMAPPED_PAGES = 44; // u32 (atomic) pages in mmapped chunks
export const A_CONTENDED = 48; //     u32 (atomic) lock acquisitions that had to spin
export const A_BRK_FAILS = 52; //     u32 brk failures (fell back to mmap)
export const A_BINMAP = 64; //        4 x u32
export const A_BINS = 128; //         NBINS x u64: head chunk of each bin's list (0: empty)
export const NBINS = 128;
export const ARENA_SIZE = A_BINS + NBINS * 8;
export const ARENA_MAGIC = 0x4d414c43; // 'MALC'

// free chunk layout: [p] prev_size, [p+8] size|flags, [p+16] fd, [p+24] bk; footer = next chunk's prev_size
export const FD = 16;
export const BK = 24;

export const LIST_GUARD = 50_000_000;

export const chunksize = (h: number): number => h - (h % 8);
export const prevInuse = (h: number): boolean => h % 2 === 1;
export const isMmapped = (h: number): boolean => ((h % 8) & IS_MMAPPED) !== 0;
export const align16 = (n: number): number => Math.ceil(n / MALLOC_ALIGNMENT) * MALLOC_ALIGNMENT;

/** glibc request2size: the chunk size serving a request of n bytes. */
export function request2size(n: number): number {
  return n + SIZE_SZ + (MALLOC_ALIGNMENT - 1) < MINSIZE ? MINSIZE : align16(n + SIZE_SZ);
}

export interface MallocStats {
  heapBase: number;
  heapEnd: number;
  top: number;
  topSize: number;
  systemMem: number;
  nMmaps: number;
  mmappedBytes: number;
  contended: number;
  brkFailures: number;
}

/** Bin of a free chunk of size s: 64 exact small bins (16-byte steps), then glibc's largebin_index_64. */
export function binIndex(s: number): number {
  if (s < 1024) return s / 16;
  let q = Math.floor(s / 64);
  if (q <= 48) return 48 + q;
  q = Math.floor(s / 512);
  if (q <= 20) return 91 + q;
  q = Math.floor(s / 4096);
  if (q <= 10) return 110 + q;
  q = Math.floor(s / 32768);
  if (q <= 4) return 119 + q;
  q = Math.floor(s / 262144);
  if (q <= 2) return 124 + q;
  return 126;
}

/** The arena. realloc copies with string.h's memcpy, which the next part (string.ts) supplies. */
export abstract class Malloc extends LibcBase {
  abstract memcpy(dst: number, src: number, n: number): number;

  // ================================================================================================
  // malloc
  // ================================================================================================

  protected abort(what: string, addr = 0): never {
    throw new UserSignal(SIGABRT, addr, what);
  }

  protected lock(): void {
    const va = this.stateVa + A_LOCK;
    const m = this.mmu;
    if (m.cas32(va, 0, this.owner) === 0) return;
    m.xadd32(this.stateVa + A_CONTENDED, 1);
    const start = this.sys.clock_gettime(CLOCK_MONOTONIC);
    let spins = 0;
    for (;;) {
      const cur = m.load32(va);
      if (cur === 0) {
        if (m.cas32(va, 0, this.owner) === 0) return;
      } else if (cur === this.owner) {
        this.abort(`malloc(): arena lock already held by this thread (tid ${this.owner})`, va);
      }
      if (++spins % 1024 === 0 && this.sys.clock_gettime(CLOCK_MONOTONIC) - start > this.spinLimitMs) {
        this.abort(`malloc(): arena lock held by tid ${cur} for more than ${this.spinLimitMs} ms`, va);
      }
    }
  }

  protected unlock(): void {
    this.mmu.store32(this.stateVa + A_LOCK, 0);
  }

  protected setBinBit(idx: number, on: boolean): void {
    const w = this.stateVa + A_BINMAP + (idx >> 5) * 4;
    const v = this.mmu.load32(w);
    const bit = (1 << (idx & 31)) >>> 0;
    const nv = on ? (v | bit) >>> 0 : (v & ~bit) >>> 0;
    if (nv !== v) this.mmu.store32(w, nv);
  }

  /** First non-empty bin with index >= from, or -1. */
  protected nextBin(from: number): number {
    for (let w = from >> 5; w < NBINS / 32; w++) {
      let v = this.mmu.load32(this.stateVa + A_BINMAP + w * 4);
      if (w === from >> 5) v = (v & (0xffffffff << (from & 31))) >>> 0;
      if (v !== 0) return w * 32 + (31 - Math.clz32(v & -v));
    }
    return -1;
  }

  protected binInsert(p: number, size: number): void {
    const m = this.mmu;
    const idx = binIndex(size);
    const bin = this.stateVa + A_BINS + idx * 8;
    const head = m.load64(bin);
    m.store64(p + FD, head);
    m.store64(p + BK, 0);
    if (head !== 0) m.store64(head + BK, p);
    m.store64(bin, p);
    this.setBinBit(idx, true);
  }

  protected unlink(p: number, size: number): void {
    const m = this.mmu;
    const fd = m.load64(p + FD);
    const bk = m.load64(p + BK);
    if (fd !== 0 && m.load64(fd + BK) !== p) this.abort('corrupted double-linked list', p);
    if (bk !== 0) {
      if (m.load64(bk + FD) !== p) this.abort('corrupted double-linked list', p);
      m.store64(bk + FD, fd);
    } else {
      const idx = binIndex(size);
      const bin = this.stateVa + A_BINS + idx * 8;
      if (m.load64(bin) !== p) this.abort('corrupted double-linked list (bin head)', p);
      m.store64(bin, fd);
      if (fd === 0) this.setBinBit(idx, false);
    }
    if (fd !== 0) m.store64(fd + BK, bk);
  }

  /** Grows the brk heap so that top has at least `need` bytes. Under the lock. */
  protected growHeap(need: number): boolean {
    const m = this.mmu;
    const st = this.stateVa;
    let base = m.load64(st + A_HEAP_BASE);
    let end: number;
    let topSize: number;
    let topPrev = PREV_INUSE;
    if (base === 0) {
      const cur = this.sys.brk(0);
      if (cur <= 0) return false;
      base = align16(cur);
      end = base;
      topSize = 0;
    } else {
      end = m.load64(st + A_HEAP_END);
      const top = m.load64(st + A_TOP);
      const th = m.load64(top + 8);
      topSize = chunksize(th);
      topPrev = th % 2;
    }
    const want = pageAlignUp(end + (need - topSize) + M_TOP_PAD);
    const got = this.sys.brk(want);
    if (got !== want) {
      m.store32(st + A_BRK_FAILS, m.load32(st + A_BRK_FAILS) + 1);
      return false;
    }
    if (m.load64(st + A_HEAP_BASE) === 0) {
      m.store64(st + A_HEAP_BASE, base);
      m.store64(st + A_TOP, base);
    }
    const top = m.load64(st + A_TOP);
    m.store64(top + 8, want - top + topPrev);
    m.store64(st + A_HEAP_END, want);
    m.store64(st + A_SYSTEM_MEM, m.load64(st + A_SYSTEM_MEM) + (want - end));
    return true;
  }

  /** Shrinks the heap when the top chunk is big (glibc systrim). Under the lock. */
  protected trim(): void {
    const m = this.mmu;
    const st = this.stateVa;
    const top = m.load64(st + A_TOP);
    const th = m.load64(top + 8);
    const topSize = chunksize(th);
    const end = m.load64(st + A_HEAP_END);
    const extra = Math.floor((topSize - M_TOP_PAD - MINSIZE - 1) / PAGE_SIZE) * PAGE_SIZE;
    if (extra <= 0 || end % PAGE_SIZE !== 0) return;
    const want = end - extra;
    const got = this.sys.brk(want);
    if (got !== want) return;
    m.store64(top + 8, topSize - extra + (th % 2));
    m.store64(st + A_HEAP_END, want);
    m.store64(st + A_SYSTEM_MEM, m.load64(st + A_SYSTEM_MEM) - extra);
  }

  /** Takes free chunk p (size `size`) for a request of nb bytes; splits off a remainder. Under the lock. */
  protected take(p: number, size: number, nb: number): number {
    const m = this.mmu;
    this.unlink(p, size);
    const rem = size - nb;
    if (rem >= MINSIZE) {
      const r = p + nb;
      m.store64(p + 8, nb + PREV_INUSE); // p's predecessor is in use (free neighbours are coalesced)
      m.store64(r + 8, rem + PREV_INUSE);
      m.store64(r + rem, rem); // footer
      this.binInsert(r, rem);
    } else {
      const next = p + size;
      const nh = m.load64(next + 8);
      if (!prevInuse(nh)) m.store64(next + 8, nh + PREV_INUSE);
    }
    return p;
  }

  /** glibc _int_malloc for heap chunks: bins, then top, then brk. Returns a chunk or 0. Under the lock. */
  protected intMalloc(nb: number): number {
    const m = this.mmu;
    const st = this.stateVa;
    let idx = binIndex(nb);
    if (nb < 1024) {
      const p = m.load64(st + A_BINS + idx * 8);
      if (p !== 0) {
        if (chunksize(m.load64(p + 8)) !== nb) this.abort('malloc(): memory corruption (small bin)', p);
        return this.take(p, nb, nb);
      }
    } else {
      let best = 0;
      let bestSize = Infinity;
      let guard = 0;
      for (let p = m.load64(st + A_BINS + idx * 8); p !== 0; p = m.load64(p + FD)) {
        const s = chunksize(m.load64(p + 8));
        if (s >= nb && s < bestSize) {
          best = p;
          bestSize = s;
          if (s === nb) break;
        }
        if (++guard > LIST_GUARD) this.abort('malloc(): corrupted free list (cycle)', p);
      }
      if (best !== 0) return this.take(best, bestSize, nb);
    }
    idx++;
    if (idx < NBINS) {
      const b = this.nextBin(idx);
      if (b >= 0) {
        const p = m.load64(st + A_BINS + b * 8);
        if (p === 0) this.abort('malloc(): binmap says a bin is full but it is empty', st + A_BINS + b * 8);
        const s = chunksize(m.load64(p + 8));
        if (s < nb) this.abort('malloc(): corrupted free chunk size in a larger bin', p);
        return this.take(p, s, nb);
      }
    }
    // top
    for (let attempt = 0; attempt < 2; attempt++) {
      if (m.load64(st + A_HEAP_BASE) !== 0) {
        const top = m.load64(st + A_TOP);
        const th = m.load64(top + 8);
        const ts = chunksize(th);
        if (top + ts !== m.load64(st + A_HEAP_END)) this.abort('malloc(): corrupted top size', top);
        if (ts >= nb + MINSIZE) {
          m.store64(top + 8, nb + (th % 2));
          m.store64(top + nb + 8, ts - nb + PREV_INUSE);
          m.store64(st + A_TOP, top + nb);
          return top;
        }
        if (attempt === 0 && !this.growHeap(nb + MINSIZE)) return 0;
      } else if (attempt === 0 && !this.growHeap(nb + MINSIZE)) {
        return 0;
      }
    }
    return 0;
  }

  /** glibc sysmalloc's mmap branch: a chunk of its own. Returns the chunk or 0. No lock needed. */
  protected mmapChunk(nb: number): number {
    const size = pageAlignUp(nb + SIZE_SZ);
    const mm = this.sys.mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mm < 0) {
      this.errno = -mm;
      return 0;
    }
    this.mmu.store64(mm, 0); // prev_size = offset of the chunk in its mapping
    this.mmu.store64(mm + 8, size + IS_MMAPPED);
    this.mmu.xadd32(this.stateVa + A_N_MMAPS, 1);
    this.mmu.xadd32(this.stateVa + A_MMAPPED_PAGES, size / PAGE_SIZE);
    return mm;
  }

  protected munmapChunk(p: number, h: number): void {
    const offset = this.mmu.load64(p);
    const size = chunksize(h);
    const block = p - offset;
    const total = offset + size;
    if (block % PAGE_SIZE !== 0 || total % PAGE_SIZE !== 0) this.abort('munmap_chunk(): invalid pointer', p + HDR);
    this.mmu.xadd32(this.stateVa + A_N_MMAPS, -1);
    this.mmu.xadd32(this.stateVa + A_MMAPPED_PAGES, -(total / PAGE_SIZE));
    const r = this.sys.munmap(block, total);
    if (r < 0) this.abort(`munmap_chunk(): munmap failed (${r})`, p + HDR);
  }

  /** glibc mremap_chunk: returns the (possibly moved) chunk, or 0 if mremap failed. No lock needed. */
  protected mremapChunk(p: number, h: number, nb: number): number {
    const offset = this.mmu.load64(p);
    const size = chunksize(h);
    const total = offset + size;
    const newSize = pageAlignUp(nb + offset + SIZE_SZ);
    if (total === newSize) return p;
    const cp = this.sys.mremap(p - offset, total, newSize, MREMAP_MAYMOVE);
    if (cp < 0) return 0;
    const np = cp + offset;
    this.mmu.store64(np + 8, newSize - offset + IS_MMAPPED);
    this.mmu.xadd32(this.stateVa + A_MMAPPED_PAGES, (newSize - total) / PAGE_SIZE);
    return np;
  }

  protected checkedRequest(n: number): number {
    if (!Number.isSafeInteger(n) || n < 0 || n >= MAX_REQUEST) {
      this.errno = ENOMEM;
      return -1;
    }
    return request2size(n);
  }

  /** malloc(3): a 16-byte aligned block of at least n bytes, or 0 (errno ENOMEM). */
  malloc(n: number): number {
    const nb = this.checkedRequest(n);
    if (nb < 0) return 0;
    if (nb >= M_MMAP_THRESHOLD) {
      const p = this.mmapChunk(nb);
      return p === 0 ? 0 : p + HDR;
    }
    this.lock();
    let p: number;
    try {
      p = this.intMalloc(nb);
    } finally {
      this.unlock();
    }
    if (p === 0) p = this.mmapChunk(nb); // brk failed: glibc falls back to mmap
    if (p === 0) {
      this.errno = ENOMEM;
      return 0;
    }
    return p + HDR;
  }

  /** calloc(3): zeroed; like glibc, skips clearing memory that is fresh from mmap or brk. */
  calloc(n: number, size: number): number {
    const bytes = n * size;
    const nb = this.checkedRequest(bytes);
    if (nb < 0) return 0;
    if (nb >= M_MMAP_THRESHOLD) {
      const p = this.mmapChunk(nb);
      return p === 0 ? 0 : p + HDR; // mmapped memory is zero already
    }
    const m = this.mmu;
    const st = this.stateVa;
    this.lock();
    let p: number;
    let oldTop = 0;
    let oldTopSize = 0;
    try {
      if (m.load64(st + A_HEAP_BASE) !== 0) {
        oldTop = m.load64(st + A_TOP);
        oldTopSize = chunksize(m.load64(oldTop + 8));
      }
      p = this.intMalloc(nb);
    } finally {
      this.unlock();
    }
    if (p === 0) {
      p = this.mmapChunk(nb);
      if (p === 0) {
        this.errno = ENOMEM;
        return 0;
      }
      return p + HDR;
    }
    let csz = chunksize(m.load64(p + 8));
    const freshHeap = oldTop === 0 && m.load64(st + A_HEAP_BASE) === p;
    if (freshHeap)
      csz = 0; // the whole heap was just obtained from brk
    else if (p === oldTop && csz > oldTopSize) csz = oldTopSize; // clear only non-fresh memory
    const clear = csz - SIZE_SZ;
    if (clear > 0) m.fill(p + HDR, 0, Math.min(clear, bytes));
    return p + HDR;
  }

  /** free(3). Aborts (SIGABRT) on the corruptions glibc detects. */
  free(mem: number): void {
    if (mem === 0) return;
    if (mem % MALLOC_ALIGNMENT !== 0) this.abort('free(): invalid pointer', mem);
    const p = mem - HDR;
    const h = this.mmu.load64(p + 8);
    if (isMmapped(h)) {
      this.munmapChunk(p, h);
      return;
    }
    this.lock();
    try {
      this.intFree(p);
    } finally {
      this.unlock();
    }
  }

  /** glibc _int_free for a heap chunk, with coalescing and trimming. Under the lock. */
  protected intFree(p0: number): void {
    const m = this.mmu;
    const st = this.stateVa;
    let p = p0;
    const h = m.load64(p + 8);
    let size = chunksize(h);
    const base = m.load64(st + A_HEAP_BASE);
    const top = m.load64(st + A_TOP);
    if (base === 0 || p < base || p + size > top || size < MINSIZE || size % MALLOC_ALIGNMENT !== 0) {
      this.abort('free(): invalid pointer or size', p + HDR);
    }
    const next = p + size;
    const nh = m.load64(next + 8);
    if (!prevInuse(nh)) this.abort('double free or corruption (!prev)', p + HDR);
    if (!prevInuse(h)) {
      const ps = m.load64(p);
      const prev = p - ps;
      if (ps < MINSIZE || ps % MALLOC_ALIGNMENT !== 0 || prev < base || chunksize(m.load64(prev + 8)) !== ps) {
        this.abort('corrupted size vs. prev_size while consolidating', p + HDR);
      }
      this.unlink(prev, ps);
      p = prev;
      size += ps;
    }
    if (next === top) {
      size += chunksize(nh);
      m.store64(p + 8, size + PREV_INUSE);
      m.store64(st + A_TOP, p);
      if (size >= M_TRIM_THRESHOLD) this.trim();
      return;
    }
    const ns = chunksize(nh);
    if (ns < MINSIZE || next + ns > top) this.abort('free(): invalid next size (normal)', p0 + HDR);
    const nextInuse = prevInuse(m.load64(next + ns + 8));
    if (!nextInuse) {
      this.unlink(next, ns);
      size += ns;
    } else {
      m.store64(next + 8, nh - PREV_INUSE);
    }
    m.store64(p + 8, size + PREV_INUSE);
    m.store64(p + size, size);
    this.binInsert(p, size);
  }

  /**
   * realloc(3). Mmapped chunks are resized with mremap(MREMAP_MAYMOVE) (glibc mremap_chunk); heap
   * chunks are resized in place when possible, else moved (malloc + memcpy + free) -- a heap block
   * that grows past the mmap threshold always moves to an mmapped chunk.
   */
  realloc(mem: number, n: number): number {
    if (mem === 0) return this.malloc(n);
    if (n === 0) {
      this.free(mem);
      return 0;
    }
    const nb = this.checkedRequest(n);
    if (nb < 0) return 0;
    const m = this.mmu;
    const p = mem - HDR;
    if (mem % MALLOC_ALIGNMENT !== 0) this.abort('realloc(): invalid pointer', mem);
    const h = m.load64(p + 8);
    const oldSize = chunksize(h);
    if (isMmapped(h)) {
      const np = this.mremapChunk(p, h, nb);
      if (np !== 0) return np + HDR;
      if (oldSize - SIZE_SZ >= nb) return mem;
      const nm = this.malloc(n);
      if (nm === 0) return 0;
      this.memcpy(nm, mem, Math.min(oldSize - HDR, n));
      this.munmapChunk(p, h);
      return nm;
    }
    if (!(nb >= M_MMAP_THRESHOLD && nb > oldSize)) {
      this.lock();
      try {
        if (this.reallocInPlace(p, nb)) return mem;
      } finally {
        this.unlock();
      }
    }
    const nm = this.malloc(n);
    if (nm === 0) return 0;
    this.memcpy(nm, mem, Math.min(oldSize - SIZE_SZ, n));
    this.free(mem);
    return nm;
  }

  /**
   * Resizes heap chunk p in place if possible. Under the lock. The header is re-read here: another
   * thread may have changed its PREV_INUSE bit (by freeing or allocating the previous chunk) since the
   * caller looked at it without the lock.
   */
  protected reallocInPlace(p: number, nb: number): boolean {
    const m = this.mmu;
    const h = m.load64(p + 8);
    const st = this.stateVa;
    const top = m.load64(st + A_TOP);
    const base = m.load64(st + A_HEAP_BASE);
    let size = chunksize(h);
    if (base === 0 || p < base || p + size > top || size < MINSIZE) this.abort('realloc(): invalid old size', p + HDR);
    const next = p + size;
    const nh = m.load64(next + 8);
    if (!prevInuse(nh)) this.abort('realloc(): invalid pointer (chunk is free)', p + HDR);
    const pbit = h % 2;
    if (size < nb) {
      if (next === top) {
        const ts = chunksize(nh);
        if (size + ts < nb + MINSIZE) return false;
        m.store64(p + 8, nb + pbit);
        m.store64(p + nb + 8, size + ts - nb + PREV_INUSE);
        m.store64(st + A_TOP, p + nb);
        return true;
      }
      const ns = chunksize(nh);
      if (ns < MINSIZE || next + ns > top) this.abort('realloc(): invalid next size', p + HDR);
      if (prevInuse(m.load64(next + ns + 8)) || size + ns < nb) return false;
      this.unlink(next, ns);
      size += ns;
      m.store64(p + 8, size + pbit);
      const after = p + size;
      m.store64(after + 8, m.load64(after + 8) + PREV_INUSE);
    }
    // split off the tail if it is big enough to be a chunk
    const rem = size - nb;
    if (rem >= MINSIZE) {
      const r = p + nb;
      m.store64(p + 8, nb + pbit);
      m.store64(r + 8, rem + PREV_INUSE);
      this.intFree(r);
    }
    return true;
  }

  /** malloc_usable_size(3). */
  mallocUsableSize(mem: number): number {
    if (mem === 0) return 0;
    const h = this.mmu.load64(mem - HDR + 8);
    return isMmapped(h) ? chunksize(h) - HDR : chunksize(h) - SIZE_SZ;
  }

  /** Counters of the arena (read without the lock: a snapshot). */
  mallocStats(): MallocStats {
    const m = this.mmu;
    const st = this.stateVa;
    const base = m.load64(st + A_HEAP_BASE);
    const top = base === 0 ? 0 : m.load64(st + A_TOP);
    return {
      heapBase: base,
      heapEnd: base === 0 ? 0 : m.load64(st + A_HEAP_END),
      top,
      topSize: top === 0 ? 0 : chunksize(m.load64(top + 8)),
      systemMem: m.load64(st + A_SYSTEM_MEM),
      nMmaps: m.load32(st + A_N_MMAPS) | 0,
      mmappedBytes: (m.load32(st + A_MMAPPED_PAGES) | 0) * PAGE_SIZE,
      contended: m.load32(st + A_CONTENDED),
      brkFailures: m.load32(st + A_BRK_FAILS),
    };
  }

  /**
   * Walks the whole heap under the lock and returns the inconsistencies found (empty when the heap is
   * sound): chunk sizes, PREV_INUSE vs. free status, footers, adjacent free chunks, bin membership.
   */
  checkHeap(): string[] {
    const errs: string[] = [];
    const m = this.mmu;
    const st = this.stateVa;
    this.lock();
    try {
      const base = m.load64(st + A_HEAP_BASE);
      if (base === 0) return errs;
      const top = m.load64(st + A_TOP);
      const end = m.load64(st + A_HEAP_END);
      const inBins = new Set<number>();
      for (let i = 0; i < NBINS; i++) {
        let prev = 0;
        let n = 0;
        for (let p = m.load64(st + A_BINS + i * 8); p !== 0; p = m.load64(p + FD)) {
          const s = chunksize(m.load64(p + 8));
          if (binIndex(s) !== i) errs.push(`chunk 0x${p.toString(16)} of size ${s} in bin ${i}`);
          if (m.load64(p + BK) !== prev) errs.push(`bk of 0x${p.toString(16)} is wrong`);
          if (inBins.has(p)) {
            errs.push(`chunk 0x${p.toString(16)} twice in bins`);
            break;
          }
          inBins.add(p);
          prev = p;
          if (++n > 10_000_000) break;
        }
        const bit = ((m.load32(st + A_BINMAP + (i >> 5) * 4) >>> (i & 31)) & 1) === 1;
        if (bit !== n > 0) errs.push(`binmap bit of bin ${i} is ${bit} but the bin has ${n} chunks`);
      }
      let p = base;
      let prevFree = false;
      let seenFree = 0;
      while (p < top) {
        const h = m.load64(p + 8);
        const s = chunksize(h);
        if (s < MINSIZE || s % MALLOC_ALIGNMENT !== 0 || p + s > top) {
          errs.push(`bad chunk size ${s} at 0x${p.toString(16)}`);
          return errs;
        }
        if (prevInuse(h) === prevFree) errs.push(`PREV_INUSE of 0x${p.toString(16)} disagrees with its predecessor`);
        const free = !prevInuse(m.load64(p + s + 8));
        if (free) {
          seenFree++;
          if (prevFree) errs.push(`two adjacent free chunks at 0x${p.toString(16)}`);
          if (m.load64(p + s) !== s) errs.push(`footer of free chunk 0x${p.toString(16)} is wrong`);
          if (!inBins.has(p)) errs.push(`free chunk 0x${p.toString(16)} is in no bin`);
        }
        prevFree = free;
        p += s;
      }
      if (p !== top) errs.push(`heap walk ended at 0x${p.toString(16)}, top is 0x${top.toString(16)}`);
      if (top + chunksize(m.load64(top + 8)) !== end) errs.push('top chunk does not end at the heap end');
      if (seenFree !== inBins.size) errs.push(`${inBins.size} chunks in bins but ${seenFree} free chunks in the heap`);
    } finally {
      this.unlock();
    }
    return errs;
  }
}
