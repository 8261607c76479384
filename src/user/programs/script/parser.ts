// Parsing a JSON Lines scenario: every line is checked with zod schemas (STEP_SCHEMAS), numbers are
// compiled to expressions over variables, and every literal range is validated before boot. A bad
// scenario is one ScenarioError naming the file, line and field. No shared state and no lock: each parse
// has its own Parser, so the host (before boot) and every scenario thread may call parseScenario.
import { z } from 'zod';
import {
  ERRNO_NAMES,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NAMES,
  MAP_PRIVATE,
  MREMAP_FIXED,
  MREMAP_NAMES,
  PAGE_SIZE,
  PROT_NAMES,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  errnoByName,
} from '../../../uapi/abi.ts';
import { closest, excerpt } from '../../../lib/text.ts';
import { regionId } from './tags.ts';
import { ctlRegionSize, kDefaultCtlBase, kMaxRepeat, kMaxThreads, kMaxVars } from './layout.ts';
import {
  Expect,
  NumExpr,
  PROBE_STATES,
  Pattern,
  ProbeRun,
  ProbeState,
  Scenario,
  ScenarioError,
  Step,
  TOUCH_ACCESSES,
  TouchAccess,
} from './format.ts';
import { hex } from '../../../lib/text.ts';
import { at } from '../../../lib/at.ts';

export const OPS = [
  'mmap',
  'munmap',
  'mprotect',
  'mremap',
  'brk',
  'futex_wait',
  'futex_wake',
  'fill',
  'check',
  'probe',
  'touch',
  'barrier',
] as const;
export type Op = (typeof OPS)[number];

