// The user-space ABI of splitkern: what a program running as a user thread may touch.
//
// A program sees memory only through the emulated MMU (loads/stores by virtual address, faulting into the
// P kernel on a TLB miss) and the kernel only through system calls. Raw syscalls follow the Linux kernel
// convention: they return a non-negative result or -errno (never throw for an error). A fault the kernel
// cannot resolve (SIGSEGV) unwinds the thread by throwing a `UserSignal`; programs must not catch it.
//
// Addresses are 47-bit user virtual addresses held in JS numbers: never apply 32-bit bit operators
// (`|`, `&`, `>>>`, `<<`) to a whole address.
//
// Interfaces and error types only: this file touches no shared memory and takes no lock. A UserContext
// belongs to one user thread and is used only on the CPU worker running it; programs hold no kernel lock
// (they have none to take) and synchronise with each other in emulated memory (cas32/xadd32) or
// through the futex, join and barrier syscalls.

export interface Mmu {
  load8(va: number): number;
  load16(va: number): number;
  load32(va: number): number;
  /** 64-bit little-endian load as a JS number (exact below 2^53; pointers are 47-bit). */
  load64(va: number): number;
  store8(va: number, v: number): void;
  store16(va: number, v: number): void;
  store32(va: number, v: number): void;
  /** 64-bit little-endian store of a non-negative integer below 2^53. */
  store64(va: number, v: number): void;
  /** Copy `len` bytes from user memory into `dst` (at dst offset `off`); translates once per page. */
  read(va: number, dst: Uint8Array, off?: number, len?: number): void;
  /** Copy bytes into user memory; translates once per page. */
  write(va: number, src: Uint8Array, off?: number, len?: number): void;
  /** memset */
  fill(va: number, byte: number, len: number): void;
  /** Atomic compare-and-swap of an aligned 32-bit word (lock cmpxchg); returns the old value (unsigned). */
  cas32(va: number, expected: number, replacement: number): number;
  /** Atomic fetch-and-add of an aligned 32-bit word (lock xadd); returns the old value (unsigned). */
  xadd32(va: number, delta: number): number;
  /**
   * Probe one byte as a program with a SIGSEGV handler would: goes through the same fault path as a
   * load (or a store of the byte's own value when `write`), but reports a fault as `false` instead of
   * killing the process. Used by scenario probes; ordinary code must use load/store.
   */
  probe(va: number, write: boolean): boolean;
  /**
   * The same probe, returning the si_code the SIGSEGV would carry: 0 (no fault), SEGV_MAPERR (1: no
   * mapping) or SEGV_ACCERR (2: the mapping forbids the access, for example PROT_NONE).
   */
  probeSiCode(va: number, write: boolean): number;
}

