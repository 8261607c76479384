// The `script` workload: scenario parsing (one-line errors), page tags, and the shipped traces run on
// the kernel-free fake user context (multi-threaded ones driven barrier by barrier).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, PROT_READ, PROT_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE } from '../src/uapi/abi.ts';
import { UserSignal, type UserContext } from '../src/uapi/program.ts';
import { scriptProgram } from '../src/user/programs/script.ts';
import { ScenarioError } from '../src/user/programs/script/format.ts';
import { mapScriptControl, runScriptThread } from '../src/user/programs/script/interpreter.ts';
import { parseScenario } from '../src/user/programs/script/parser.ts';
import { collectScriptReport, type ScriptReport } from '../src/user/programs/script/report.ts';
import {
  decodePageTag,
  describePageContent,
  encodeTaggedPage,
  regionId,
  writeTaggedPage,
} from '../src/user/programs/script/tags.ts';
import { makeFakeMachine, makeFakeUser, type FakeMachine } from './helpers/fake-user.ts';

const TRACES = join(import.meta.dirname, '..', 'traces');
const traceFiles = readdirSync(TRACES)
  .filter((f) => f.endsWith('.jsonl'))
  .sort();
/** Shipped scenarios that are meant to end in a fatal signal rather than succeed. */
const FATAL_TRACES = ['segfault.jsonl'];
/**
 * Scenarios that test the real kernel's address-space layout, mmap flags and shared pages (aliases,
 * colour), which the fake does not model.
 */
const REAL_KERNEL_ONLY = ['mmap-flags.jsonl', 'shared-alias.jsonl'];
const passingTraces = traceFiles.filter((f) => !FATAL_TRACES.includes(f) && !REAL_KERNEL_ONLY.includes(f));
const readTrace = (f: string): string => readFileSync(join(TRACES, f), 'utf8');

/** The ScenarioError message for `text` (parsed as file "t.jsonl"). */
function parseError(text: string): string {
  try {
    parseScenario(text, 't.jsonl');
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as Error).message;
  }
  throw new Error('expected a ScenarioError');
}

interface Run {
  m: FakeMachine;
  report: ScriptReport;
  lines: Array<Record<string, unknown>>;
}

const outputLines = (m: FakeMachine): Array<Record<string, unknown>> =>
  m.stdout
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Run a scenario through the program's main (single-threaded, or threads without barriers). */
function runMain(
  text: string,
  file = 't.jsonl',
  setup?: (m: FakeMachine, u: UserContext) => void,
  m = makeFakeMachine(),
): Run & { exit: number } {
  m.enforceProt = true;
  m.stdout.length = 0;
  m.reports.length = 0;
  const u = makeFakeUser(m, scriptProgram, 1, [text, file]);
  setup?.(m, u);
  const exit = scriptProgram.main(u, [text, file]);
  expect(m.reports).toHaveLength(1);
  return { m, exit, report: m.reports[0] as ScriptReport, lines: outputLines(m) };
}

/**
 * Run every scenario thread on one fake machine, round-robin from barrier to barrier: all threads run
 * to their next barrier (in index order), then all are released together. Deterministic by design.
 */
function runThreaded(text: string, file: string): Run {
  const m = makeFakeMachine();
  m.enforceProt = true;
  const u = makeFakeUser(m, scriptProgram, 1, [text, file]);
  const sc = parseScenario(text, file);
  expect(mapScriptControl(u, sc)).toBe(0);
  const gens = Array.from({ length: sc.threads }, (_, t) => runScriptThread({ ...u, tid: 1 + t, cpu: t }, sc, t));
  let results = gens.map((g) => g.next(0));
  while (results.some((r) => !r.done)) {
    const waiting = results.filter((r) => !r.done).map((r) => r.value);
    expect(
      results.every((r) => !r.done),
      'a thread finished while others wait at a barrier',
    ).toBe(true);
    expect(new Set(waiting).size, 'threads wait at different barriers').toBe(1);
    results = gens.map((g) => g.next(0));
  }
  return { m, report: collectScriptReport(u, sc), lines: outputLines(m) };
}