/** `; did you mean "X"?` for the closest candidate, or '' when nothing is close. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const best = closest(word, candidates, 2);
  return best !== undefined ? `; did you mean "${best}"?` : '';
}

export const kNumHelp =
  'an integer like 4096 or "0x1000", a variable "$a", or an expression like "$a+0x1000" or "63*4096"';
export const zNum = z.union([z.number(), z.string()], { error: `must be ${kNumHelp}` });
export const zFlags = z.union([z.number(), z.string()], {
  error: 'must be flag names like "MAP_PRIVATE|MAP_ANONYMOUS" or a number',
});
export const zExpect = z.union([z.number(), z.string()], {
  error: 'must be "ok", an errno name like "EINVAL", a number, or a variable expression like "$a"',
});
export const zInt = (min: number, max: number, what: string) =>
  z.number({ error: what }).int({ error: what }).min(min, { error: what }).max(max, { error: what });
export const zPattern = z.union([z.string(), z.number()], { error: 'must be "tag", "zero" or a byte value 0..255' });
export const zGen = zInt(0, 2 ** 32 - 1, 'must be an integer from 0 to 4294967295');
export const zRegion = z.string({ error: 'must be a region name (a string)' }).min(1, { error: 'must not be empty' });
export const zVarName = z.string({ error: 'must be a variable name like "$a"' });

export const zCommon = {
  thread: zInt(0, kMaxThreads - 1, `must be a thread index from 0 to ${kMaxThreads - 1}`).optional(),
  op: z.string(),
  repeat: zInt(1, kMaxRepeat, `must be an integer from 1 to ${kMaxRepeat}`).optional(),
  comment: z.string({ error: 'must be a string' }).optional(),
};
export const zSyscall = { as: zVarName.optional(), expect: zExpect.optional() };
export const zRange = { addr: zNum, len: zNum };
export const zPatternFields = {
  pattern: zPattern.optional(),
  gen: zGen.optional(),
  region: zRegion.optional(),
  page: zNum.optional(),
};

export const STEP_SCHEMAS = {
  mmap: z.strictObject({
    ...zCommon,
    ...zSyscall,
    addr: zNum.optional(),
    len: zNum,
    prot: zFlags.optional(),
    flags: zFlags.optional(),
    fd: zNum.optional(),
    offset: zNum.optional(),
  }),
  munmap: z.strictObject({ ...zCommon, ...zSyscall, ...zRange }),
  mprotect: z.strictObject({ ...zCommon, ...zSyscall, ...zRange, prot: zFlags }),
  mremap: z.strictObject({
    ...zCommon,
    ...zSyscall,
    addr: zNum,
    old_len: zNum,
    new_len: zNum,
    flags: zFlags.optional(),
    new_addr: zNum.optional(),
  }),
  brk: z.strictObject({ ...zCommon, ...zSyscall, addr: zNum }),
  futex_wait: z.strictObject({ ...zCommon, ...zSyscall, addr: zNum, val: zNum, timeout_ms: zNum.optional() }),
  futex_wake: z.strictObject({ ...zCommon, ...zSyscall, addr: zNum, count: zNum.optional() }),
  fill: z.strictObject({ ...zCommon, ...zRange, ...zPatternFields }),
  check: z.strictObject({
    ...zCommon,
    ...zRange,
    ...zPatternFields,
    writer: zInt(0, kMaxThreads - 1, 'must be the index of the thread expected to have written the pages').optional(),
  }),
  probe: z.strictObject({
    ...zCommon,
    ...zRange,
    expect_probe: z
      .union(
        [z.string(), z.array(z.strictObject({ pages: zNum.optional(), len: zNum.optional(), state: z.string() }))],
        {
          error:
            'must be a state ("unmapped", "none", "readonly", "writable") or a list of {"pages": n, "state": s} or {"len": n, "state": s} runs',
        },
      )
      .optional(),
  }),
  touch: z.strictObject({
    ...zCommon,
    addr: zNum,
    len: zNum.optional(),
    access: z.string({ error: 'must be "read" or "write"' }).optional(),
  }),
  barrier: z.strictObject({
    thread: zCommon.thread,
    op: zCommon.op,
    comment: zCommon.comment,
    id: z.union([z.number(), z.string()], { error: 'must be a number or a string label' }).optional(),
  }),
} satisfies Record<Op, z.ZodObject>;

export const zHeader = z.strictObject({
  scenario: z.string({ error: 'must be the scenario name (a string)' }).min(1, { error: 'must not be empty' }),
  threads: zInt(1, kMaxThreads, `must be an integer from 1 to ${kMaxThreads}`).optional(),
  description: z.string({ error: 'must be a string' }).optional(),
  ctl: zNum.optional(),
});

/** Parsing state for one file. */
export class Parser {
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
    const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? at(r.error.issues, 0);
    const fields = Object.keys(schema.shape);
    if (issue.code === 'unrecognized_keys') {
      const k = issue.keys[0] ?? '';
      return this.fail(line, `unknown field "${k}" in ${what}${didYouMean(k, fields)} (fields: ${fields.join(', ')})`);
    }
    const field = issue.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
      .join('.')
      .replace(/\.\[/g, '[');
    if (issue.path.length === 1 && !(String(issue.path[0]) in obj)) return this.fail(line, `${what} needs "${field}"`);
    return this.fail(line, `"${field}" ${issue.message}`);
  }

  fail(line: number, what: string): never {
    throw this.error(line, what);
  }