export interface Syscalls {
  mmap(addr: number, len: number, prot: number, flags: number, fd: number, offset: number): number;
  munmap(addr: number, len: number): number;
  mprotect(addr: number, len: number, prot: number): number;
  mremap(oldAddr: number, oldLen: number, newLen: number, flags: number, newAddr?: number): number;
  /** Linux brk: returns the new break, or the current one when the request fails. brk(0) queries. */
  brk(addr: number): number;
  /** `path` is a path on S (a string, as LegoOS sends the file name, not a user pointer). */
  open(path: string, flags: number, mode?: number): number;
  read(fd: number, bufVa: number, count: number): number;
  write(fd: number, bufVa: number, count: number): number;
  close(fd: number): number;
  /** Writes a struct stat (STAT_SIZE bytes, x86-64 layout) at statVa. */
  fstat(fd: number, statVa: number): number;
  lseek(fd: number, offset: number, whence: number): number;
  /**
   * Start a user thread running the program's thread entry `entry` with `arg`; returns its tid or -errno.
   * A non-zero `ctid` is glibc's CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID on that aligned u32: the
   * new tid is stored there before clone returns, and when the thread exits the kernel stores 0 there
   * and does FUTEX_WAKE on it (pthread_join waits for that). Bad addresses are ignored, as in Linux.
   */
  clone(entry: string, arg: number, ctid?: number): number;
  /**
   * fork: a new process with a copy of this one's address space (private mappings copy-on-write,
   * MAP_SHARED ones shared). A JS stack cannot be copied, so the child does not return from fork: its
   * one thread starts at the program's thread entry `entry` with `arg`, as clone starts a thread.
   * Returns the child's pid, or -errno (-EAGAIN past threads-max, -ENOMEM past the process table).
   */
  fork(entry: string, arg: number): number;
  /**
   * wait4(pid, wstatus, options): reap an exited child (pid -1: any), storing its wait status (the
   * W* macros' encoding, abi.ts wExitStatus / wTermSig) at the aligned u32 statusVa unless 0. Returns
   * its pid; 0 with WNOHANG if none has exited; -ECHILD if there is no such child.
   */
  wait4(pid: number, statusVa: number, options: number): number;
  /**
   * execve(program, argv): replace the process's image with `program` (a name of the machine's
   * program registry, the "file") run with `argv`. On success it does not return: every mapping of
   * the old image is gone, and the calling thread starts the new program's main. -ENOENT for an
   * unknown program, -E2BIG past 128 KiB of argv strings, -EBUSY if the process has other threads
   * (splitkern has no de_thread).
   */
  execve(program: string, argv: readonly string[]): number;
  /** Wait for a thread started by clone; returns its exit value, or -errno. */
  join(tid: number): number;
  /** A barrier shared by all threads of the process, identified by id, for `count` parties. */
  barrier(id: number, count: number): number;
  /**
   * futex(uaddr, op, val, timeout): FUTEX_WAIT sleeps while the u32 at uaddr equals val (0 when woken,
   * -EAGAIN if it differs, -ETIMEDOUT after timeoutMs; a negative or absent timeout waits for ever),
   * FUTEX_WAKE wakes up to val waiters and returns how many. FUTEX_PRIVATE_FLAG is accepted. The
   * timeout is relative milliseconds, not a struct timespec pointer.
   */
  futex(uaddr: number, op: number, val: number, timeoutMs?: number): number;
  /** sched_yield: let another runnable task have this CPU; 0 */
  sched_yield(): number;
  /**
   * clock_gettime(CLOCK_MONOTONIC): milliseconds since boot, as a number (not a struct timespec
   * pointer); under a controlled schedule the schedule's logical clock. -EINVAL for another clock.
   * Programs read time only here, so that a replayed run sees the same times.
   */
  clock_gettime(clockId: number): number;
  /**
   * sched_setaffinity(tid, mask): the CPUs thread `tid` of this process (0: the caller) may run on, as
   * a bitmask (not a cpu_set_t pointer). -EINVAL if the mask names no CPU that exists, -ESRCH if tid is
   * not a live thread of this process. The caller moves at once if its CPU is no longer allowed.
   */
  sched_setaffinity(tid: number, mask: number): number;
  /** sched_getaffinity(tid): the thread's mask (only CPUs that exist), or -ESRCH */
  sched_getaffinity(tid: number): number;
  getpid(): number;
  gettid(): number;
  /** ends the calling thread (never returns) */
  exit(code: number): never;
}

/** Everything a user thread gets. */
export interface UserContext {
  mmu: Mmu;
  sys: Syscalls;
  /**
   * pid (= tgid) and tid of this thread, and the CPU it runs on now (sched_getcpu: any schedule point
   * may change it).
   */
  pid: number;
  tid: number;
  readonly cpu: number;
  /** argv of the process (as given to main), visible to every thread like /proc/self/cmdline. */
  argv: string[];
  /** The run's seed (for programs that generate data deterministically). */
  seed: number;
  /** Shared-nothing channel to the host for a program's final report (a plain JS value). */
  report(value: unknown): void;
  /** Optional progress of this thread (done of total units), shown by the host on a TTY; throttled. */
  progress?(done: number, total: number): void;
}

/**
 * A program: `main` runs as the first thread of a new process; `threads` are the entry points that
 * `sys.clone(name, arg)` may start (functions cannot cross workers, so threads are named).
 */
export interface Program {
  name: string;
  main(u: UserContext, argv: string[]): number;
  threads?: Record<string, (u: UserContext, arg: number) => number>;
}

/** Thrown by the MMU/kernel to unwind a user thread that got a fatal signal. */
export class UserSignal extends Error {
  constructor(
    readonly signo: number,
    readonly addr: number,
    readonly why: string,
  ) {
    super(`signal ${signo} at 0x${addr.toString(16)}: ${why}`);
  }
}

/** Thrown by sys.exit to unwind the calling thread. */
/**
 * Thrown by a successful execve once the kernel has replaced the image: the task that catches it (the
 * kernel's, processor/task.ts) starts `program`'s main with `argv` on the same thread.
 */
export class ExecImage extends Error {
  constructor(
    readonly program: string,
    readonly argv: readonly string[],
  ) {
    super(`execve ${program}`);
  }
}

export class ThreadExit extends Error {
  constructor(readonly code: number) {
    super(`thread exit ${code}`);
  }
}