describe('parseScenario errors are one line: file:line: what (and how to fix)', () => {
  const H = '{"scenario": "t", "threads": 2}';
  it.each([
    [
      'invalid JSON',
      `${H}\n{"op": "mmap", "len": 4096,}`,
      /^t\.jsonl:2: invalid JSON: .* \(each line is one complete JSON object; comment lines start with #\)$/,
    ],
    [
      'unknown op',
      '# c\n\n{"op": "mremep", "addr": 0}',
      /^t\.jsonl:3: unknown op "mremep"; did you mean "mremap"\? \(ops: mmap, munmap, mprotect, mremap, brk, futex_wait, futex_wake, fill, check, probe, touch, barrier\)$/,
    ],
    [
      'unknown flag',
      '{"op": "mmap", "len": 4096, "flags": "MAP_PRIVTE|MAP_ANONYMOUS"}',
      /^t\.jsonl:1: unknown mmap flag "MAP_PRIVTE" in "flags"; did you mean "MAP_PRIVATE"\? \(known: MAP_SHARED, /,
    ],
  ])('%s', (_name, text, re) => {
    expect(parseError(text)).toMatch(re);
  });

  it('names each problem exactly', () => {
    expect(parseError(`${H}\n{"thread": 2, "op": "brk", "addr": 0}`)).toBe(
      't.jsonl:2: thread 2 is out of range: the header declares "threads": 2 (threads 0..1); raise "threads" or fix the step',
    );
    expect(parseError('{"op": "munmap", "addr": "0x7fffe578800g", "len": 4096}')).toBe(
      't.jsonl:1: bad number "0x7fffe578800g" in "addr" (unexpected "g"): expected an integer like 4096 or "0x1000", ' +
        'a variable "$a", or an expression like "$a+0x1000" or "63*4096"',
    );
    expect(parseError('{"op": "munmap", "addr": 1.5, "len": 4096}')).toBe(
      't.jsonl:1: bad number 1.5 in "addr" (not an integer): expected an integer like 4096 or "0x1000", ' +
        'a variable "$a", or an expression like "$a+0x1000" or "63*4096"',
    );
    expect(
      parseError('{"op": "mmap", "len": 4096, "as": "$base"}\n{"op": "munmap", "addr": "$bse+0x1000", "len": 4096}'),
    ).toBe('t.jsonl:2: unknown variable "$bse" in "addr": no step sets it with "as": "$bse"; did you mean "$base"?');
    expect(parseError('{"op": "mmap", "lenght": 4096}')).toBe(
      't.jsonl:1: unknown field "lenght" in a mmap step; did you mean "len"? ' +
        '(fields: thread, op, repeat, comment, as, expect, addr, len, prot, flags, fd, offset)',
    );
    expect(parseError('{"op": "mremap", "addr": 0, "old_len": 4096}')).toBe('t.jsonl:1: a mremap step needs "new_len"');
    // literal user ranges of memory steps are checked before boot
    expect(parseError('{"op": "fill", "addr": "0x7fffe5788001", "len": 4096}')).toBe(
      't.jsonl:1: "addr" 0x7fffe5788001 is not page-aligned (a multiple of 0x1000)',
    );
    expect(parseError('{"op": "check", "addr": -4096, "len": 4096}')).toBe(
      't.jsonl:1: "addr" -4096 is not a user address (0 to TASK_SIZE 0x7ffffffff000)',
    );
    expect(parseError('{"op": "probe", "addr": 4096, "len": 0}')).toBe('t.jsonl:1: "len" 0 must be positive');
    expect(parseError('{"op": "touch", "addr": "0x800000000000"}')).toBe(
      't.jsonl:1: "addr" 0x800000000000 is not a user address (0 to TASK_SIZE 0x7ffffffff000)',
    );
    // syscall arguments are 64 bits: up to 2^64 - 1 as a literal, exact or refused
    expect(parseError('{"op": "munmap", "addr": 0, "len": "0x10000000000000000"}')).toMatch(
      /bad number "0x10000000000000000" in "len" \(beyond 2\^64 - 1: a syscall argument is 64 bits\)/,
    );
    expect(parseError('{"op": "munmap", "addr": 0, "len": "0x7fffffffffffffff"}')).toMatch(
      /\(a 64-bit value a double cannot hold exactly/,
    );
    expect(parseError('{"op": "munmap", "addr": 0, "len": 18446744073709547521}')).toMatch(
      /beyond 2\^53: a JSON number loses precision there; write a 64-bit value as a hex string/,
    );
    expect(parseScenario('{"op": "munmap", "addr": 0, "len": "0xfffffffffffff001"}', 't.jsonl').steps[0]).toMatchObject(
      { len: { terms: [{ lit: -4095 }] } },
    );
    expect(parseError('{"op": "mmap", "len": 4096, "flags": "MAP_PRIVATE|PROT_READ"}')).toBe(
      't.jsonl:1: "PROT_READ" is a protection, not a mmap flag (in "flags")',
    );
    expect(parseError('{"op": "munmap", "addr": 0, "len": 1, "expect": "EINVALL"}')).toBe(
      't.jsonl:1: unknown errno "EINVALL" in "expect"; did you mean "EINVAL"? (or use "ok" or a number)',
    );
    expect(parseError('{"op": "munmap", "addr": 0, "len": true}')).toBe(
      't.jsonl:1: "len" must be an integer like 4096 or "0x1000", a variable "$a", or an expression like "$a+0x1000" or "63*4096"',
    );
    expect(parseError('{"op": "brk", "addr": 0}\n{"scenario": "late"}')).toBe(
      't.jsonl:2: the header {"scenario": ...} must be the first JSON line of the file',
    );
    expect(parseError('{"op": "probe", "addr": 0, "len": 4096, "expect_probe": "writeable"}')).toBe(
      't.jsonl:1: unknown probe state "writeable"; did you mean "writable"? (states: unmapped, none, readonly, writable)',
    );
    expect(parseError('{"op": "fill", "addr": "0x100000001000", "len": 4096}')).toBe(
      "t.jsonl:1: [0x100000001000 - 0x100000002000) overlaps the script's control region [0x100000000000 - 0x100000006000); " +
        'move the step\'s range or set "ctl" in the header',
    );
    expect(parseError('{"op": "touch", "addr": 0, "acess": "read"}')).toBe(
      't.jsonl:1: unknown field "acess" in a touch step; did you mean "access"? (fields: thread, op, repeat, comment, addr, len, access)',
    );
    expect(parseError('{"op": "touch", "addr": 0, "access": "wirte"}')).toBe(
      't.jsonl:1: unknown access "wirte" in "access"; did you mean "write"? (accesses: read, write)',
    );
    expect(parseError('{"op": "touch", "addr": 0, "access": 1}')).toBe('t.jsonl:1: "access" must be "read" or "write"');
    expect(parseError('{"op": "touch", "len": 1}')).toBe('t.jsonl:1: a touch step needs "addr"');
    expect(parseError('{"op": "touch", "addr": "$p+"}')).toMatch(
      /^t\.jsonl:1: bad number "\$p\+" in "addr" \(an operator needs/,
    );
    expect(parseError('{"op": "touch", "addr": "$p"}')).toBe(
      't.jsonl:1: unknown variable "$p" in "addr": no step sets it with "as": "$p"',
    );
    expect(parseError('{"op": "touch", "addr": "0x100000000ff0", "len": 32}')).toBe(
      "t.jsonl:1: [0x100000000ff0 - 0x100000001010) overlaps the script's control region [0x100000000000 - 0x100000006000); " +
        'move the step\'s range or set "ctl" in the header',
    );
    expect(parseError('[1, 2]')).toBe(
      't.jsonl:1: expected a JSON object like {"thread": 0, "op": "mmap", ...}, got an array',
    );
  });

  it('rejects barriers that some thread never reaches, or passes in another order', () => {
    expect(parseError(`${H}\n{"thread": 0, "op": "barrier"}\n{"thread": 1, "op": "brk", "addr": 0}`)).toBe(
      't.jsonl:2: barrier "1" (barrier #1 of thread 0) is never reached by thread 1: every thread must pass every barrier, ' +
        'in the same order, or the others wait forever',
    );
    expect(
      parseError(
        `${H}\n{"thread": 0, "op": "barrier", "id": "x"}\n{"thread": 0, "op": "barrier", "id": "y"}\n` +
          '{"thread": 1, "op": "barrier", "id": "y"}\n{"thread": 1, "op": "barrier", "id": "x"}',
      ),
    ).toBe(
      't.jsonl:4: thread 1\'s barrier #1 is "y" but thread 0\'s is "x" (line 2): threads must pass barriers in the same order',
    );
  });

  it('parses expressions, flag names and defaults', () => {
    const sc = parseScenario(
      [
        '# comment',
        '{"scenario": "x", "description": "d"}',
        '{"op": "mmap", "len": "63*4096", "as": "$a"}',
        '{"op": "mremap", "addr": "$a", "old_len": "0x3f000", "new_len": "$a-$a+0x1000", "flags": "MREMAP_MAYMOVE|MREMAP_FIXED", "new_addr": "$a+0x100000"}',
        '{"op": "fill", "addr": "$a", "len": 4096, "pattern": 90}',
      ].join('\n'),
      'x.jsonl',
    );
    expect(sc).toMatchObject({ name: 'x', description: 'd', threads: 1, barriers: 0 });
    const [mmap, mremap, fill] = sc.steps;
    expect(mmap).toMatchObject({
      op: 'mmap',
      prot: PROT_READ | PROT_WRITE,
      flags: MAP_PRIVATE | MAP_ANONYMOUS,
      expect: { kind: 'ok' },
    });
    expect(mremap).toMatchObject({ op: 'mremap', flags: 3, expect: { kind: 'value', expr: { text: '$a+0x100000' } } });
    expect(fill).toMatchObject({ op: 'fill', pattern: { kind: 'byte', byte: 90 }, region: 'main', gen: 0 });
    expect(sc.varSlots.get('$a')).toBe(0);
  });

  it('parses touch: access defaults to read, len to 1 byte, addresses are expressions', () => {
    const sc = parseScenario(
      [
        '{"op": "mmap", "len": 4096, "as": "$a"}',
        '{"op": "touch", "addr": "$a+5"}',
        '{"thread": 1, "op": "touch", "addr": "0x600000000000", "len": "3*4096", "access": "write", "repeat": 2}',
      ].join('\n'),
      't.jsonl',
    );
    expect(sc.threads).toBe(2);
    expect(sc.steps[1]).toEqual({
      line: 2,
      thread: 0,
      repeat: 1,
      op: 'touch',
      access: 'read',
      addr: {
        text: '$a+5',
        terms: [
          { sign: 1, lit: 1, vars: ['$a'] },
          { sign: 1, lit: 5, vars: [] },
        ],
      },
      len: { text: '1', terms: [{ sign: 1, lit: 1, vars: [] }] },
    });
    expect(sc.steps[2]).toMatchObject({
      line: 3,
      thread: 1,
      repeat: 2,
      op: 'touch',
      access: 'write',
      len: { text: '3*4096' },
    });
  });
});

describe('page tags', () => {
  it('round-trip through encode/decode and survive a move', () => {
    const tag = { region: regionId('A'), page: 7, generation: 3, thread: 2 };
    const c = decodePageTag(encodeTaggedPage(tag, 0x7fffe5788000 + 7 * PAGE_SIZE));
    expect(c).toEqual({ kind: 'tag', tag, writtenAt: 0x7fffe578f000, intact: true });
    expect(describePageContent(c, new Map([[regionId('A'), 'A']]))).toBe(
      'region A page 7 generation 3 written by thread 2 at 0x7fffe578f000',
    );
    expect(decodePageTag(new Uint8Array(PAGE_SIZE))).toEqual({ kind: 'zeros' });
    expect(decodePageTag(new Uint8Array(PAGE_SIZE).fill(0x5a))).toEqual({ kind: 'byte', byte: 0x5a });
    const torn = encodeTaggedPage(tag, 0);
    torn[1000] = torn[1000]! ^ 1;
    expect(decodePageTag(torn)).toMatchObject({ kind: 'tag', intact: false, firstBadOffset: 1000 });
    const junk = Uint8Array.from({ length: PAGE_SIZE }, (_, i) => i * 7);
    expect(describePageContent(decodePageTag(junk))).toBe(
      'garbage (no valid tag; first bytes 00 07 0e 15 1c 23 2a 31)',
    );
  });

  it('a check identifies a misplaced page by the tag it finds', () => {
    const fill = [
      '{"op": "mmap", "addr": "0x600000000000", "len": "0x4000", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}',
      '{"op": "fill", "addr": "0x600000000000", "len": "0x4000", "region": "A"}',
      '{"op": "mmap", "addr": "0x600000100000", "len": "0x2000", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}',
      '{"op": "fill", "addr": "0x600000100000", "len": "0x2000", "region": "B", "gen": 4}',
      '{"op": "check", "addr": "0x600000100000", "len": "0x2000", "region": "B", "gen": 4, "writer": 1}',
    ].join('\n');
    const first = runMain(fill);
    expect(first.report.failures).toBe(1); // thread 0 wrote B, not thread 1
    expect(first.report.firstFailure?.message).toBe(
      '2 of 2 pages wrong; first: page at 0x600000100000 (page 0 of the range) ' +
        'holds region B page 0 generation 4 written by thread 0 at 0x600000100000, expected region B page 0 generation 4 ' +
        'written by thread 1',
    );
    // a "kernel bug": B's page 1 ends up as A's page 2, and A's page 3 loses its data
    const { m } = first;
    m.pages.set(0x600000002000 / PAGE_SIZE, m.pages.get(0x600000101000 / PAGE_SIZE)!);
    m.pages.get(0x600000003000 / PAGE_SIZE)!.fill(0);
    const check =
      `${'#\n'.repeat(4)}{"op": "check", "addr": "0x600000000000", "len": "0x4000", "region": "A"}\n` +
      '{"op": "fill", "addr": 0, "len": 1, "region": "B"}';
    const { report, lines } = runMain(check, 't.jsonl', undefined, m);
    expect(report.firstFailure).toEqual({
      line: 5,
      thread: 0,
      message:
        '2 of 4 pages wrong; first: page at 0x600000002000 (page 2 of the range) holds region B page 1 generation 4 ' +
        'written by thread 0 at 0x600000101000, expected region A page 2 generation 0',
    });
    expect(lines.at(-2)).toMatchObject({ line: 5, thread: 0, op: 'check', pages: 4, ok: false });
  });
});

describe('running scenarios', () => {
  it('prints one JSON line per executed step, with variables through emulated memory', () => {
    const text = [
      '{"scenario": "vars"}',
      '{"op": "mmap", "len": "0x3000", "as": "$a"}',
      '{"op": "fill", "addr": "$a", "len": "0x3000", "region": "r", "repeat": 2}',
      '{"op": "mremap", "addr": "$a", "old_len": "0x3000", "new_len": "0x3000", "flags": "MREMAP_MAYMOVE|MREMAP_FIXED", "new_addr": "0x7f0000000000", "as": "$b"}',
      '{"op": "check", "addr": "$b", "len": "0x3000", "region": "r"}',
      '{"op": "probe", "addr": "$a", "len": "0x3000"}',
      '{"op": "munmap", "addr": "$a+1", "len": 4096, "expect": "EINVAL"}',
      '{"op": "munmap", "addr": "$b", "len": 4096, "expect": "EINVAL"}',
    ].join('\n');
    const { lines, report, exit, m } = runMain(text, 'vars.jsonl');
    expect(lines).toHaveLength(8);
    expect(lines[0]).toMatchObject({ line: 2, thread: 0, op: 'mmap', expect: 'ok', ok: true });
    expect(lines[1]).toMatchObject({ line: 3, op: 'fill', rep: 0, pages: 3, ok: true });
    expect(lines[3]).toEqual({
      line: 4,
      thread: 0,
      op: 'mremap',
      ret: '0x7f0000000000',
      expect: '0x7f0000000000',
      ok: true,
    });
    expect(lines[5]).toMatchObject({
      op: 'probe',
      probe: [expect.stringMatching(/^\[0x[0-9a-f]+ - 0x[0-9a-f]+\) unmapped$/)],
    });
    expect(lines[6]).toMatchObject({ op: 'munmap', ret: -22, errno: 'EINVAL', expect: 'EINVAL', ok: true });
    expect(lines[7]).toEqual({
      line: 8,
      thread: 0,
      op: 'munmap',
      ret: 0,
      expect: 'EINVAL',
      ok: false,
      error: 'munmap returned 0, expected EINVAL',
    });
    expect(report).toEqual({
      kind: 'script',
      scenario: 'vars',
      file: 'vars.jsonl',
      threads: 1,
      steps: 8,
      failures: 1,
      firstFailure: { line: 8, thread: 0, message: 'munmap returned 0, expected EINVAL' },
    });
    expect(exit).toBe(1);
    // the variables live in the control region's first page
    expect(m.pages.has(0x100000000000 / PAGE_SIZE)).toBe(true);
  });

  it('reading a variable that is not set (its step failed) is a step failure, not a crash', () => {
    const text = [
      '{"op": "mmap", "addr": 1, "len": 4096, "as": "$a"}',
      '{"op": "check", "addr": "$a", "len": 4096, "pattern": "zero"}',
    ].join('\n');
    const { lines, report } = runMain(text);
    expect(lines[0]).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(lines[1]).toMatchObject({
      ok: false,
      error:
        'variable $a in "addr" is not set: it is set by line 1 (thread 0); if that step ran it failed, ' +
        'and if it runs on another thread, put a barrier between them',
    });
    expect(report.failures).toBe(2);
  });

  it('catches a kernel that keeps brk pages across shrink and regrow (brk-shrink-no-zap)', () => {
    const text = readTrace('munmap-brk.jsonl');
    const { report } = runMain(text, 'munmap-brk.jsonl', (m, u) => {
      // a broken brk: the pages a shrink drops come back, with their old data, when the heap regrows
      const brk = u.sys.brk.bind(u.sys);
      const dropped = new Map<number, Uint8Array>();
      u.sys.brk = (addr) => {
        const before = new Map(m.pages);
        const r = brk(addr);
        for (const [vpn, p] of before) if (!m.pages.has(vpn)) dropped.set(vpn, p);
        for (const [vpn, p] of dropped)
          if (m.pages.has(vpn)) {
            m.pages.set(vpn, p);
            dropped.delete(vpn);
          }
        return r;
      };
    });
    expect(report.failures).toBe(1);
    expect(report.firstFailure).toEqual({
      line: 37,
      thread: 0,
      message:
        '2 of 2 pages wrong; first: page at 0x555555562000 (page 0 of the range) holds region heap page 2 ' +
        'generation 0 written by thread 0 at 0x555555562000, expected zeros',
    });
  });

  it('main starts the other threads with clone and sums their stats from the control region', () => {
    const text = [
      '{"scenario": "clone", "threads": 2}',
      '{"thread": 1, "op": "mmap", "addr": "0x530000000000", "len": "0x2000", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}',
      '{"thread": 1, "op": "fill", "addr": "0x530000000000", "len": "0x2000", "region": "t1"}',
      '{"thread": 1, "op": "check", "addr": "0x530000000000", "len": "0x2000", "region": "t1", "writer": 1}',
      '{"thread": 1, "op": "check", "addr": "0x530000000000", "len": "0x2000", "region": "t1", "writer": 0}',
      '{"thread": 0, "op": "brk", "addr": 0}',
    ].join('\n');
    const { report, lines, exit } = runMain(text, 'clone.jsonl');
    expect(lines.map((l) => [l.thread, l.line, l.ok])).toEqual([
      [1, 2, true],
      [1, 3, true],
      [1, 4, true],
      [1, 5, false],
      [0, 6, true],
    ]);
    expect(report).toMatchObject({ threads: 2, steps: 5, failures: 1, firstFailure: { line: 5, thread: 1 } });
    expect(exit).toBe(1);
  });

  it('a bad scenario makes main report the parse error and exit 2', () => {
    const { report, exit, m } = runMain('{"op": "mmap", "len": 4096, "flags": "MAP_PRIVTE"}', 'bad.jsonl');
    expect(exit).toBe(2);
    expect(report.failures).toBe(1);
    expect(report.firstFailure?.message).toMatch(/^bad\.jsonl:1: unknown mmap flag "MAP_PRIVTE"/);
    expect(m.stdout.join('')).toMatch(/^bad\.jsonl:1: unknown mmap flag/);
  });
});

describe('touch: raw accesses that fault for real', () => {
  const A = 0x600000000000;
  const map =
    '{"op": "mmap", "addr": "0x600000000000", "len": "0x3000", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}';

  /** Run main on the fake; returns the UserSignal it died of (or undefined) and the machine. */
  function runToSignal(text: string, file = 't.jsonl'): { m: FakeMachine; sig: UserSignal | undefined } {
    const m = makeFakeMachine();
    m.enforceProt = true;
    const u = makeFakeUser(m, scriptProgram, 1, [text, file]);
    try {
      scriptProgram.main(u, [text, file]);
    } catch (e) {
      if (!(e instanceof UserSignal)) throw e;
      return { m, sig: e };
    }
    return { m, sig: undefined };
  }

  it("a touch of mapped pages succeeds and prints one line; a write stores 0 at each page's first touched byte", () => {
    const text = [
      map.replace(/}$/, ', "as": "$m"}'),
      '{"op": "fill", "addr": "0x600000000000", "len": "0x3000", "pattern": 90}',
      '{"op": "touch", "addr": "0x600000000000"}',
      '{"op": "touch", "addr": "0x600000000010", "len": "0x2000", "access": "write"}',
      '{"op": "touch", "addr": "0x600000002fff", "access": "read", "repeat": 2}',
      '{"op": "touch", "addr": "0x600000000000", "len": "$m-$m"}', // computed: a literal 0 is refused before boot
    ].join('\n');
    const { lines, report, exit, m } = runMain(text);
    expect(lines[2]).toEqual({
      line: 3,
      thread: 0,
      op: 'touch',
      range: '[0x600000000000 - 0x600000000001)',
      access: 'read',
      ok: true,
    });
    expect(lines[3]).toEqual({
      line: 4,
      thread: 0,
      op: 'touch',
      range: '[0x600000000010 - 0x600000002010)',
      access: 'write',
      ok: true,
    });
    expect(lines[4]).toEqual({
      line: 5,
      thread: 0,
      op: 'touch',
      rep: 0,
      range: '[0x600000002fff - 0x600000003000)',
      access: 'read',
      ok: true,
    });
    expect(lines[6]).toEqual({ line: 6, thread: 0, op: 'touch', ok: false, error: 'len 0 must be positive' });
    expect(report).toMatchObject({ steps: 7, failures: 1, firstFailure: { line: 6 } });
    expect(exit).toBe(1);
    // [0x...010, 0x...2010) starts in pages 0, 1 and 2: their first touched bytes are 0x...010, 0x...1000, 0x...2000
    const pg = (i: number): Uint8Array => m.pages.get(A / PAGE_SIZE + i)!;
    expect([pg(0)[0x10], pg(0)[0x11], pg(1)[0], pg(1)[1], pg(2)[0], pg(2)[1]]).toEqual([0, 90, 0, 90, 0, 90]);
    expect(pg(0)[0]).toBe(90);
  });

  it('a touch of an unmapped page throws UserSignal(SIGSEGV) out of the program, printing nothing for the step', () => {
    const { m, sig } = runToSignal(
      [map, '{"op": "touch", "addr": "0x600000000000", "len": "0x4000"}', '{"op": "brk", "addr": 0}'].join('\n'),
    );
    expect(sig).toBeInstanceOf(UserSignal);
    expect(sig).toMatchObject({ signo: 11, addr: A + 3 * PAGE_SIZE });
    expect(outputLines(m).map((l) => l.op)).toEqual(['mmap']); // no line for the faulting touch, nothing after it
    expect(m.reports).toEqual([]);
  });

  it('a write touch of a read-only page is SIGSEGV too; a read touch of it is fine', () => {
    const { m, sig } = runToSignal(
      [
        '{"op": "mmap", "addr": "0x600000000000", "len": "0x1000", "prot": "PROT_READ", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}',
        '{"op": "touch", "addr": "0x600000000000"}',
        '{"op": "touch", "addr": "0x600000000800", "access": "write"}',
      ].join('\n'),
    );
    expect(sig).toMatchObject({ signo: 11, addr: A + 0x800 });
    expect(outputLines(m).map((l) => [l.op, l.ok])).toEqual([
      ['mmap', true],
      ['touch', true],
    ]);
  });

  it('a computed range beyond TASK_SIZE is a step failure, not an access (a literal one is refused before boot)', () => {
    expect(parseError('{"op": "touch", "addr": "0x7fffffffe000", "len": "0x2000"}')).toBe(
      't.jsonl:1: [0x7fffffffe000 - 0x800000000000) is not a user range: it ends above TASK_SIZE 0x7ffffffff000',
    );
    const { lines } = runMain(
      '{"op": "mmap", "len": "0x1000", "as": "$m"}\n{"op": "touch", "addr": "$m-$m+0x7ffffffff000", "len": "0x2000"}',
    );
    expect(lines[1]).toEqual({
      line: 2,
      thread: 0,
      op: 'touch',
      ok: false,
      error: '[0x7ffffffff000 - 0x800000001000) is not a user range (below TASK_SIZE 0x7ffffffff000)',
    });
  });

  it('traces/segfault.jsonl dies at 0x400000000000 after munmap, every step before it ok', () => {
    const { m, sig } = runToSignal(readTrace('segfault.jsonl'), 'segfault.jsonl');
    expect(sig).toMatchObject({ signo: 11, addr: 0x400000000000 });
    const lines = outputLines(m);
    expect(lines.map((l) => l.op)).toEqual(['mmap', 'touch', 'touch', 'probe', 'munmap', 'probe']);
    expect(lines.every((l) => l.ok === true)).toBe(true);
    expect(lines[2]).toEqual({
      line: 17,
      thread: 0,
      op: 'touch',
      range: '[0x400000000000 - 0x400000000001)',
      access: 'read',
      ok: true,
    });
    expect(m.reports).toEqual([]);
  });
});

describe('shipped traces', () => {
  it('are all there', () => {
    expect(traceFiles).toEqual(
      expect.arrayContaining([
        'legoos-mremap-2cpu.jsonl',
        'legoos-mremap.jsonl',
        'mprotect.jsonl',
        'mremap-basics.jsonl',
        'munmap-brk.jsonl',
        'segfault.jsonl',
      ]),
    );
  });

  it.each(traceFiles)('%s parses', (f) => {
    const sc = parseScenario(readTrace(f), f);
    expect(sc.steps.length).toBeGreaterThan(0);
    expect(sc.name).toBe(f.replace(/\.jsonl$/, ''));
  });

  it.each(passingTraces)('%s runs to success on the fake user context', (f) => {
    const text = readTrace(f);
    const sc = parseScenario(text, f);
    const run = sc.threads === 1 ? runMain(text, f) : runThreaded(text, f);
    const bad = run.lines.filter((l) => l.ok !== true);
    expect(bad).toEqual([]);
    expect(run.report.failures).toBe(0);
    expect(run.report.steps).toBe(run.lines.length);
    const expected = sc.steps.reduce((n, s) => n + ('repeat' in s ? s.repeat : 1), 0);
    expect(run.report.steps).toBe(expected);
  });

  it("legoos-mremap prints the moves at the log's addresses", () => {
    const { lines } = runMain(readTrace('legoos-mremap.jsonl'), 'legoos-mremap.jsonl');
    const moves = lines.filter((l) => l.op === 'mremap').map((l) => l.ret);
    expect(moves).toEqual(['0x7fffe531b000', '0x7fffe57c7000']);
    const probes = lines.filter((l) => l.op === 'probe' && JSON.stringify(l.probe).includes('0x7fffe57c7000'));
    expect(probes[0]).toMatchObject({
      op: 'probe',
      probe: ['[0x7fffe5788000 - 0x7fffe57c7000) unmapped', '[0x7fffe57c7000 - 0x7fffe5806000) writable'],
    });
  });

  it('legoos-mremap-2cpu: a mremap that leaves the old range mapped is caught from every CPU', () => {
    const f = 'legoos-mremap-2cpu.jsonl';
    const text = readTrace(f);
    const m = makeFakeMachine();
    m.enforceProt = true;
    const u = makeFakeUser(m, scriptProgram, 1, [text, f]);
    // a broken mremap: copies instead of moving (the old pages stay mapped, like PTEs left behind)
    const mremap = u.sys.mremap.bind(u.sys);
    u.sys.mremap = (oldAddr, oldLen, newLen, flags, newAddr) => {
      const keep = [...m.pages.entries()].filter(
        ([vpn]) => vpn * PAGE_SIZE >= oldAddr && vpn * PAGE_SIZE < oldAddr + oldLen,
      );
      const r = mremap(oldAddr, oldLen, newLen, flags, newAddr);
      for (const [vpn, p] of keep) if (!m.pages.has(vpn)) m.pages.set(vpn, p.slice());
      return r;
    };
    const sc = parseScenario(text, f);
    expect(mapScriptControl(u, sc)).toBe(0);
    const gens = Array.from({ length: sc.threads }, (_, t) => runScriptThread({ ...u, tid: 1 + t }, sc, t));
    let results = gens.map((g) => g.next(0));
    while (results.some((r) => !r.done)) results = gens.map((g) => g.next(0));
    const report = collectScriptReport(u, sc);
    expect(report.failures).toBeGreaterThan(0);
    expect(report.firstFailure?.message).toMatch(/is writable, expected unmapped/);
  });
});

describe('the fake user context (extended for scenarios)', () => {
  it('mremap follows Linux: FIXED replaces the destination, DONTUNMAP leaves zeros, errnos', () => {
    const m = makeFakeMachine();
    const u = makeFakeUser(m);
    const fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    const a = 0x500000000000,
      b = 0x500000100000;
    u.sys.mmap(a, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, fixed, -1, 0);
    u.sys.mmap(b, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, fixed, -1, 0);
    writeTaggedPage(u.mmu, a, { region: 1, page: 0, generation: 0, thread: 0 });
    expect(u.sys.mremap(a, 2 * PAGE_SIZE, 2 * PAGE_SIZE, 3, b + PAGE_SIZE)).toBe(b + PAGE_SIZE);
    expect(m.pages.has(a / PAGE_SIZE)).toBe(false);
    const buf = new Uint8Array(PAGE_SIZE);
    u.mmu.read(b + PAGE_SIZE, buf);
    expect(decodePageTag(buf)).toMatchObject({ kind: 'tag', writtenAt: a });
    expect(u.sys.mremap(b, PAGE_SIZE, PAGE_SIZE, 2, a)).toBe(-22); // FIXED without MAYMOVE
    expect(u.sys.mremap(a, PAGE_SIZE, 2 * PAGE_SIZE, 1)).toBe(-14); // nothing mapped
    expect(u.sys.mremap(b, 2 * PAGE_SIZE, 2 * PAGE_SIZE, 3, b + PAGE_SIZE)).toBe(-22); // overlap
    const d = u.sys.mremap(b + PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, 5);
    expect(d).toBeGreaterThan(0);
    expect(m.pages.get((b + PAGE_SIZE) / PAGE_SIZE)!.every((x) => x === 0)).toBe(true);
    u.mmu.read(d, buf);
    expect(decodePageTag(buf)).toMatchObject({ kind: 'tag' });
  });

  it('protections are tracked always but enforced only with enforceProt', () => {
    const m = makeFakeMachine();
    const u = makeFakeUser(m);
    const va = u.sys.mmap(0, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u.mmu.store8(va, 1); // legacy behaviour: no enforcement
    expect(u.mmu.probe(va, true)).toBe(true);
    m.enforceProt = true;
    expect(u.mmu.probe(va, true)).toBe(false);
    expect(() => u.mmu.store8(va, 1)).toThrow(/protection/);
    expect(u.mmu.load8(va)).toBe(1);
    expect(u.sys.mprotect(va, PAGE_SIZE, 0)).toBe(0);
    expect(u.mmu.probe(va, false)).toBe(false);
  });
});
