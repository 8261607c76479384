// The parsed scenario: the steps and expressions the parser produces and the interpreter runs
// (traces/README.md documents the JSON Lines form), and the one error type of bad scenarios. Types and
// constants only: no state, no shared memory, no lock.

/** A numeric field: sum of signed products of a literal and variables, evaluated when the step runs. */
export interface NumExpr {
  text: string;
  terms: Array<{ sign: 1 | -1; lit: number; vars: string[] }>;
}

export type Expect = { kind: 'ok' } | { kind: 'errno'; errno: number; name: string } | { kind: 'value'; expr: NumExpr };

export type Pattern = { kind: 'tag' } | { kind: 'zero' } | { kind: 'byte'; byte: number };
/** what a probe finds: no mapping, a PROT_NONE mapping, a read-only or a writable one */
export const PROBE_STATES = ['unmapped', 'none', 'readonly', 'writable'] as const;
export type ProbeState = (typeof PROBE_STATES)[number];
export interface ProbeRun {
  pages?: NumExpr;
  len?: NumExpr;
  state: ProbeState;
}
export const TOUCH_ACCESSES = ['read', 'write'] as const;
export type TouchAccess = (typeof TOUCH_ACCESSES)[number];

export interface StepCommon {
  line: number;
  thread: number;
  repeat: number;
}
export interface SyscallCommon extends StepCommon {
  as?: string;
  expect: Expect;
}
/** What fill and check share: the range and the pattern written to it, or expected in it. */
export interface PatternStep extends StepCommon {
  addr: NumExpr;
  len: NumExpr;
  pattern: Pattern;
  gen: number;
  region: string;
  page: NumExpr;
}
export type Step =
  | (SyscallCommon & {
      op: 'mmap';
      addr: NumExpr;
      len: NumExpr;
      prot: number;
      flags: number;
      fd: NumExpr;
      offset: NumExpr;
    })
  | (SyscallCommon & { op: 'munmap'; addr: NumExpr; len: NumExpr })
  | (SyscallCommon & { op: 'mprotect'; addr: NumExpr; len: NumExpr; prot: number })
  | (SyscallCommon & {
      op: 'mremap';
      addr: NumExpr;
      oldLen: NumExpr;
      newLen: NumExpr;
      flags: number;
      newAddr?: NumExpr;
    })
  | (SyscallCommon & { op: 'brk'; addr: NumExpr })
  | (SyscallCommon & { op: 'futex_wait'; addr: NumExpr; val: NumExpr; timeoutMs: NumExpr })
  | (SyscallCommon & { op: 'futex_wake'; addr: NumExpr; count: NumExpr })
  | (PatternStep & { op: 'fill' })
  | (PatternStep & { op: 'check'; writer?: number })
  | (StepCommon & { op: 'probe'; addr: NumExpr; len: NumExpr; expectProbe?: ProbeRun[] })
  | (StepCommon & { op: 'touch'; addr: NumExpr; len: NumExpr; access: TouchAccess })
  | (StepCommon & { op: 'barrier'; label: string; ordinal: number });

export interface Scenario {
  file: string;
  name: string;
  description?: string;
  threads: number;
  /** base of the control region (vars page, per-thread stats and stdout buffers) */
  ctlBase: number;
  steps: Step[];
  /** variable name ("$a") -> 8-byte slot index in the vars page */
  varSlots: Map<string, number>;
  /** variable name -> the steps that set it (for "not set yet" messages) */
  varSetters: Map<string, Array<{ line: number; thread: number }>>;
  /** region id -> name, for describing misplaced pages */
  regionNames: Map<number, string>;
  /** number of barriers every thread passes */
  barriers: number;
}

/** A scenario that cannot run. The message is one line: `file:line: what is wrong (and how to fix)`. */
export class ScenarioError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly what: string,
  ) {
    super(`${file}:${line}: ${what}`);
    this.name = 'ScenarioError';
  }
}
