// The `script` workload: JSON Lines scenarios that drive mmap/munmap/mremap/brk/mprotect from several
// threads and verify memory contents with self-describing page tags (and, with `touch`, take real
// faults: an access the kernel cannot resolve kills the process with SIGSEGV). The format is documented in
// traces/README.md; this file is its only implementation.
//
// How a run is laid out in emulated memory (everything a thread shares with another goes through it):
//   the control region, mapped MAP_FIXED by main at `ctl` (default kDefaultCtlBase) before any clone:
//     page 0              variable slots: slot i at +8*i holds value + kVarBias (0 = never set)
//     per thread t, kThreadPages pages at ctl + PAGE_SIZE * (1 + t * kThreadPages):
//       page 0            stats: steps, failures, first failure's line, message length, message bytes
//       pages 1..         stdout buffer: each output line is copied here and written with sys.write(1, ...)
// Every thread re-parses the scenario from argv[0], so the layout (ctl, slots) is known to all of them
// without passing pointers: clone's argument is just the scenario thread index.

import { z } from 'zod';
import {
  ERRNO_NAMES, MAP_ANONYMOUS, MAP_FIXED, MAP_NAMES, MAP_PRIVATE, MREMAP_FIXED, MREMAP_NAMES, PAGE_SIZE,
  PROT_NAMES, PROT_READ, PROT_WRITE, SEGV_ACCERR, STDERR_FILENO, STDOUT_FILENO, TASK_SIZE, errnoByName, errnoName,
} from '../../uapi/abi.ts';
import type { Mmu, Program, UserContext } from '../../uapi/program.ts';
import { closest, excerpt } from '../../lib/text.ts';

// ---------------------------------------------------------------------------------------------------
// Limits and layout (named so that hitting one fails with a message that names it)

/** Default base of the control region: 16 TiB, far from the brk heap (0x55…) and the mmap area (0x7f…). */
export const kDefaultCtlBase = 0x100000000000;
export const kMaxThreads = 64;
/** One page of 8-byte variable slots. */
export const kMaxVars = PAGE_SIZE / 8;
const kMaxRepeat = 1_000_000;
/** Stored in a slot as value + kVarBias so that 0 means "unset" and -errno (> -4096) still fits store64. */
const kVarBias = 4096;
const kOutPages = 4;
const kThreadPages = 1 + kOutPages;
const kStatSteps = 0;
const kStatFailures = 8;
const kStatFirstLine = 16;
const kStatMsgLen = 24;
const kStatMsg = 32;

/** Bytes of the control region for a scenario with `threads` threads. */
export const ctlRegionSize = (threads: number): number => PAGE_SIZE * (1 + threads * kThreadPages);
const threadArea = (ctl: number, t: number): number => ctl + PAGE_SIZE * (1 + t * kThreadPages);

// ---------------------------------------------------------------------------------------------------
// Page patterns: a 32-byte self-describing tag at the start of every page, the rest derived from it.
//
//   +0  u32 magic "SKPG"      +4  u32 region id (FNV-1a of the region name)   +8  u32 page index in region
//   +12 u32 generation        +16 u32 writer (scenario thread index)
//   +20 u32, +24 u32          page number (va / 4096) where it was written, low and high halves
//   +28 u32 FNV-1a of bytes 0..27; bytes 32.. are an xorshift32 stream seeded by it.
// A page moved by mremap keeps its tag, so the tag says where its content came from; a page that holds
// another region's or another index's tag is a misplaced page.

const kTagMagic = 0x47504b53; // bytes 53 4b 50 47 = "SKPG"
const kTagBytes = 32;

export interface PageTag {
  /** region id: regionId(name) */
  region: number;
  /** page index within the region */
  page: number;
  generation: number;
  /** scenario thread index of the writer */
  thread: number;
}

export type PageContent =
  | { kind: 'tag'; tag: PageTag; writtenAt: number; intact: boolean; firstBadOffset?: number }
  | { kind: 'zeros' }
  | { kind: 'byte'; byte: number }
  | { kind: 'garbage'; firstBytes: string };

function fnv1a(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0;
  return h;
}

/** The id stored in tags for a region name. */
export const regionId = (name: string): number => fnv1a(new TextEncoder().encode(name));

/** Fills bytes [kTagBytes, end) of a page from its tag checksum. (32-bit ops on data words, not addresses.) */
function tagBody(seed: number, out: DataView, end: number): void {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let o = kTagBytes; o + 4 <= end; o += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out.setUint32(o, x, true);
  }
}

/** The 4 KiB content of a tagged page written at `writtenAt`. */
export function encodeTaggedPage(tag: PageTag, writtenAt: number): Uint8Array {
  const b = new Uint8Array(PAGE_SIZE);
  const dv = new DataView(b.buffer);
  const vpn = Math.floor(writtenAt / PAGE_SIZE);
  dv.setUint32(0, kTagMagic, true);
  dv.setUint32(4, tag.region >>> 0, true);
  dv.setUint32(8, tag.page >>> 0, true);
  dv.setUint32(12, tag.generation >>> 0, true);
  dv.setUint32(16, tag.thread >>> 0, true);
  dv.setUint32(20, vpn % 2 ** 32, true);
  dv.setUint32(24, Math.floor(vpn / 2 ** 32), true);
  const sum = fnv1a(b, 0, 28);
  dv.setUint32(28, sum, true);
  tagBody(sum, dv, PAGE_SIZE);
  return b;
}

/** Write one tagged page at page-aligned `va` (records `va` in the tag as where it was written). */
export function writeTaggedPage(mmu: Mmu, va: number, tag: PageTag): void {
  mmu.write(va, encodeTaggedPage(tag, va));
}

/** Classify the content of a page (or of its first bytes; the body is checked as far as given). */
export function decodePageTag(bytes: Uint8Array): PageContent {
  if (bytes.length >= kTagBytes) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) === kTagMagic && dv.getUint32(28, true) === fnv1a(bytes, 0, 28)) {
      const tag: PageTag = {
        region: dv.getUint32(4, true), page: dv.getUint32(8, true),
        generation: dv.getUint32(12, true), thread: dv.getUint32(16, true),
      };
      const writtenAt = (dv.getUint32(20, true) + dv.getUint32(24, true) * 2 ** 32) * PAGE_SIZE;
      const want = new Uint8Array(bytes.length);
      tagBody(dv.getUint32(28, true), new DataView(want.buffer), bytes.length);
      for (let o = kTagBytes; o + 4 <= bytes.length; o++) {
        if (bytes[o] !== want[o]) return { kind: 'tag', tag, writtenAt, intact: false, firstBadOffset: o };
      }
      return { kind: 'tag', tag, writtenAt, intact: true };
    }
  }
  const b0 = bytes[0] ?? 0;
  if (bytes.every((x) => x === b0)) return b0 === 0 ? { kind: 'zeros' } : { kind: 'byte', byte: b0 };
  const firstBytes = Array.from(bytes.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ');
  return { kind: 'garbage', firstBytes };
}

