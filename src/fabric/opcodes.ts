// Opcodes (LegoOS include/lego/rpc/opcode.h). P2M syscall-type opcodes reuse Linux syscall numbers;
// P2S/M2S carry a bare opcode. Values collide across destinations (P2M_STAT == P2S_STAT == 4) and are
// disambiguated by the destination node, as in LegoOS. Constants and a pure lookup (opInfo): it touches
// no shared memory and takes no lock, so callers on any thread hold nothing.

export const P2M_PCACHE_MISS = 0x20000000;
export const P2M_PCACHE_FLUSH = 0x30000000;
export const P2M_READ = 0;
export const P2M_WRITE = 1;
export const P2M_MMAP = 9;
export const P2M_MPROTECT = 10;
export const P2M_MUNMAP = 11;
export const P2M_BRK = 12;
export const P2M_MREMAP = 25;
export const P2M_FORK = 57;
export const P2M_EXECVE = 59;
/** splitkern: process teardown (LegoOS frees the M-side mm through its exit path; we name it after exit_group). */
export const P2M_EXIT = 231;
export const P2S_OPEN = 2;
export const P2S_STAT = 4;
export const P2S_READ = 0; // LegoOS routes file reads through M (P2M_READ) or S; splitkern sends them to S
export const P2S_WRITE = 1;
export const P2S_CLOSE = 3;
export const P2S_LSEEK = 8;
export const M2S_READ = 0;
export const M2S_WRITE = 1;

/** Fabric statistics slot and printable name of an (destination, opcode) pair. */
export interface OpInfo {
  slot: number;
  name: string;
}
const P2M: Record<number, OpInfo> = {
  [P2M_PCACHE_MISS]: { slot: 0, name: 'P2M_PCACHE_MISS' },
  [P2M_PCACHE_FLUSH]: { slot: 1, name: 'P2M_PCACHE_FLUSH' },
  [P2M_MMAP]: { slot: 2, name: 'P2M_MMAP' },
  [P2M_MUNMAP]: { slot: 3, name: 'P2M_MUNMAP' },
  [P2M_MREMAP]: { slot: 4, name: 'P2M_MREMAP' },
  [P2M_BRK]: { slot: 5, name: 'P2M_BRK' },
  [P2M_MPROTECT]: { slot: 6, name: 'P2M_MPROTECT' },
  [P2M_EXECVE]: { slot: 7, name: 'P2M_EXECVE' },
  [P2M_EXIT]: { slot: 16, name: 'P2M_EXIT' },
  [P2M_FORK]: { slot: 18, name: 'P2M_FORK' },
};
const P2S: Record<number, OpInfo> = {
  [P2S_OPEN]: { slot: 8, name: 'P2S_OPEN' },
  [P2S_STAT]: { slot: 9, name: 'P2S_STAT' },
  [P2S_READ]: { slot: 10, name: 'P2S_READ' },
  [P2S_WRITE]: { slot: 11, name: 'P2S_WRITE' },
  [P2S_CLOSE]: { slot: 12, name: 'P2S_CLOSE' },
  [P2S_LSEEK]: { slot: 17, name: 'P2S_LSEEK' },
};
const M2S: Record<number, OpInfo> = {
  [M2S_READ]: { slot: 13, name: 'M2S_READ' },
  [M2S_WRITE]: { slot: 14, name: 'M2S_WRITE' },
};
const UNKNOWN: OpInfo = { slot: 15, name: 'UNKNOWN' };

/** `fromMemory` distinguishes M2S (sent by M) from P2S (sent by P) on the storage node. */
export function opInfo(dstNode: number, opcode: number, fromMemory: boolean): OpInfo {
  if (dstNode === 0) return P2M[opcode] ?? UNKNOWN;
  return (fromMemory ? M2S[opcode] : P2S[opcode]) ?? UNKNOWN;
}

export const ALL_OPS: OpInfo[] = [...Object.values(P2M), ...Object.values(P2S), ...Object.values(M2S), UNKNOWN];
