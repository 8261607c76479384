// Message bodies on the fabric: what each opcode carries (msgpack-lite) and what its reply carries,
// as zod schemas. A component decodes every body it reads through its schema at the boundary
// (IncomingRequest.body on the receiver, sendReply's reply schema on the sender), so a malformed
// message is a MalformedMessage naming the opcode and the field, never a cast. The types below are
// inferred from the schemas: the schema is the one declaration.
// The page-fault hot path (P2M_PCACHE_MISS / P2M_PCACHE_FLUSH) uses only header words and the raw page
// area (see ibapi.ts); everything here is a control message. 4 KiB of file data always travels in the
// raw page area, never inside a msgpack body.
//
// Conventions: `status` (a header word) is 0 or -errno. A result that may not fit in 32 bits (a user
// address) travels in the reply body as `ret`. Schemas and types only: this file touches no shared memory
// and takes no lock; the mailbox words a body travels in are ordered by kMboxState (layout.ts, ibapi.ts).
import { z } from 'zod';

/** One page-table operation M performed while changing the address space, replayed by P in order. */
export const zPtOp = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('zap'),
    start: z.number(),
    len: z.number(),
    why: z.enum(['munmap', 'brk', 'mmap-fixed', 'mremap']).optional(),
  }),
  z.object({ op: z.literal('move'), old: z.number(), new: z.number(), len: z.number() }),
]);
export type PtOp = z.infer<typeof zPtOp>;

/** Reply of every P2M address-space call (mmap, munmap, mremap, brk, mprotect). */
export const zAsReply = z.object({ ret: z.number(), ops: z.array(zPtOp) });
export type AsReply = z.infer<typeof zAsReply>;

/** p2m_execve_struct: the new image's comm and argv (M starts a new mm; an old one is dropped) */
export const zExecveReq = z.object({ comm: z.string(), argv: z.array(z.string()).optional() });
export type ExecveReq = z.infer<typeof zExecveReq>;
/** execve_reply: the new mm's layout, and the VMAs of the image it replaced (P zaps those) */
export const zExecveReply = z.object({
  mmapBase: z.number(),
  brk: z.number(),
  stackTop: z.number(),
  oldVmas: z.array(z.tuple([z.number(), z.number()])),
});
export type ExecveReply = z.infer<typeof zExecveReply>;

export const zMmapReq = z.object({
  addr: z.number(),
  len: z.number(),
  prot: z.number(),
  flags: z.number(),
  offset: z.number(),
  /** the file of a file mapping (its S-side stat), null for an anonymous one */
  file: z.object({ path: z.string(), size: z.number(), readOnly: z.boolean() }).nullish(),
});
export type MmapReq = z.infer<typeof zMmapReq>;
export const zMunmapReq = z.object({ addr: z.number(), len: z.number() });
export type MunmapReq = z.infer<typeof zMunmapReq>;
export const zMprotectReq = z.object({ addr: z.number(), len: z.number(), prot: z.number() });
export type MprotectReq = z.infer<typeof zMprotectReq>;
export const zMremapReq = z.object({
  addr: z.number(),
  oldLen: z.number(),
  newLen: z.number(),
  flags: z.number(),
  newAddr: z.number(),
});
export type MremapReq = z.infer<typeof zMremapReq>;
export const zBrkReq = z.object({ brk: z.number() });
export type BrkReq = z.infer<typeof zBrkReq>;
/** P2M_EXIT: M drops the process and returns its last VMA ranges (so P can zap exactly those). */
/** p2m_fork_struct {pid (the header), tgid, parent_tgid, clone_flags, comm} */
export const zForkReq = z.object({ parentTgid: z.number().int(), cloneFlags: z.number().int(), comm: z.string() });
export type ForkReq = z.infer<typeof zForkReq>;
/** The vm_flags bits (include/linux/mm.h) that P reads in fork_vmainfo; M's VMA layer uses the same. */
export const VM_SHARED = 0x8;
export const VM_MAYWRITE = 0x20;
/** is_cow_mapping: private and may be written */
export const isCowMapping = (vmFlags: number): boolean => (vmFlags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
/** fork_reply_struct: the child's VMAs as fork_vmainfo {vm_start, vm_end, vm_flags} */
export const zForkReply = z.object({ vmas: z.array(z.tuple([z.number(), z.number(), z.number()])) });
export type ForkReply = z.infer<typeof zForkReply>;

export const zExitReply = z.object({ vmas: z.array(z.tuple([z.number(), z.number()])) });
export type ExitReply = z.infer<typeof zExitReply>;

// ---- storage (S). The pid in the header word selects the per-process fd table. ----
// S checks each field itself, with the errno the syscall returns for it (EFAULT for a path that is
// not a string, EBADF for a bad fd, ...), so its requests decode to a map of unknown values.
/** Any P2S/M2S request body: a map (S validates the fields it reads). */
export const zStorageReq = z.record(z.string(), z.unknown());
export type StorageReq = z.infer<typeof zStorageReq>;
/** P2S_OPEN: status = fd or -errno */
export interface OpenReq {
  path: string;
  flags: number;
  mode: number;
}
/** P2S_READ: up to 4096 bytes from the fd's position; reply aux = bytes read, data in the page area. */
export interface ReadReq {
  fd: number;
  count: number;
}
/** P2S_WRITE: `count` (<= 4096) bytes in the request page area; status = bytes written or -errno. */
export interface WriteReq {
  fd: number;
  count: number;
}
/** P2S_CLOSE: fd = -1 closes every fd of the process (exit). */
export interface CloseReq {
  fd: number;
}
/** P2S_STAT by fd (fstat, and mmap of a file): reply body StatReply. */
export interface StatReq {
  fd: number;
}
export const zStatReply = z.object({
  path: z.string(),
  size: z.number(),
  mode: z.number(),
  ino: z.number(),
  readOnly: z.boolean(),
});
export type StatReply = z.infer<typeof zStatReply>;
export interface LseekReq {
  fd: number;
  offset: number;
  whence: number;
}
/** LseekReply: the new offset (may exceed 32 bits) */
export const zLseekReply = z.object({ ret: z.number() });
export type LseekReply = z.infer<typeof zLseekReply>;
/** M2S_READ: a page of a file at `offset`; reply aux = valid bytes (the rest of the page is zero). */
export interface M2sReadReq {
  path: string;
  offset: number;
}
