// The control region of a `script` run (see ../script.ts for how a run is laid out) and the
// format's hard limits, named so that hitting one fails with a message that names it. Constants and
// address arithmetic only: no state, no memory access, no lock.
import { PAGE_SIZE } from '../../../uapi/abi.ts';

// Limits and layout (named so that hitting one fails with a message that names it)

/** Default base of the control region: 16 TiB, far from the brk heap (0x55…) and the mmap area (0x7f…). */
export const kDefaultCtlBase = 0x100000000000;
export const kMaxThreads = 64;
/** One page of 8-byte variable slots. */
export const kMaxVars = PAGE_SIZE / 8;
export const kMaxRepeat = 1_000_000;
/** Stored in a slot as value + kVarBias so that 0 means "unset" and -errno (> -4096) still fits store64. */
export const kVarBias = 4096;
export const kOutPages = 4;
export const kThreadPages = 1 + kOutPages;
export const kStatSteps = 0;
export const kStatFailures = 8;
export const kStatFirstLine = 16;
export const kStatMsgLen = 24;
export const kStatMsg = 32;

/** Bytes of the control region for a scenario with `threads` threads. */
export const ctlRegionSize = (threads: number): number => PAGE_SIZE * (1 + threads * kThreadPages);
export const threadArea = (ctl: number, t: number): number => ctl + PAGE_SIZE * (1 + t * kThreadPages);
