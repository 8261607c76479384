// Linux x86-64 user ABI constants shared by every component (include/uapi/...).
// Values are Linux's, so a scenario written against real Linux means the same here. Constants only:
// no state, no shared memory, no lock.

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** arch/x86/include/asm/processor.h: TASK_SIZE = 2^47 - PAGE_SIZE */
export const TASK_SIZE = 2 ** 47 - PAGE_SIZE;

export const pageAlignDown = (a: number): number => a - (a % PAGE_SIZE);
export const pageAlignUp = (a: number): number => Math.ceil(a / PAGE_SIZE) * PAGE_SIZE;
export const offsetInPage = (a: number): number => a % PAGE_SIZE;

// include/uapi/asm-generic/errno-base.h, errno.h
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const E2BIG = 7;
export const EBADF = 9;
export const ECHILD = 10;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const EMFILE = 24;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const EROFS = 30;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const EOVERFLOW = 75;
export const EDEADLK = 35;
export const ETIMEDOUT = 110;
/** clock_gettime's clock: milliseconds since boot (under a controlled schedule, its logical clock) */
export const CLOCK_MONOTONIC = 1;

export const ERRNO_NAMES: Record<number, string> = {
  [EPERM]: 'EPERM',
  [ENOENT]: 'ENOENT',
  [ESRCH]: 'ESRCH',
  [EINTR]: 'EINTR',
  [EIO]: 'EIO',
  [EBADF]: 'EBADF',
  [ECHILD]: 'ECHILD',
  [EAGAIN]: 'EAGAIN',
  [ENOMEM]: 'ENOMEM',
  [EACCES]: 'EACCES',
  [EFAULT]: 'EFAULT',
  [EBUSY]: 'EBUSY',
  [EEXIST]: 'EEXIST',
  [ENODEV]: 'ENODEV',
  [ENOTDIR]: 'ENOTDIR',
  [EISDIR]: 'EISDIR',
  [EINVAL]: 'EINVAL',
  [EMFILE]: 'EMFILE',
  [EFBIG]: 'EFBIG',
  [ENOSPC]: 'ENOSPC',
  [ESPIPE]: 'ESPIPE',
  [EROFS]: 'EROFS',
  [ENAMETOOLONG]: 'ENAMETOOLONG',
  [ENOSYS]: 'ENOSYS',
  [EOVERFLOW]: 'EOVERFLOW',
  [EDEADLK]: 'EDEADLK',
  [ETIMEDOUT]: 'ETIMEDOUT',
};
export const errnoByName = (name: string): number | undefined => {
  for (const [k, v] of Object.entries(ERRNO_NAMES)) if (v === name) return Number(k);
  return undefined;
};
/** Name of a raw syscall return: "EINVAL" for -22, undefined for success. */
export const errnoName = (ret: number): string | undefined =>
  ret < 0 && ret > -4096 ? (ERRNO_NAMES[-ret] ?? `E${-ret}`) : undefined;

// include/uapi/linux/futex.h
export const FUTEX_WAIT = 0;
export const FUTEX_WAKE = 1;
export const FUTEX_PRIVATE_FLAG = 128;
export const FUTEX_CLOCK_REALTIME = 256;
/** op & FUTEX_CMD_MASK: the command without its flags */
export const FUTEX_CMD_MASK = ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
export const FUTEX_WAIT_PRIVATE = FUTEX_WAIT | FUTEX_PRIVATE_FLAG;
export const FUTEX_WAKE_PRIVATE = FUTEX_WAKE | FUTEX_PRIVATE_FLAG;
/** INT_MAX: wake every waiter (pthread_cond_broadcast) */
export const FUTEX_WAKE_ALL = 0x7fffffff;

// include/uapi/asm-generic/mman-common.h
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;

export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_GROWSDOWN = 0x0100;
export const MAP_DENYWRITE = 0x0800;
export const MAP_EXECUTABLE = 0x1000;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_NONBLOCK = 0x10000;
export const MAP_STACK = 0x20000;
export const MAP_HUGETLB = 0x40000;
export const MAP_FIXED_NOREPLACE = 0x100000;
/** Sentinel returned by the libc wrapper; the raw syscall returns -errno. */
export const MAP_FAILED = -1;

// include/uapi/linux/mman.h
export const MREMAP_MAYMOVE = 1;
export const MREMAP_FIXED = 2;
export const MREMAP_DONTUNMAP = 4;

export const PROT_NAMES: Record<string, number> = {
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  PROT_EXEC,
};
export const MAP_NAMES: Record<string, number> = {
  MAP_SHARED,
  MAP_PRIVATE,
  MAP_FIXED,
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_GROWSDOWN,
  MAP_STACK,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_DENYWRITE,
  MAP_EXECUTABLE,
};
export const MREMAP_NAMES: Record<string, number> = { MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP };

// include/uapi/asm-generic/fcntl.h
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;

// include/uapi/linux/fs.h: lseek whence
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;

export const STDIN_FILENO = 0;
export const STDOUT_FILENO = 1;
export const STDERR_FILENO = 2;

/** x86-64 struct stat: only the fields splitkern fills. Offsets from arch/x86/include/uapi/asm/stat.h. */
export const STAT_SIZE = 144;
export const STAT_ST_MODE = 24;
export const STAT_ST_SIZE = 48;
export const STAT_ST_BLKSIZE = 56;
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;

// Signals
export const SIGSEGV = 11;
/** si_code of SIGSEGV (include/uapi/asm-generic/siginfo.h) */
export const SEGV_MAPERR = 1;
export const SEGV_ACCERR = 2;
export const SIGBUS = 7;
export const SIGCHLD = 17;
/** wait4 options (include/uapi/linux/wait.h) */
export const WNOHANG = 1;
/** wait status words as the W* macros read them: exit code << 8, or the terminating signal */
export const wExitStatus = (code: number): number => (code & 0xff) * 256;
export const wTermSig = (sig: number): number => sig & 0x7f;

/** x86 page-fault error code bits (arch/x86/include/asm/traps.h) as printed in "segfault at ... error N". */
export const X86_PF_PROT = 1;
export const X86_PF_WRITE = 2;
export const X86_PF_USER = 4;