const hex = (v: number): string => (v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** Human description of a page's content, naming regions by the names a scenario gave them. */
export function describePageContent(c: PageContent, regionNames?: ReadonlyMap<number, string>): string {
  switch (c.kind) {
    case 'zeros': return 'zeros';
    case 'byte': return `bytes ${hex(c.byte)} throughout`;
    case 'garbage': return `garbage (no valid tag; first bytes ${c.firstBytes})`;
    case 'tag': {
      const name = regionNames?.get(c.tag.region);
      const region = name !== undefined ? `region ${name}` : `region #${hex(c.tag.region)}`;
      const s = `${region} page ${c.tag.page} generation ${c.tag.generation} written by thread ${c.tag.thread}`
        + ` at ${hex(c.writtenAt)}`;
      return c.intact ? s : `${s}, but its bytes from offset ${hex(c.firstBadOffset ?? 0)} do not match its tag`
        + ' (torn or overwritten)';
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The parsed scenario

/** A numeric field: sum of signed products of a literal and variables, evaluated when the step runs. */
export interface NumExpr {
  text: string;
  terms: Array<{ sign: 1 | -1; lit: number; vars: string[] }>;
}

export type Expect =
  | { kind: 'ok' }
  | { kind: 'errno'; errno: number; name: string }
  | { kind: 'value'; expr: NumExpr };

export type Pattern = { kind: 'tag' } | { kind: 'zero' } | { kind: 'byte'; byte: number };
/** what a probe finds: no mapping, a PROT_NONE mapping, a read-only or a writable one */
export const PROBE_STATES = ['unmapped', 'none', 'readonly', 'writable'] as const;
export type ProbeState = (typeof PROBE_STATES)[number];
export interface ProbeRun { pages?: NumExpr; len?: NumExpr; state: ProbeState }
export const TOUCH_ACCESSES = ['read', 'write'] as const;
export type TouchAccess = (typeof TOUCH_ACCESSES)[number];

interface StepCommon { line: number; thread: number; repeat: number }
interface SyscallCommon extends StepCommon { as?: string; expect: Expect }
export type Step =
  | (SyscallCommon & { op: 'mmap'; addr: NumExpr; len: NumExpr; prot: number; flags: number; fd: NumExpr; offset: NumExpr })
  | (SyscallCommon & { op: 'munmap'; addr: NumExpr; len: NumExpr })
  | (SyscallCommon & { op: 'mprotect'; addr: NumExpr; len: NumExpr; prot: number })
  | (SyscallCommon & {
    op: 'mremap'; addr: NumExpr; oldLen: NumExpr; newLen: NumExpr; flags: number; newAddr?: NumExpr;
  })
  | (SyscallCommon & { op: 'brk'; addr: NumExpr })
  | (StepCommon & { op: 'fill'; addr: NumExpr; len: NumExpr; pattern: Pattern; gen: number; region: string; page: NumExpr })
  | (StepCommon & {
    op: 'check'; addr: NumExpr; len: NumExpr; pattern: Pattern; gen: number; region: string; page: NumExpr;
    writer?: number;
  })
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

// ---------------------------------------------------------------------------------------------------
// Parsing

const OPS = ['mmap', 'munmap', 'mprotect', 'mremap', 'brk', 'fill', 'check', 'probe', 'touch', 'barrier'] as const;
type Op = (typeof OPS)[number];

/** `; did you mean "X"?` for the closest candidate, or '' when nothing is close. */
function didYouMean(word: string, candidates: Iterable<string>): string {
  const best = closest(word, candidates, 2);
  return best !== undefined ? `; did you mean "${best}"?` : '';
}

const kNumHelp = 'an integer like 4096 or "0x1000", a variable "$a", or an expression like "$a+0x1000" or "63*4096"';
const zNum = z.union([z.number(), z.string()], { error: `must be ${kNumHelp}` });
const zFlags = z.union([z.number(), z.string()], { error: 'must be flag names like "MAP_PRIVATE|MAP_ANONYMOUS" or a number' });
const zExpect = z.union([z.number(), z.string()], {
  error: 'must be "ok", an errno name like "EINVAL", a number, or a variable expression like "$a"',
});
const zInt = (min: number, max: number, what: string) =>
  z.number({ error: what }).int({ error: what }).min(min, { error: what }).max(max, { error: what });
const zPattern = z.union([z.string(), z.number()], { error: 'must be "tag", "zero" or a byte value 0..255' });
const zGen = zInt(0, 2 ** 32 - 1, 'must be an integer from 0 to 4294967295');
const zRegion = z.string({ error: 'must be a region name (a string)' }).min(1, { error: 'must not be empty' });
const zVarName = z.string({ error: 'must be a variable name like "$a"' });

const zCommon = {
  thread: zInt(0, kMaxThreads - 1, `must be a thread index from 0 to ${kMaxThreads - 1}`).optional(),
  op: z.string(),
  repeat: zInt(1, kMaxRepeat, `must be an integer from 1 to ${kMaxRepeat}`).optional(),
  comment: z.string({ error: 'must be a string' }).optional(),
};
const zSyscall = { as: zVarName.optional(), expect: zExpect.optional() };
const zRange = { addr: zNum, len: zNum };
const zPatternFields = { pattern: zPattern.optional(), gen: zGen.optional(), region: zRegion.optional(), page: zNum.optional() };

const STEP_SCHEMAS = {
  mmap: z.strictObject({
    ...zCommon, ...zSyscall, addr: zNum.optional(), len: zNum, prot: zFlags.optional(), flags: zFlags.optional(),
    fd: zNum.optional(), offset: zNum.optional(),
  }),
  munmap: z.strictObject({ ...zCommon, ...zSyscall, ...zRange }),
  mprotect: z.strictObject({ ...zCommon, ...zSyscall, ...zRange, prot: zFlags }),
  mremap: z.strictObject({
    ...zCommon, ...zSyscall, addr: zNum, old_len: zNum, new_len: zNum, flags: zFlags.optional(), new_addr: zNum.optional(),
  }),
  brk: z.strictObject({ ...zCommon, ...zSyscall, addr: zNum }),
  fill: z.strictObject({ ...zCommon, ...zRange, ...zPatternFields }),
  check: z.strictObject({
    ...zCommon, ...zRange, ...zPatternFields,
    writer: zInt(0, kMaxThreads - 1, 'must be the index of the thread expected to have written the pages').optional(),
  }),
  probe: z.strictObject({
    ...zCommon, ...zRange,
    expect_probe: z.union([
      z.string(),
      z.array(z.strictObject({ pages: zNum.optional(), len: zNum.optional(), state: z.string() })),
    ], { error: 'must be a state ("unmapped", "none", "readonly", "writable") or a list of {"pages": n, "state": s} or {"len": n, "state": s} runs' }).optional(),
  }),
  touch: z.strictObject({
    ...zCommon, addr: zNum, len: zNum.optional(),
    access: z.string({ error: 'must be "read" or "write"' }).optional(),
  }),
  barrier: z.strictObject({
    thread: zCommon.thread, op: zCommon.op, comment: zCommon.comment,
    id: z.union([z.number(), z.string()], { error: 'must be a number or a string label' }).optional(),
  }),
} satisfies Record<Op, z.ZodObject>;

const zHeader = z.strictObject({
  scenario: z.string({ error: 'must be the scenario name (a string)' }).min(1, { error: 'must not be empty' }),
  threads: zInt(1, kMaxThreads, `must be an integer from 1 to ${kMaxThreads}`).optional(),
  description: z.string({ error: 'must be a string' }).optional(),
  ctl: zNum.optional(),
});

/** Parsing state for one file. */
class Parser {
  readonly varUses: Array<{ name: string; line: number; field: string }> = [];
  readonly varSetters = new Map<string, Array<{ line: number; thread: number }>>();
  readonly varSlots = new Map<string, number>();
  readonly regionNames = new Map<number, string>();

  constructor(readonly file: string) {}

  error(line: number, what: string): ScenarioError {
    return new ScenarioError(this.file, line, what.replace(/\s*\n\s*/g, ' '));
  }

  validate<S extends z.ZodObject>(schema: S, obj: Record<string, unknown>, what: string, line: number): z.output<S> {
    const r = schema.safeParse(obj);
    if (r.success) return r.data;
    // An unknown key first: a misspelt field also shows up as a missing one, and the typo is the real error.
    const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? r.error.issues[0]!;
    const fields = Object.keys(schema.shape);
    if (issue.code === 'unrecognized_keys') {
      const k = issue.keys[0] ?? '';
      return this.fail(line, `unknown field "${k}" in ${what}${didYouMean(k, fields)} (fields: ${fields.join(', ')})`);
    }
    const field = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
    if (issue.path.length === 1 && !(String(issue.path[0]) in obj)) return this.fail(line, `${what} needs "${field}"`);
    return this.fail(line, `"${field}" ${issue.message}`);
  }

  fail(line: number, what: string): never {
    throw this.error(line, what);
  }

  num(raw: number | string, field: string, line: number): NumExpr {
    const bad = (why: string): never =>
      this.fail(line, `bad number ${typeof raw === 'string' ? JSON.stringify(excerpt(raw)) : raw} in "${field}"${why}: expected ${kNumHelp}`);
    if (typeof raw === 'number') {
      if (!Number.isSafeInteger(raw)) bad(Number.isInteger(raw) ? ' (beyond 2^53: a JSON number loses precision there; write a 64-bit value as a hex string, "0xfffffffffffff001")' : ' (not an integer)');
      return { text: String(raw), terms: [{ sign: 1, lit: raw, vars: [] }] };
    }
    // A lone literal is a 64-bit register value: up to 2^64 - 1, passed as its signed 64-bit value
    // (0xfffffffffffff001 is -4095), which the kernel reads back as an unsigned long.
    const lone = /^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*$/.exec(raw);
    if (lone && !Number.isSafeInteger(Number(lone[1]))) {
      const b = BigInt(lone[1]!);
      if (b >= 2n ** 64n) bad(' (beyond 2^64 - 1: a syscall argument is 64 bits)');
      const signed = BigInt.asIntN(64, b);
      const v = Number(signed);
      if (BigInt(v) !== signed) bad(' (a 64-bit value a double cannot hold exactly: splitkern passes syscall arguments as the signed 64-bit value in a double; use one within 2^53 of 0 or of 2^64)');
      return { text: raw.trim(), terms: [{ sign: 1, lit: v, vars: [] }] };
    }
    const tok = /\s*(\$[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9a-fA-F]+|[0-9]+|[-+*])\s*/y;
    const toks: string[] = [];
    let pos = 0;
    while (pos < raw.length) {
      tok.lastIndex = pos;
      const m = tok.exec(raw);
      if (!m) bad(` (unexpected "${raw.slice(pos, pos + 8)}")`);
      toks.push(m![1]!);
      pos = tok.lastIndex;
    }
    if (toks.length === 0) bad(' (empty)');
    const terms: NumExpr['terms'] = [];
    let i = 0;
    let sign: 1 | -1 = 1;
    if (toks[0] === '-' || toks[0] === '+') { sign = toks[0] === '-' ? -1 : 1; i++; }
    for (;;) {
      const term = { sign, lit: 1, vars: [] as string[] };
      for (;;) {
        const t = toks[i++];
        if (t === undefined || '+-*'.includes(t)) bad(' (an operator needs a number or a variable on each side)');
        if (t!.startsWith('$')) {
          term.vars.push(t!);
          this.varUses.push({ name: t!, line, field });
        } else {
          const v = Number(t);
          if (!Number.isSafeInteger(v)) bad(' (beyond 2^53)');
          term.lit *= v;
          if (!Number.isSafeInteger(term.lit)) bad(' (beyond 2^53)');
        }
        if (toks[i] !== '*') break;
        i++;
      }
      terms.push(term);
      if (i >= toks.length) break;
      const op = toks[i++];
      if (op !== '+' && op !== '-') bad(` (unexpected "${op}")`);
      sign = op === '-' ? -1 : 1;
    }
    return { text: raw.trim(), terms };
  }

  /**
   * The user range of a fill, check, probe or touch step, checked before boot wherever it is literal
   * (the same rules the step applies at run time to computed values): a user address (page-aligned
   * unless `anyAddr`), a positive length, and an end at or below TASK_SIZE.
   */
  literalUserRange(addrE: NumExpr, lenE: NumExpr, aligned: boolean, line: number): void {
    const a = constValue(addrE);
    const l = constValue(lenE);
    if (a !== undefined && (a < 0 || a >= TASK_SIZE)) this.fail(line, `"addr" ${addrE.text} is not a user address (0 to TASK_SIZE ${hex(TASK_SIZE)})`);
    if (a !== undefined && aligned && a % PAGE_SIZE !== 0) this.fail(line, `"addr" ${addrE.text} is not page-aligned (a multiple of ${hex(PAGE_SIZE)})`);
    if (l !== undefined && l <= 0) this.fail(line, `"len" ${lenE.text} must be positive`);
    if (a !== undefined && l !== undefined && a + l > TASK_SIZE) {
      this.fail(line, `[${hex(a)} - ${hex(a + l)}) is not a user range: it ends above TASK_SIZE ${hex(TASK_SIZE)}`);
    }
  }

  flags(raw: number | string | undefined, dflt: number, table: Record<string, number>, kind: string, field: string, line: number): number {
    if (raw === undefined) return dflt;
    if (typeof raw === 'number') {
      if (!Number.isSafeInteger(raw) || raw < 0 || raw > 0xffffffff) this.fail(line, `bad ${field} ${raw}: flags are a non-negative 32-bit integer`);
      return raw;
    }
    let v = 0;
    for (const part0 of raw.split('|')) {
      const part = part0.trim();
      if (part === '') continue;
      const known = table[part];
      if (known !== undefined) { v = (v | known) >>> 0; continue; }
      if (/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(part) && Number(part) <= 0xffffffff) { v = (v | Number(part)) >>> 0; continue; }
      for (const [otherKind, other] of [['protection', PROT_NAMES], ['mmap flag', MAP_NAMES], ['mremap flag', MREMAP_NAMES]] as const) {
        if (other !== table && part in other) this.fail(line, `"${part}" is a ${otherKind}, not a ${kind} (in "${field}")`);
      }
      this.fail(line, `unknown ${kind} "${part}" in "${field}"${didYouMean(part, Object.keys(table))} (known: ${Object.keys(table).join(', ')})`);
    }
    return v;
  }

  expect(raw: number | string | undefined, dflt: Expect, line: number): Expect {
    if (raw === undefined) return dflt;
    if (raw === 'ok') return { kind: 'ok' };
    if (typeof raw === 'string' && /^-?E[A-Z0-9]+$/.test(raw.trim())) {
      const name = raw.trim().replace(/^-/, '');
      const errno = errnoByName(name);
      if (errno === undefined) {
        this.fail(line, `unknown errno "${raw}" in "expect"${didYouMean(name, Object.values(ERRNO_NAMES))} (or use "ok" or a number)`);
      }
      return { kind: 'errno', errno: errno!, name };
    }
    return { kind: 'value', expr: this.num(raw, 'expect', line) };
  }

  assign(name: string | undefined, line: number, thread: number): string | undefined {
    if (name === undefined) return undefined;
    if (!/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(name)) this.fail(line, `bad variable name "${name}" in "as": use "$" and a name, like "$a" or "$old_base"`);
    if (!this.varSlots.has(name)) {
      if (this.varSlots.size >= kMaxVars) this.fail(line, `too many variables (kMaxVars = ${kMaxVars}, one 8-byte slot each in the vars page)`);
      this.varSlots.set(name, this.varSlots.size);
    }
    const setters = this.varSetters.get(name) ?? [];
    setters.push({ line, thread });
    this.varSetters.set(name, setters);
    return name;
  }

  pattern(raw: string | number | undefined, line: number): Pattern {
    if (raw === undefined || raw === 'tag') return { kind: 'tag' };
    if (raw === 'zero') return { kind: 'zero' };
    if (typeof raw === 'number') {
      if (!Number.isInteger(raw) || raw < 0 || raw > 255) this.fail(line, `bad pattern ${raw}: a byte pattern is an integer 0..255`);
      return raw === 0 ? { kind: 'zero' } : { kind: 'byte', byte: raw };
    }
    return this.fail(line, `unknown pattern "${raw}"${didYouMean(raw, ['tag', 'zero'])} (patterns: "tag", "zero", or a byte 0..255)`);
  }

  region(name: string | undefined, line: number): string {
    const r = name ?? 'main';
    const id = regionId(r);
    const had = this.regionNames.get(id);
    if (had !== undefined && had !== r) this.fail(line, `region names "${had}" and "${r}" hash to the same tag id; rename one`);
    this.regionNames.set(id, r);
    return r;
  }

  touchAccess(raw: string | undefined, line: number): TouchAccess {
    if (raw === undefined) return 'read';
    const a = TOUCH_ACCESSES.find((x) => x === raw);
    if (a === undefined) this.fail(line, `unknown access "${raw}" in "access"${didYouMean(raw, TOUCH_ACCESSES)} (accesses: ${TOUCH_ACCESSES.join(', ')})`);
    return a!;
  }

  probeState(raw: string, line: number): ProbeState {
    const s = PROBE_STATES.find((x) => x === raw);
    if (s === undefined) this.fail(line, `unknown probe state "${raw}"${didYouMean(raw, PROBE_STATES)} (states: ${PROBE_STATES.join(', ')})`);
    return s!;
  }
}

const lit = (v: number): NumExpr => ({ text: String(v), terms: [{ sign: 1, lit: v, vars: [] }] });
const constValue = (e: NumExpr): number | undefined =>
  e.terms.every((t) => t.vars.length === 0) ? e.terms.reduce((s, t) => s + t.sign * t.lit, 0) : undefined;

function compileStep(p: Parser, op: Op, obj: Record<string, unknown>, line: number, barrierOrdinal: number): Step {
  const what = `a ${op} step`;
  const common = (d: { thread?: number; repeat?: number }) => ({ line, thread: d.thread ?? 0, repeat: d.repeat ?? 1 });
  switch (op) {
    case 'mmap': {
      const d = p.validate(STEP_SCHEMAS.mmap, obj, what, line);
      const c = common(d);
      const addr = d.addr === undefined ? lit(0) : p.num(d.addr, 'addr', line);
      const flags = p.flags(d.flags, MAP_PRIVATE | MAP_ANONYMOUS, MAP_NAMES, 'mmap flag', 'flags', line);
      const dflt: Expect = flags & MAP_FIXED ? { kind: 'value', expr: addr } : { kind: 'ok' };
      return {
        ...c, op, addr, len: p.num(d.len, 'len', line),
        prot: p.flags(d.prot, PROT_READ | PROT_WRITE, PROT_NAMES, 'protection', 'prot', line), flags,
        fd: d.fd === undefined ? lit(-1) : p.num(d.fd, 'fd', line),
        offset: d.offset === undefined ? lit(0) : p.num(d.offset, 'offset', line),
        as: p.assign(d.as, line, c.thread), expect: p.expect(d.expect, dflt, line),
      };
    }
    case 'munmap': {
      const d = p.validate(STEP_SCHEMAS.munmap, obj, what, line);
      const c = common(d);
      return {
        ...c, op, addr: p.num(d.addr, 'addr', line), len: p.num(d.len, 'len', line),
        as: p.assign(d.as, line, c.thread), expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'mprotect': {
      const d = p.validate(STEP_SCHEMAS.mprotect, obj, what, line);
      const c = common(d);
      return {
        ...c, op, addr: p.num(d.addr, 'addr', line), len: p.num(d.len, 'len', line),
        prot: p.flags(d.prot, 0, PROT_NAMES, 'protection', 'prot', line),
        as: p.assign(d.as, line, c.thread), expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'mremap': {
      const d = p.validate(STEP_SCHEMAS.mremap, obj, what, line);
      const c = common(d);
      const flags = p.flags(d.flags, 0, MREMAP_NAMES, 'mremap flag', 'flags', line);
      const newAddr = d.new_addr === undefined ? undefined : p.num(d.new_addr, 'new_addr', line);
      const dflt: Expect = flags & MREMAP_FIXED && newAddr ? { kind: 'value', expr: newAddr } : { kind: 'ok' };
      return {
        ...c, op, addr: p.num(d.addr, 'addr', line), oldLen: p.num(d.old_len, 'old_len', line),
        newLen: p.num(d.new_len, 'new_len', line), flags, newAddr,
        as: p.assign(d.as, line, c.thread), expect: p.expect(d.expect, dflt, line),
      };
    }
    case 'brk': {
      const d = p.validate(STEP_SCHEMAS.brk, obj, what, line);
      const c = common(d);
      const addr = p.num(d.addr, 'addr', line);
      // brk reports failure by returning the old break, so by default a request must yield exactly itself.
      const dflt: Expect = constValue(addr) === 0 ? { kind: 'ok' } : { kind: 'value', expr: addr };
      return { ...c, op, addr, as: p.assign(d.as, line, c.thread), expect: p.expect(d.expect, dflt, line) };
    }
    case 'fill':
    case 'check': {
      const d = op === 'fill' ? p.validate(STEP_SCHEMAS.fill, obj, what, line) : p.validate(STEP_SCHEMAS.check, obj, what, line);
      const writer = 'writer' in d && typeof d.writer === 'number' ? d.writer : undefined;
      const base = {
        ...common(d), addr: p.num(d.addr, 'addr', line), len: p.num(d.len, 'len', line),
        pattern: p.pattern(d.pattern, line), gen: d.gen ?? 0, region: p.region(d.region, line),
        page: d.page === undefined ? lit(0) : p.num(d.page, 'page', line),
      };
      p.literalUserRange(base.addr, base.len, true, line);
      if (op === 'fill') return { ...base, op };
      return { ...base, op, writer };
    }
    case 'probe': {
      const d = p.validate(STEP_SCHEMAS.probe, obj, what, line);
      const addr = p.num(d.addr, 'addr', line);
      const len = p.num(d.len, 'len', line);
      let expectProbe: ProbeRun[] | undefined;
      if (typeof d.expect_probe === 'string') {
        expectProbe = [{ len, state: p.probeState(d.expect_probe, line) }];
      } else if (d.expect_probe) {
        expectProbe = d.expect_probe.map((r, i) => {
          if ((r.pages === undefined) === (r.len === undefined)) {
            p.fail(line, `expect_probe[${i}] needs exactly one of "pages" or "len"`);
          }
          return {
            state: p.probeState(r.state, line),
            ...(r.pages !== undefined ? { pages: p.num(r.pages, `expect_probe[${i}].pages`, line) } : {}),
            ...(r.len !== undefined ? { len: p.num(r.len, `expect_probe[${i}].len`, line) } : {}),
          };
        });
      }
      p.literalUserRange(addr, len, true, line);
      return { ...common(d), op, addr, len, expectProbe };
    }
    case 'touch': {
      const d = p.validate(STEP_SCHEMAS.touch, obj, what, line);
      const addr = p.num(d.addr, 'addr', line);
      const len = d.len === undefined ? lit(1) : p.num(d.len, 'len', line);
      p.literalUserRange(addr, len, false, line);
      return { ...common(d), op, addr, len, access: p.touchAccess(d.access, line) };
    }
    case 'barrier': {
      const d = p.validate(STEP_SCHEMAS.barrier, obj, what, line);
      return { ...common(d), op, label: d.id === undefined ? String(barrierOrdinal) : String(d.id), ordinal: barrierOrdinal };
    }
  }
}

/** [addr, addr+len) of a step, when both are literals (for the control-region overlap check). */
function literalRanges(s: Step): Array<[number, number]> {
  const r = (a: NumExpr | undefined, l: NumExpr): Array<[number, number]> => {
    const av = a && constValue(a);
    const lv = constValue(l);
    return av !== undefined && lv !== undefined && lv > 0 ? [[av, av + lv]] : [];
  };
  switch (s.op) {
    case 'mmap': return s.flags & MAP_FIXED ? r(s.addr, s.len) : [];
    case 'munmap': case 'mprotect': case 'fill': case 'check': case 'probe': case 'touch': return r(s.addr, s.len);
    case 'mremap': return [...r(s.addr, s.oldLen), ...(s.newAddr ? r(s.newAddr, s.newLen) : [])];
    case 'brk': case 'barrier': return [];
  }
}

/**
 * Parse and validate a scenario. Throws ScenarioError (one line: `file:line: what`) for anything that
 * would make the run meaningless: bad JSON, unknown ops/fields/flags/errnos, bad numbers, threads out of
 * range, variables never assigned, barriers some thread never reaches, overlap with the control region.
 */
export function parseScenario(text: string, fileName: string): Scenario {
  const p = new Parser(fileName);
  let header: { line: number; name: string; description?: string; threads?: number; ctl?: NumExpr } | undefined;
  const steps: Step[] = [];
  const barrierCount = new Map<number, number>();
  let seenObject = false;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const src = lines[i]!.trim();
    if (src === '' || src.startsWith('#')) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(src);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      p.fail(line, `invalid JSON: ${msg} (each line is one complete JSON object; comment lines start with #)`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      p.fail(line, `expected a JSON object like {"thread": 0, "op": "mmap", ...}, got ${Array.isArray(obj) ? 'an array' : JSON.stringify(obj)}`);
    }
    const rec = obj as Record<string, unknown>;
    if ('scenario' in rec) {
      if (seenObject) p.fail(line, 'the header {"scenario": ...} must be the first JSON line of the file');
      const h = p.validate(zHeader, rec, 'the header', line);
      header = { line, name: h.scenario, description: h.description, threads: h.threads, ctl: h.ctl === undefined ? undefined : p.num(h.ctl, 'ctl', line) };
      seenObject = true;
      continue;
    }
    seenObject = true;
    const op = rec.op;
    if (typeof op !== 'string') p.fail(line, `a step needs "op" (one of ${OPS.join(', ')})`);
    const known = OPS.find((o) => o === op);
    if (known === undefined) p.fail(line, `unknown op "${String(op)}"${didYouMean(String(op), OPS)} (ops: ${OPS.join(', ')})`);
    const t = typeof rec.thread === 'number' ? rec.thread : 0;
    const ordinal = (barrierCount.get(t) ?? 0) + 1;
    const step = compileStep(p, known!, rec, line, ordinal);
    if (step.op === 'barrier') barrierCount.set(step.thread, ordinal);
    steps.push(step);
  }

  const maxThread = steps.reduce((m, s) => Math.max(m, s.thread), 0);
  const threads = header?.threads ?? maxThread + 1;
  for (const s of steps) {
    if (s.thread >= threads) {
      p.fail(s.line, `thread ${s.thread} is out of range: the header declares "threads": ${threads} (threads 0..${threads - 1}); raise "threads" or fix the step`);
    }
  }

  for (const u of p.varUses) {
    if (!p.varSlots.has(u.name)) {
      p.fail(u.line, `unknown variable "${u.name}" in "${u.field}": no step sets it with "as": "${u.name}"${didYouMean(u.name, p.varSlots.keys())}`);
    }
  }

  // Every thread must pass the same barriers in the same order, or the run deadlocks: check it here.
  const perThread: Array<Array<Extract<Step, { op: 'barrier' }>>> = Array.from({ length: threads }, () => []);
  for (const s of steps) if (s.op === 'barrier') perThread[s.thread]!.push(s);
  const barriers = Math.max(...perThread.map((b) => b.length));
  for (let k = 0; k < barriers; k++) {
    const ref = perThread.find((b) => b.length > k)!;
    const b = ref[k]!;
    for (let t = 0; t < threads; t++) {
      const other = perThread[t]![k];
      if (!other) {
        p.fail(b.line, `barrier ${JSON.stringify(b.label)} (barrier #${k + 1} of thread ${b.thread}) is never reached by thread ${t}: every thread must pass every barrier, in the same order, or the others wait forever`);
      }
      if (other!.label !== b.label) {
        p.fail(other!.line, `thread ${t}'s barrier #${k + 1} is ${JSON.stringify(other!.label)} but thread ${b.thread}'s is ${JSON.stringify(b.label)} (line ${b.line}): threads must pass barriers in the same order`);
      }
    }
  }

  let ctlBase = kDefaultCtlBase;
  if (header?.ctl) {
    const v = constValue(header.ctl);
    if (v === undefined || v % PAGE_SIZE !== 0 || v <= 0 || v + ctlRegionSize(threads) > TASK_SIZE) {
      p.fail(header.line, `"ctl" must be a literal page-aligned user address with room for ${hex(ctlRegionSize(threads))} bytes below TASK_SIZE`);
    }
    ctlBase = v!;
  }
  const ctlEnd = ctlBase + ctlRegionSize(threads);
  for (const s of steps) {
    for (const [a, e] of literalRanges(s)) {
      if (a < ctlEnd && e > ctlBase) {
        p.fail(s.line, `[${hex(a)} - ${hex(e)}) overlaps the script's control region [${hex(ctlBase)} - ${hex(ctlEnd)}); move the step's range or set "ctl" in the header`);
      }
    }
  }

  return {
    file: fileName,
    name: header?.name ?? fileName.replace(/^.*\//, '').replace(/\.jsonl$/, ''),
    description: header?.description,
    threads, ctlBase, steps,
    varSlots: p.varSlots, varSetters: p.varSetters, regionNames: p.regionNames, barriers,
  };
}

// ---------------------------------------------------------------------------------------------------
// Running

/** A step that did not do what the scenario expects; caught per step (never a UserSignal). */
class StepFailure extends Error {}

type OutValue = string | number | boolean | string[];

const fmtRet = (v: number): string | number => (v >= 0x10000 ? hex(v) : v);
const describeRet = (v: number): string => {
  const e = errnoName(v);
  return e !== undefined ? `${e} (${v})` : String(fmtRet(v));
};
const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`;

/** Per-thread interpreter state. All cross-thread data (variables, stats) lives in emulated memory. */
class ScriptThread {
  steps = 0;
  failures = 0;
  private readonly area: number;
  private readonly out: number;

  constructor(
    readonly u: UserContext,
    readonly sc: Scenario,
    readonly t: number,
  ) {
    this.area = threadArea(sc.ctlBase, t);
    this.out = this.area + PAGE_SIZE;
  }

  loadVar(name: string, field: string): number {
    const slot = this.sc.varSlots.get(name)!;
    const raw = this.u.mmu.load64(this.sc.ctlBase + 8 * slot);
    if (raw === 0) {
      const by = (this.sc.varSetters.get(name) ?? []).map((s) => `line ${s.line} (thread ${s.thread})`).join(', ');
      throw new StepFailure(`variable ${name} in "${field}" is not set: it is set by ${by}; if that step ran it failed, `
        + 'and if it runs on another thread, put a barrier between them');
    }
    return raw - kVarBias;
  }

  storeVar(name: string, v: number): void {
    this.u.mmu.store64(this.sc.ctlBase + 8 * this.sc.varSlots.get(name)!, v + kVarBias);
  }

  eval(e: NumExpr, field: string): number {
    const t0 = e.terms[0]!;
    if (e.terms.length === 1 && t0.vars.length === 0) return t0.sign * t0.lit; // a literal: may be a 64-bit value
    let v = 0;
    for (const term of e.terms) {
      let x = term.lit;
      for (const name of term.vars) x *= this.loadVar(name, field);
      v += term.sign * x;
    }
    if (!Number.isSafeInteger(v)) throw new StepFailure(`"${field}" = ${e.text} is not a safe integer (${v})`);
    return v;
  }

  /** Page-aligned address and page count of a fill/check/probe range. */
  pages(addrE: NumExpr, lenE: NumExpr): { addr: number; n: number } {
    const addr = this.eval(addrE, 'addr');
    const len = this.eval(lenE, 'len');
    if (addr < 0 || addr % PAGE_SIZE !== 0) throw new StepFailure(`addr ${hex(addr)} is not a page-aligned user address`);
    if (len <= 0) throw new StepFailure(`len ${len} must be positive`);
    return { addr, n: Math.ceil(len / PAGE_SIZE) };
  }

  classify(va: number): ProbeState {
    const si = this.u.mmu.probeSiCode(va, false);
    if (si !== 0) return si === SEGV_ACCERR ? 'none' : 'unmapped';
    return this.u.mmu.probe(va, true) ? 'writable' : 'readonly';
  }

  emit(out: Record<string, OutValue>): void {
    const bytes = new TextEncoder().encode(`${JSON.stringify(out)}\n`);
    const cap = kOutPages * PAGE_SIZE;
    for (let off = 0; off < bytes.length;) {
      const n = Math.min(cap, bytes.length - off);
      this.u.mmu.write(this.out, bytes, off, n);
      const w = this.u.sys.write(STDOUT_FILENO, this.out, n);
      if (w <= 0) return; // stdout is gone; the stats in memory still count the step
      off += w;
    }
  }

  recordFailure(line: number, msg: string): void {
    this.failures++;
    const mmu = this.u.mmu;
    mmu.store64(this.area + kStatFailures, this.failures);
    if (this.failures > 1) return;
    const bytes = new TextEncoder().encode(msg).subarray(0, PAGE_SIZE - kStatMsg);
    mmu.write(this.area + kStatMsg, bytes);
    mmu.store64(this.area + kStatMsgLen, bytes.length);
    mmu.store64(this.area + kStatFirstLine, line);
  }

  finish(out: Record<string, OutValue>, error: string | undefined, line: number): void {
    this.steps++;
    this.u.mmu.store64(this.area + kStatSteps, this.steps);
    out.ok = error === undefined;
    if (error !== undefined) {
      out.error = error;
      this.recordFailure(line, error);
    }
    this.emit(out);
  }

  run(step: Exclude<Step, { op: 'barrier' }>, rep: number): void {
    const out: Record<string, OutValue> = { line: step.line, thread: this.t, op: step.op };
    if (step.repeat > 1) out.rep = rep;
    let error: string | undefined;
    try {
      this.exec(step, out);
    } catch (e) {
      if (!(e instanceof StepFailure)) throw e;
      error = e.message;
    }
    this.finish(out, error, step.line);
  }

  barrierDone(step: Extract<Step, { op: 'barrier' }>, ret: number): void {
    const out: Record<string, OutValue> = { line: step.line, thread: this.t, op: 'barrier', id: step.label, ret: fmtRet(ret) };
    this.finish(out, ret < 0 ? `barrier returned ${describeRet(ret)}` : undefined, step.line);
  }

  private exec(step: Exclude<Step, { op: 'barrier' }>, out: Record<string, OutValue>): void {
    const { sys } = this.u;
    switch (step.op) {
      case 'mmap':
        return this.syscall(step, out, () => sys.mmap(
          this.eval(step.addr, 'addr'), this.eval(step.len, 'len'), step.prot, step.flags,
          this.eval(step.fd, 'fd'), this.eval(step.offset, 'offset')));
      case 'munmap':
        return this.syscall(step, out, () => sys.munmap(this.eval(step.addr, 'addr'), this.eval(step.len, 'len')));
      case 'mprotect':
        return this.syscall(step, out, () => sys.mprotect(this.eval(step.addr, 'addr'), this.eval(step.len, 'len'), step.prot));
      case 'mremap':
        return this.syscall(step, out, () => sys.mremap(
          this.eval(step.addr, 'addr'), this.eval(step.oldLen, 'old_len'), this.eval(step.newLen, 'new_len'), step.flags,
          step.newAddr ? this.eval(step.newAddr, 'new_addr') : undefined));
      case 'brk':
        return this.syscall(step, out, () => sys.brk(this.eval(step.addr, 'addr')));
      case 'fill': return this.fill(step, out);
      case 'check': return this.check(step, out);
      case 'probe': return this.probe(step, out);
      case 'touch': return this.touch(step, out);
    }
  }

  private syscall(step: Extract<Step, { expect: Expect }>, out: Record<string, OutValue>, call: () => number): void {
    const ret = call();
    out.ret = fmtRet(ret);
    const e = errnoName(ret);
    if (e !== undefined) out.errno = e;
    let ok: boolean;
    let want: string;
    switch (step.expect.kind) {
      case 'ok': ok = ret >= 0; want = 'ok'; out.expect = want; break;
      case 'errno': ok = ret === -step.expect.errno; want = step.expect.name; out.expect = want; break;
      case 'value': {
        const v = this.eval(step.expect.expr, 'expect');
        ok = ret === v;
        out.expect = fmtRet(v);
        want = v < 0 ? describeRet(v) : hex(v);
        break;
      }
    }
    if (!ok) {
      throw new StepFailure(`${step.op} returned ${describeRet(ret)}, expected ${want === 'ok' ? 'success' : want}`);
    }
    if (step.as !== undefined) this.storeVar(step.as, ret);
  }

  private fill(step: Extract<Step, { op: 'fill' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    out.range = `[${hex(addr)} - ${hex(addr + n * PAGE_SIZE)})`;
    const page0 = this.eval(step.page, 'page');
    const id = regionId(step.region);
    const { mmu } = this.u;
    out.pages = n;
    for (let i = 0; i < n; i++) {
      const va = addr + i * PAGE_SIZE;
      // Probe first so that a missing or read-only page is a step failure, not a SIGSEGV of the run.
      if (!mmu.probe(va, true)) {
        throw new StepFailure(`page at ${hex(va)} (page ${i} of the range) is ${this.classify(va)}, cannot fill it`);
      }
      if (step.pattern.kind === 'tag') {
        writeTaggedPage(mmu, va, { region: id, page: page0 + i, generation: step.gen, thread: this.t });
      } else {
        mmu.fill(va, step.pattern.kind === 'zero' ? 0 : step.pattern.byte, PAGE_SIZE);
      }
    }
  }

  private check(step: Extract<Step, { op: 'check' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    out.range = `[${hex(addr)} - ${hex(addr + n * PAGE_SIZE)})`;
    const page0 = this.eval(step.page, 'page');
    const id = regionId(step.region);
    const { mmu } = this.u;
    const buf = new Uint8Array(PAGE_SIZE);
    let bad = 0;
    let first = '';
    out.pages = n;
    for (let i = 0; i < n; i++) {
      const va = addr + i * PAGE_SIZE;
      let want: string;
      if (step.pattern.kind === 'tag') {
        want = `region ${step.region} page ${page0 + i} generation ${step.gen}`
          + (step.writer !== undefined ? ` written by thread ${step.writer}` : '');
      } else {
        want = step.pattern.kind === 'zero' ? 'zeros' : `bytes ${hex(step.pattern.byte)} throughout`;
      }
      let got: string | undefined;
      const si = mmu.probeSiCode(va, false);
      if (si !== 0) {
        got = si === SEGV_ACCERR ? 'is none (PROT_NONE)' : 'is unmapped';
      } else {
        mmu.read(va, buf);
        const c = decodePageTag(buf);
        let good: boolean;
        if (step.pattern.kind === 'tag') {
          good = c.kind === 'tag' && c.intact && c.tag.region === id && c.tag.page === page0 + i
            && c.tag.generation === step.gen && (step.writer === undefined || c.tag.thread === step.writer);
        } else if (step.pattern.kind === 'zero') {
          good = c.kind === 'zeros';
        } else {
          good = c.kind === 'byte' && c.byte === step.pattern.byte;
        }
        if (!good) got = `holds ${describePageContent(c, this.sc.regionNames)}`;
      }
      if (got !== undefined && bad++ === 0) first = `page at ${hex(va)} (page ${i} of the range) ${got}, expected ${want}`;
    }
    if (bad > 0) throw new StepFailure(`${bad} of ${plural(n, 'page')} wrong; first: ${first}`);
  }

  /**
   * Plain loads or stores, like a C program dereferencing a pointer: no probe first, so an access the
   * kernel cannot resolve raises SIGSEGV (a UserSignal, not a StepFailure) and kills the process. Touches
   * `addr` and then the first byte of every later page that starts in [addr, addr+len). A write stores 0.
   * The step's line is printed only after every access succeeded.
   */
  private touch(step: Extract<Step, { op: 'touch' }>, out: Record<string, OutValue>): void {
    const addr = this.eval(step.addr, 'addr');
    const len = this.eval(step.len, 'len');
    if (len <= 0) throw new StepFailure(`len ${len} must be positive`);
    if (addr < 0 || addr + len > TASK_SIZE) {
      throw new StepFailure(`[${hex(addr)} - ${hex(addr + len)}) is not a user range (below TASK_SIZE ${hex(TASK_SIZE)})`);
    }
    out.range = `[${hex(addr)} - ${hex(addr + len)})`;
    out.access = step.access;
    const { mmu } = this.u;
    for (let va = addr; va < addr + len; va = (Math.floor(va / PAGE_SIZE) + 1) * PAGE_SIZE) {
      if (step.access === 'write') mmu.store8(va, 0);
      else mmu.load8(va);
    }
  }

  private probe(step: Extract<Step, { op: 'probe' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    const states: ProbeState[] = [];
    for (let i = 0; i < n; i++) states.push(this.classify(addr + i * PAGE_SIZE));
    const runs: string[] = [];
    for (let i = 0; i < n;) {
      let j = i + 1;
      while (j < n && states[j] === states[i]) j++;
      runs.push(`[${hex(addr + i * PAGE_SIZE)} - ${hex(addr + j * PAGE_SIZE)}) ${states[i]}`);
      i = j;
    }
    out.probe = runs;
    if (!step.expectProbe) return;
    const want: ProbeState[] = [];
    step.expectProbe.forEach((r, k) => {
      const pages = r.pages ? this.eval(r.pages, `expect_probe[${k}].pages`) : Math.ceil(this.eval(r.len!, `expect_probe[${k}].len`) / PAGE_SIZE);
      for (let i = 0; i < pages && want.length <= n; i++) want.push(r.state);
    });
    if (want.length !== n) {
      throw new StepFailure(`expect_probe describes ${plural(want.length, 'page')} but the range has ${n}`);
    }
    const i = states.findIndex((s, k) => s !== want[k]);
    if (i >= 0) {
      throw new StepFailure(`page at ${hex(addr + i * PAGE_SIZE)} (page ${i} of the range) is ${states[i]}, expected ${want[i]}`);
    }
  }
}

/**
 * Run scenario thread `t`'s steps. Yields at each barrier the barrier's ordinal (a kernel barrier id,
 * all threads take part) and expects sys.barrier's return value back; returns the number of failures.
 * The program drives it with real barriers; tests can drive several of them round-robin.
 */
export function* runScriptThread(u: UserContext, sc: Scenario, t: number): Generator<number, number, number> {
  const st = new ScriptThread(u, sc, t);
  for (const step of sc.steps) {
    if (step.thread !== t) continue;
    if (step.op === 'barrier') {
      const ret = yield step.ordinal;
      st.barrierDone(step, ret);
      continue;
    }
    for (let rep = 0; rep < step.repeat; rep++) st.run(step, rep);
  }
  return st.failures;
}

function driveWithBarriers(u: UserContext, sc: Scenario, t: number): number {
  const g = runScriptThread(u, sc, t);
  for (let r = g.next(0); ; ) {
    if (r.done) return r.value;
    r = g.next(u.sys.barrier(r.value, sc.threads));
  }
}

/** Map the control region (main, before starting threads). Returns 0 or -errno. */
export function mapScriptControl(u: UserContext, sc: Scenario): number {
  const ret = u.sys.mmap(sc.ctlBase, ctlRegionSize(sc.threads), PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  return ret === sc.ctlBase ? 0 : ret < 0 ? ret : -1;
}

export interface ScriptReport {
  kind: 'script';
  scenario: string;
  file: string;
  threads: number;
  steps: number;
  failures: number;
  firstFailure?: { line: number; thread: number; message: string };
}

/** Read every thread's stats from the control region (main, after joining the threads). */
export function collectScriptReport(u: UserContext, sc: Scenario): ScriptReport {
  const report: ScriptReport = { kind: 'script', scenario: sc.name, file: sc.file, threads: sc.threads, steps: 0, failures: 0 };
  for (let t = 0; t < sc.threads; t++) {
    const a = threadArea(sc.ctlBase, t);
    const failures = u.mmu.load64(a + kStatFailures);
    report.steps += u.mmu.load64(a + kStatSteps);
    report.failures += failures;
    if (failures === 0) continue;
    const line = u.mmu.load64(a + kStatFirstLine);
    if (report.firstFailure && report.firstFailure.line <= line) continue;
    const msg = new Uint8Array(Math.min(u.mmu.load64(a + kStatMsgLen), PAGE_SIZE - kStatMsg));
    u.mmu.read(a + kStatMsg, msg);
    report.firstFailure = { line, thread: t, message: new TextDecoder().decode(msg) };
  }
  return report;
}

/** Print a message on stderr from a scratch page (used before the control region exists). */
function printErr(u: UserContext, msg: string): void {
  const bytes = new TextEncoder().encode(`${msg}\n`).subarray(0, PAGE_SIZE);
  const va = u.sys.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va < 0) return;
  u.mmu.write(va, bytes);
  u.sys.write(STDERR_FILENO, va, bytes.length);
  u.sys.munmap(va, PAGE_SIZE);
}

export const scriptProgram: Program = {
  name: 'script',
  main(u, argv) {
    const file = argv[1] ?? '<scenario>';
    let sc: Scenario;
    try {
      sc = parseScenario(argv[0] ?? '', file);
    } catch (e) {
      if (!(e instanceof ScenarioError)) throw e;
      printErr(u, e.message);
      u.report({ kind: 'script', scenario: '', file, threads: 0, steps: 0, failures: 1, firstFailure: { line: e.line, thread: 0, message: e.message } });
      return 2;
    }
    const fail = (message: string): number => {
      printErr(u, `${file}: ${message}`);
      u.report({ kind: 'script', scenario: sc.name, file, threads: sc.threads, steps: 0, failures: 1, firstFailure: { line: 0, thread: 0, message } });
      return 1;
    };
    const mapped = mapScriptControl(u, sc);
    if (mapped !== 0) return fail(`cannot map the control region at ${hex(sc.ctlBase)}: mmap returned ${describeRet(mapped)}`);
    const tids: number[] = [];
    for (let t = 1; t < sc.threads; t++) {
      const tid = u.sys.clone('script-thread', t);
      // Threads already started would wait at the first barrier forever; a failed clone is fatal anyway.
      if (tid < 0) return fail(`clone of scenario thread ${t} failed: ${describeRet(tid)}`);
      tids.push(tid);
    }
    driveWithBarriers(u, sc, 0);
    const joinErrors: string[] = [];
    tids.forEach((tid, k) => {
      const r = u.sys.join(tid);
      if (r < 0) joinErrors.push(`join of scenario thread ${k + 1} (tid ${tid}) returned ${describeRet(r)}`);
    });
    const report = collectScriptReport(u, sc);
    for (const msg of joinErrors) {
      report.failures++;
      report.firstFailure ??= { line: 0, thread: 0, message: msg };
    }
    u.report(report);
    return report.failures > 0 ? 1 : 0;
  },
  threads: {
    'script-thread'(u, t) {
      const sc = parseScenario(u.argv[0] ?? '', u.argv[1] ?? '<scenario>');
      return driveWithBarriers(u, sc, t);
    },
  },
};
