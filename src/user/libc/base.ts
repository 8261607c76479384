// The state every part of libc shares: a per-thread handle on a UserContext. Only immutable facts
// (the arena state's VA, this thread's lock owner id) and thread-private scratch live in the JS
// object; everything the allocator knows is in emulated memory (malloc.ts). The parts build on each
// other in this order, each using only those before it: base -> malloc -> string -> stdio ->
// pthread -> Libc (../libc.ts). Addresses are 47-bit: only arithmetic is applied to them, never
// 32-bit bit operators. No lock here: the JS object is thread-private, and the arena lock (A_LOCK) and
// everything it guards belong to malloc.ts.
import { type Mmu, type Syscalls, type UserContext } from '../../uapi/program.ts';

export const SIGABRT = 6;
export const BOUNCE = 64 * 1024;

export interface LibcOptions {
  /** How long a thread spins on the arena lock before aborting (SIGABRT). Default 30 s. */
  spinLimitMs?: number;
}

export class LibcBase {
  readonly mmu: Mmu;
  readonly sys: Syscalls;
  /** errno of the last failing libc call of this thread (thread-local, as in C). */
  errno = 0;
  protected readonly bounce = new Uint8Array(BOUNCE);
  protected readonly bounce2 = new Uint8Array(BOUNCE);
  protected readonly spinLimitMs: number;
  protected readonly owner: number;
  protected stdioBuf = 0;
  protected readonly stdioSize = 4096;

  protected constructor(
    readonly u: UserContext,
    /** VA of the arena state page; pass it to other threads (e.g. in a task struct) for attach(). */
    readonly stateVa: number,
    opts: LibcOptions,
  ) {
    this.mmu = u.mmu;
    this.sys = u.sys;
    this.spinLimitMs = opts.spinLimitMs ?? 30_000;
    this.owner = u.tid > 0 ? u.tid : 0x7fffffff;
  }
}