  num(raw: number | string, field: string, line: number): NumExpr {
    // explicitly typed, so that control flow knows a call never returns
    const bad: (why: string) => never = (why) =>
      this.fail(
        line,
        `bad number ${typeof raw === 'string' ? JSON.stringify(excerpt(raw)) : raw} in "${field}"${why}: expected ${kNumHelp}`,
      );
    if (typeof raw === 'number') {
      if (!Number.isSafeInteger(raw))
        bad(
          Number.isInteger(raw)
            ? ' (beyond 2^53: a JSON number loses precision there; write a 64-bit value as a hex string, "0xfffffffffffff001")'
            : ' (not an integer)',
        );
      return { text: String(raw), terms: [{ sign: 1, lit: raw, vars: [] }] };
    }
    // A lone literal is a 64-bit register value: up to 2^64 - 1, passed as its signed 64-bit value
    // (0xfffffffffffff001 is -4095), which the kernel reads back as an unsigned long.
    const lone = /^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*$/.exec(raw);
    if (lone && !Number.isSafeInteger(Number(lone[1]))) {
      const b = BigInt(at(lone, 1));
      if (b >= 2n ** 64n) bad(' (beyond 2^64 - 1: a syscall argument is 64 bits)');
      const signed = BigInt.asIntN(64, b);
      const v = Number(signed);
      if (BigInt(v) !== signed)
        bad(
          ' (a 64-bit value a double cannot hold exactly: splitkern passes syscall arguments as the signed 64-bit value in a double; use one within 2^53 of 0 or of 2^64)',
        );
      return { text: raw.trim(), terms: [{ sign: 1, lit: v, vars: [] }] };
    }
    const tok = /\s*(\$[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9a-fA-F]+|[0-9]+|[-+*])\s*/y;
    const toks: string[] = [];
    let pos = 0;
    while (pos < raw.length) {
      tok.lastIndex = pos;
      const m = tok.exec(raw);
      const t = m?.[1];
      if (t === undefined) bad(` (unexpected "${raw.slice(pos, pos + 8)}")`);
      toks.push(t);
      pos = tok.lastIndex;
    }
    if (toks.length === 0) bad(' (empty)');
    const terms: NumExpr['terms'] = [];
    let i = 0;
    let sign: 1 | -1 = 1;
    if (toks[0] === '-' || toks[0] === '+') {
      sign = toks[0] === '-' ? -1 : 1;
      i++;
    }
    for (;;) {
      const term = { sign, lit: 1, vars: [] as string[] };
      for (;;) {
        const t = toks[i++];
        if (t === undefined || '+-*'.includes(t)) bad(' (an operator needs a number or a variable on each side)');
        if (t.startsWith('$')) {
          term.vars.push(t);
          this.varUses.push({ name: t, line, field });
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
    if (a !== undefined && (a < 0 || a >= TASK_SIZE))
      this.fail(line, `"addr" ${addrE.text} is not a user address (0 to TASK_SIZE ${hex(TASK_SIZE)})`);
    if (a !== undefined && aligned && a % PAGE_SIZE !== 0)
      this.fail(line, `"addr" ${addrE.text} is not page-aligned (a multiple of ${hex(PAGE_SIZE)})`);
    if (l !== undefined && l <= 0) this.fail(line, `"len" ${lenE.text} must be positive`);
    if (a !== undefined && l !== undefined && a + l > TASK_SIZE) {
      this.fail(line, `[${hex(a)} - ${hex(a + l)}) is not a user range: it ends above TASK_SIZE ${hex(TASK_SIZE)}`);
    }
  }

  flags(
    raw: number | string | undefined,
    dflt: number,
    table: Record<string, number>,
    kind: string,
    field: string,
    line: number,
  ): number {
    if (raw === undefined) return dflt;
    if (typeof raw === 'number') {
      if (!Number.isSafeInteger(raw) || raw < 0 || raw > 0xffffffff)
        this.fail(line, `bad ${field} ${raw}: flags are a non-negative 32-bit integer`);
      return raw;
    }
    let v = 0;
    for (const part0 of raw.split('|')) {
      const part = part0.trim();
      if (part === '') continue;
      const known = table[part];
      if (known !== undefined) {
        v = (v | known) >>> 0;
        continue;
      }
      if (/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(part) && Number(part) <= 0xffffffff) {
        v = (v | Number(part)) >>> 0;
        continue;
      }
      for (const [otherKind, other] of [
        ['protection', PROT_NAMES],
        ['mmap flag', MAP_NAMES],
        ['mremap flag', MREMAP_NAMES],
      ] as const) {
        if (other !== table && part in other)
          this.fail(line, `"${part}" is a ${otherKind}, not a ${kind} (in "${field}")`);
      }
      this.fail(
        line,
        `unknown ${kind} "${part}" in "${field}"${didYouMean(part, Object.keys(table))} (known: ${Object.keys(table).join(', ')})`,
      );
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
        this.fail(
          line,
          `unknown errno "${raw}" in "expect"${didYouMean(name, Object.values(ERRNO_NAMES))} (or use "ok" or a number)`,
        );
      }
      return { kind: 'errno', errno: errno, name };
    }
    return { kind: 'value', expr: this.num(raw, 'expect', line) };
  }

  assign(name: string | undefined, line: number, thread: number): string | undefined {
    if (name === undefined) return undefined;
    if (!/^\$[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      this.fail(line, `bad variable name "${name}" in "as": use "$" and a name, like "$a" or "$old_base"`);
    if (!this.varSlots.has(name)) {
      if (this.varSlots.size >= kMaxVars)
        this.fail(line, `too many variables (kMaxVars = ${kMaxVars}, one 8-byte slot each in the vars page)`);
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
      if (!Number.isInteger(raw) || raw < 0 || raw > 255)
        this.fail(line, `bad pattern ${raw}: a byte pattern is an integer 0..255`);
      return raw === 0 ? { kind: 'zero' } : { kind: 'byte', byte: raw };
    }
    return this.fail(
      line,
      `unknown pattern "${raw}"${didYouMean(raw, ['tag', 'zero'])} (patterns: "tag", "zero", or a byte 0..255)`,
    );
  }

  region(name: string | undefined, line: number): string {
    const r = name ?? 'main';
    const id = regionId(r);
    const had = this.regionNames.get(id);
    if (had !== undefined && had !== r)
      this.fail(line, `region names "${had}" and "${r}" hash to the same tag id; rename one`);
    this.regionNames.set(id, r);
    return r;
  }

  touchAccess(raw: string | undefined, line: number): TouchAccess {
    if (raw === undefined) return 'read';
    const a = TOUCH_ACCESSES.find((x) => x === raw);
    if (a === undefined)
      this.fail(
        line,
        `unknown access "${raw}" in "access"${didYouMean(raw, TOUCH_ACCESSES)} (accesses: ${TOUCH_ACCESSES.join(', ')})`,
      );
    return a;
  }

  probeState(raw: string, line: number): ProbeState {
    const s = PROBE_STATES.find((x) => x === raw);
    if (s === undefined)
      this.fail(
        line,
        `unknown probe state "${raw}"${didYouMean(raw, PROBE_STATES)} (states: ${PROBE_STATES.join(', ')})`,
      );
    return s;
  }
}

export const lit = (v: number): NumExpr => ({ text: String(v), terms: [{ sign: 1, lit: v, vars: [] }] });
export const constValue = (e: NumExpr): number | undefined =>
  e.terms.every((t) => t.vars.length === 0) ? e.terms.reduce((s, t) => s + t.sign * t.lit, 0) : undefined;

export function compileStep(
  p: Parser,
  op: Op,
  obj: Record<string, unknown>,
  line: number,
  barrierOrdinal: number,
): Step {
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
        ...c,
        op,
        addr,
        len: p.num(d.len, 'len', line),
        prot: p.flags(d.prot, PROT_READ | PROT_WRITE, PROT_NAMES, 'protection', 'prot', line),
        flags,
        fd: d.fd === undefined ? lit(-1) : p.num(d.fd, 'fd', line),
        offset: d.offset === undefined ? lit(0) : p.num(d.offset, 'offset', line),
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, dflt, line),
      };
    }
    case 'munmap': {
      const d = p.validate(STEP_SCHEMAS.munmap, obj, what, line);
      const c = common(d);
      return {
        ...c,
        op,
        addr: p.num(d.addr, 'addr', line),
        len: p.num(d.len, 'len', line),
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'mprotect': {
      const d = p.validate(STEP_SCHEMAS.mprotect, obj, what, line);
      const c = common(d);
      return {
        ...c,
        op,
        addr: p.num(d.addr, 'addr', line),
        len: p.num(d.len, 'len', line),
        prot: p.flags(d.prot, 0, PROT_NAMES, 'protection', 'prot', line),
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'mremap': {
      const d = p.validate(STEP_SCHEMAS.mremap, obj, what, line);
      const c = common(d);
      const flags = p.flags(d.flags, 0, MREMAP_NAMES, 'mremap flag', 'flags', line);
      const newAddr = d.new_addr === undefined ? undefined : p.num(d.new_addr, 'new_addr', line);
      const dflt: Expect = flags & MREMAP_FIXED && newAddr ? { kind: 'value', expr: newAddr } : { kind: 'ok' };
      return {
        ...c,
        op,
        addr: p.num(d.addr, 'addr', line),
        oldLen: p.num(d.old_len, 'old_len', line),
        newLen: p.num(d.new_len, 'new_len', line),
        flags,
        newAddr,
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, dflt, line),
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
    case 'futex_wait': {
      // FUTEX_WAIT_PRIVATE on the u32 at addr: by default it must be woken (0); a timeout_ms bounds it
      const d = p.validate(STEP_SCHEMAS.futex_wait, obj, what, line);
      const c = common(d);
      return {
        ...c,
        op,
        addr: p.num(d.addr, 'addr', line),
        val: p.num(d.val, 'val', line),
        timeoutMs: d.timeout_ms === undefined ? lit(-1) : p.num(d.timeout_ms, 'timeout_ms', line),
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'futex_wake': {
      // FUTEX_WAKE_PRIVATE: wake up to count waiters (default 1); returns how many it woke
      const d = p.validate(STEP_SCHEMAS.futex_wake, obj, what, line);
      const c = common(d);
      return {
        ...c,
        op,
        addr: p.num(d.addr, 'addr', line),
        count: d.count === undefined ? lit(1) : p.num(d.count, 'count', line),
        as: p.assign(d.as, line, c.thread),
        expect: p.expect(d.expect, { kind: 'ok' }, line),
      };
    }
    case 'fill':
    case 'check': {
      const d =
        op === 'fill'
          ? p.validate(STEP_SCHEMAS.fill, obj, what, line)
          : p.validate(STEP_SCHEMAS.check, obj, what, line);
      const writer = 'writer' in d && typeof d.writer === 'number' ? d.writer : undefined;
      const base = {
        ...common(d),
        addr: p.num(d.addr, 'addr', line),
        len: p.num(d.len, 'len', line),
        pattern: p.pattern(d.pattern, line),
        gen: d.gen ?? 0,
        region: p.region(d.region, line),
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
      return {
        ...common(d),
        op,
        label: d.id === undefined ? String(barrierOrdinal) : String(d.id),
        ordinal: barrierOrdinal,
      };
    }
  }
}

/** [addr, addr+len) of a step, when both are literals (for the control-region overlap check). */
export function literalRanges(s: Step): Array<[number, number]> {
  const r = (a: NumExpr | undefined, l: NumExpr): Array<[number, number]> => {
    const av = a && constValue(a);
    const lv = constValue(l);
    return av !== undefined && lv !== undefined && lv > 0 ? [[av, av + lv]] : [];
  };
  switch (s.op) {
    case 'mmap':
      return s.flags & MAP_FIXED ? r(s.addr, s.len) : [];
    case 'munmap':
    case 'mprotect':
    case 'fill':
    case 'check':
    case 'probe':
    case 'touch':
      return r(s.addr, s.len);
    case 'mremap':
      return [...r(s.addr, s.oldLen), ...(s.newAddr ? r(s.newAddr, s.newLen) : [])];
    case 'brk':
    case 'futex_wait':
    case 'futex_wake':
    case 'barrier':
      return [];
  }
}

/**
 * Parse and validate a scenario. Throws ScenarioError (one line: `file:line: what`) for anything that
 * would make the run meaningless: bad JSON, unknown ops/fields/flags/errnos, bad numbers, threads out of
 * range, variables never assigned, barriers some thread never reaches, overlap with the control region.
 */
export function parseScenario(text: string, fileName: string): Scenario {
  const p: Parser = new Parser(fileName);
  let header: { line: number; name: string; description?: string; threads?: number; ctl?: NumExpr } | undefined;
  const steps: Step[] = [];
  const barrierCount = new Map<number, number>();
  let seenObject = false;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const src = at(lines, i).trim();
    if (src === '' || src.startsWith('#')) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(src);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      p.fail(line, `invalid JSON: ${msg} (each line is one complete JSON object; comment lines start with #)`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      p.fail(
        line,
        `expected a JSON object like {"thread": 0, "op": "mmap", ...}, got ${Array.isArray(obj) ? 'an array' : JSON.stringify(obj)}`,
      );
    }
    const rec = obj as Record<string, unknown>;
    if ('scenario' in rec) {
      if (seenObject) p.fail(line, 'the header {"scenario": ...} must be the first JSON line of the file');
      const h = p.validate(zHeader, rec, 'the header', line);
      header = {
        line,
        name: h.scenario,
        description: h.description,
        threads: h.threads,
        ctl: h.ctl === undefined ? undefined : p.num(h.ctl, 'ctl', line),
      };
      seenObject = true;
      continue;
    }
    seenObject = true;
    const op = rec.op;
    if (typeof op !== 'string') p.fail(line, `a step needs "op" (one of ${OPS.join(', ')})`);
    const known = OPS.find((o) => o === op);
    if (known === undefined)
      p.fail(line, `unknown op "${String(op)}"${didYouMean(String(op), OPS)} (ops: ${OPS.join(', ')})`);
    const t = typeof rec.thread === 'number' ? rec.thread : 0;
    const ordinal = (barrierCount.get(t) ?? 0) + 1;
    const step = compileStep(p, known, rec, line, ordinal);
    if (step.op === 'barrier') barrierCount.set(step.thread, ordinal);
    steps.push(step);
  }

  const maxThread = steps.reduce((m, s) => Math.max(m, s.thread), 0);
  const threads = header?.threads ?? maxThread + 1;
  for (const s of steps) {
    if (s.thread >= threads) {
      p.fail(
        s.line,
        `thread ${s.thread} is out of range: the header declares "threads": ${threads} (threads 0..${threads - 1}); raise "threads" or fix the step`,
      );
    }
  }

  for (const u of p.varUses) {
    if (!p.varSlots.has(u.name)) {
      p.fail(
        u.line,
        `unknown variable "${u.name}" in "${u.field}": no step sets it with "as": "${u.name}"${didYouMean(u.name, p.varSlots.keys())}`,
      );
    }
  }

  // Every thread must pass the same barriers in the same order, or the run deadlocks: check it here.
  const perThread: Array<Array<Extract<Step, { op: 'barrier' }>>> = Array.from({ length: threads }, () => []);
  for (const s of steps) if (s.op === 'barrier') at(perThread, s.thread).push(s);
  const barriers = Math.max(...perThread.map((b) => b.length));
  for (let k = 0; k < barriers; k++) {
    const b = perThread.find((r) => r.length > k)?.[k];
    if (b === undefined) continue; // cannot happen: k is below the longest thread's barrier count
    for (let t = 0; t < threads; t++) {
      const other = at(perThread, t)[k];
      if (!other) {
        p.fail(
          b.line,
          `barrier ${JSON.stringify(b.label)} (barrier #${k + 1} of thread ${b.thread}) is never reached by thread ${t}: every thread must pass every barrier, in the same order, or the others wait forever`,
        );
      }
      if (other.label !== b.label) {
        p.fail(
          other.line,
          `thread ${t}'s barrier #${k + 1} is ${JSON.stringify(other.label)} but thread ${b.thread}'s is ${JSON.stringify(b.label)} (line ${b.line}): threads must pass barriers in the same order`,
        );
      }
    }
  }

  let ctlBase = kDefaultCtlBase;
  if (header?.ctl) {
    const v = constValue(header.ctl);
    if (v === undefined || v % PAGE_SIZE !== 0 || v <= 0 || v + ctlRegionSize(threads) > TASK_SIZE) {
      p.fail(
        header.line,
        `"ctl" must be a literal page-aligned user address with room for ${hex(ctlRegionSize(threads))} bytes below TASK_SIZE`,
      );
    }
    ctlBase = v;
  }
  const ctlEnd = ctlBase + ctlRegionSize(threads);
  for (const s of steps) {
    for (const [a, e] of literalRanges(s)) {
      if (a < ctlEnd && e > ctlBase) {
        p.fail(
          s.line,
          `[${hex(a)} - ${hex(e)}) overlaps the script's control region [${hex(ctlBase)} - ${hex(ctlEnd)}); move the step's range or set "ctl" in the header`,
        );
      }
    }
  }

  return {
    file: fileName,
    name: header?.name ?? fileName.replace(/^.*\//, '').replace(/\.jsonl$/, ''),
    description: header?.description,
    threads,
    ctlBase,
    steps,
    varSlots: p.varSlots,
    varSetters: p.varSetters,
    regionNames: p.regionNames,
    barriers,
  };
}
