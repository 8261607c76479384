// A small user-space libc over a UserContext, shaped like glibc so the kernel sees glibc's syscall
// pattern (the allocator's design: libc/malloc.ts). One Libc object is one thread's handle; its
// parts live in src/user/libc/, one job each, built on each other in this order:
//   base.ts     the per-thread handle and its scratch buffers
//   malloc.ts   the arena (brk heap + mmapped chunks), glibc chunk format, bins, heap checks
//   string.ts   string.h and qsort
//   printf.ts   printf formatting (pure)
//   stdio.ts    the printf family and file helpers (through the kernel)
//   pthread.ts  pthread_create / pthread_join
// User space: it takes no kernel lock and reaches memory only through the MMU and the kernel only
// through syscalls. Its one lock is the arena lock (A_LOCK, a spinlock word in the arena page,
// cas32(0 -> tid), malloc.ts), which malloc/realloc/free take themselves, so callers hold nothing. A
// Libc handle is used only by the thread it was made for (init in main, attach in the others).
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../uapi/abi.ts';
import { UserSignal, type UserContext } from '../uapi/program.ts';
import { ARENA_MAGIC, ARENA_SIZE, A_MAGIC } from './libc/malloc.ts';
import { Pthread } from './libc/pthread.ts';
import { SIGABRT, type LibcOptions } from './libc/base.ts';

export { SIGABRT, type LibcOptions } from './libc/base.ts';
export {
  M_MMAP_THRESHOLD,
  M_TOP_PAD,
  M_TRIM_THRESHOLD,
  binIndex,
  request2size,
  type MallocStats,
} from './libc/malloc.ts';
export { formatPrintf, type PrintfArg } from './libc/printf.ts';
export { type FileBuffer, type FileMapping } from './libc/stdio.ts';

export class Libc extends Pthread {
  /** Process start-up (once, in main): maps libc's data page and creates the empty arena. */
  static init(u: UserContext, opts: LibcOptions = {}): Libc {
    const va = u.sys.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (va < 0) throw new UserSignal(SIGABRT, 0, `libc init: mmap of the arena page failed (${va})`);
    u.mmu.fill(va, 0, ARENA_SIZE);
    u.mmu.store32(va + A_MAGIC, ARENA_MAGIC);
    return new Libc(u, va, opts);
  }

  /** A handle for another thread of the same process on the arena created by init(). */
  static attach(u: UserContext, stateVa: number, opts: LibcOptions = {}): Libc {
    if (u.mmu.load32(stateVa + A_MAGIC) !== ARENA_MAGIC) {
      throw new UserSignal(SIGABRT, stateVa, 'libc attach: no arena at this address (bad magic)');
    }
    return new Libc(u, stateVa, opts);
  }

  /** Frees this thread's private buffers (stdio staging); call before a thread returns if you care. */
  release(): void {
    if (this.stdioBuf) this.free(this.stdioBuf);
    this.stdioBuf = 0;
  }
}
