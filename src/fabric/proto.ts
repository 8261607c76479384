// Message bodies on the fabric: what each opcode carries (msgpack-lite) and what its reply carries.
// The page-fault hot path (P2M_PCACHE_MISS / P2M_PCACHE_FLUSH) uses only header words and the raw page
// area (see ibapi.ts); everything here is a control message. 4 KiB of file data always travels in the
// raw page area, never inside a msgpack body.
//
// Conventions: `status` (a header word) is 0 or -errno. A result that may not fit in 32 bits (a user
// address) travels in the reply body as `ret`.

/** One page-table operation M performed while changing the address space, replayed by P in order. */
export type PtOp =
  | { op: 'zap'; start: number; len: number; why?: 'munmap' | 'brk' | 'mmap-fixed' | 'mremap' }
  | { op: 'move'; old: number; new: number; len: number };

/** Reply of every P2M address-space call (mmap, munmap, mremap, brk, mprotect). */
export interface AsReply { ret: number; ops: PtOp[] }

export interface ExecveReq { comm: string }
export interface ExecveReply { mmapBase: number; brk: number; stackTop: number }

export interface MmapReq { addr: number; len: number; prot: number; flags: number; offset: number; file?: { path: string; size: number; readOnly: boolean } }
export interface MunmapReq { addr: number; len: number }
export interface MprotectReq { addr: number; len: number; prot: number }
export interface MremapReq { addr: number; oldLen: number; newLen: number; flags: number; newAddr: number }
export interface BrkReq { brk: number }
/** P2M_EXIT: M drops the process and returns its last VMA ranges (so P can zap exactly those). */
export interface ExitReply { vmas: Array<[number, number]> }

// ---- storage (S). The pid in the header word selects the per-process fd table. ----
/** P2S_OPEN: status = fd or -errno */
export interface OpenReq { path: string; flags: number; mode: number }
/** P2S_READ: up to 4096 bytes from the fd's position; reply aux = bytes read, data in the page area. */
export interface ReadReq { fd: number; count: number }
/** P2S_WRITE: `count` (<= 4096) bytes in the request page area; status = bytes written or -errno. */
export interface WriteReq { fd: number; count: number }
/** P2S_CLOSE: fd = -1 closes every fd of the process (exit). */
export interface CloseReq { fd: number }
/** P2S_STAT by fd (fstat, and mmap of a file): reply body StatReply. */
export interface StatReq { fd: number }
export interface StatReply { path: string; size: number; mode: number; ino: number; readOnly: boolean }
export interface LseekReq { fd: number; offset: number; whence: number }
/** LseekReply: the new offset (may exceed 32 bits) */
export interface LseekReply { ret: number }
/** M2S_READ: a page of a file at `offset`; reply aux = valid bytes (the rest of the page is zero). */
export interface M2sReadReq { path: string; offset: number }
