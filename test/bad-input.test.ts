// Every bad input is refused before boot: exit 2, one line on stderr that names the field and its
// limit, no stack trace, nothing on stdout, and no machine booted. The table runs the CLI's main()
// in this process (fast); a few cases and the signal tests run the real binary.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/host/cli.ts';
import { bin, repoRoot, runCli } from './helpers/cli.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'splitkern-bad-'));
const fifo = path.join(tmp, 'fifo');
const scen = (name: string, lines: string[]): string => {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
};
const longToken = 'x'.repeat(1_000_000);

/**
 * Every numeric field of every scenario step, each given a wrong type, a fraction, a huge JSON number,
 * a value beyond 64 bits and a very long token; every required field left out; an unknown field; and
 * the memory steps' literal ranges negative and unaligned. Each error must name its field.
 */
function scenarioFieldCases(): Array<[string, string[], RegExp]> {
  const A = '"0x600000000000"';
  const steps: Array<[string, string, string[], string[]]> = [
    // op, a valid step's other fields, its numeric fields, its required fields
    ['mmap', '"len": 4096', ['addr', 'len', 'fd', 'offset'], ['len']],
    ['munmap', `"addr": ${A}, "len": 4096`, ['addr', 'len'], ['addr', 'len']],
    ['mprotect', `"addr": ${A}, "len": 4096, "prot": "PROT_READ"`, ['addr', 'len'], ['addr', 'len', 'prot']],
    [
      'mremap',
      `"addr": ${A}, "old_len": 4096, "new_len": 8192, "flags": "MREMAP_MAYMOVE"`,
      ['addr', 'old_len', 'new_len', 'new_addr'],
      ['addr', 'old_len', 'new_len'],
    ],
    ['brk', '"addr": 0', ['addr'], ['addr']],
    ['fill', `"addr": ${A}, "len": 4096`, ['addr', 'len', 'page'], ['addr', 'len']],
    ['check', `"addr": ${A}, "len": 4096`, ['addr', 'len', 'page'], ['addr', 'len']],
    ['probe', `"addr": ${A}, "len": 4096`, ['addr', 'len'], ['addr', 'len']],
    ['touch', `"addr": ${A}`, ['addr', 'len'], ['addr']],
  ];
  const bad: Array<[string, string]> = [
    ['a wrong type', 'true'],
    ['a fraction', '1.5'],
    ['a huge JSON number', '1e300'],
    ['a value beyond 64 bits', '"0x10000000000000000"'],
    ['a very long token', `"${'7'.repeat(100_000)}"`],
  ];
  const cases: Array<[string, string[], RegExp]> = [];
  const step = (op: string, fields: Record<string, string>, rest: string): string => {
    const own = Object.entries(fields).map(([k, v]) => `"${k}": ${v}`);
    const kept = rest.split(/, (?=")/).filter((kv) => !Object.keys(fields).some((k) => kv.startsWith(`"${k}":`)));
    return `{"op": "${op}", ${[...kept, ...own].filter((x) => x !== '').join(', ')}}`;
  };
  let n = 0;
  const add = (what: string, line: string, re: RegExp): void => {
    cases.push([`a scenario: ${what}`, ['run', 'script', scen(`f${n++}.jsonl`, [line])], re]);
  };
  for (const [op, rest, nums, required] of steps) {
    for (const f of nums)
      for (const [kind, v] of bad)
        add(`${op} "${f}" ${kind}`, step(op, { [f]: v }, rest), new RegExp(`\\.jsonl:1: .*"${f}"`));
    for (const f of required) {
      const line = `{"op": "${op}", ${rest
        .split(/, (?=")/)
        .filter((kv) => !kv.startsWith(`"${f}":`))
        .join(', ')}}`.replace(', }', '}');
      add(`${op} without "${f}"`, line, new RegExp(`\\.jsonl:1: a ${op} step needs "${f}"`));
    }
    add(
      `${op} with an unknown field`,
      step(op, { [`${nums[0]}x`]: '1' }, rest),
      new RegExp(`\\.jsonl:1: unknown field "${nums[0]}x" in a ${op} step`),
    );
    for (const f of ['repeat', 'thread'])
      add(`${op} "${f}" negative`, step(op, { [f]: '-1' }, rest), new RegExp(`\\.jsonl:1: "${f}" must be`));
    if (['fill', 'check', 'probe', 'touch'].includes(op)) {
      add(`${op} "addr" negative`, step(op, { addr: '-4096' }, rest), /\.jsonl:1: "addr" -4096 is not a user address/);
      add(`${op} "len" zero`, step(op, { len: '0' }, rest), /\.jsonl:1: "len" 0 must be positive/);
      if (op !== 'touch')
        add(
          `${op} "addr" unaligned`,
          step(op, { addr: '"0x600000000001"' }, rest),
          /\.jsonl:1: "addr" 0x600000000001 is not page-aligned/,
        );
    }
  }
  return cases;
}

beforeAll(() => {
  execFileSync('mkfifo', [fifo]);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Run main() in-process, capturing what it writes. */
async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  process.stdout.write = (c: string | Uint8Array) => {
    stdout += String(c);
    return true;
  };
  process.stderr.write = (c: string | Uint8Array) => {
    stderr += String(c);
    return true;
  };
  try {
    const code = await main(args);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

// [what, argv, the message must match]
const run = (...a: string[]): string[] => ['run', 'mremap-stress', ...a];
const CASES: Array<[string, string[], RegExp]> = [
  // options: wrong type, out of range, huge, negative, unknown, very long
  ['--cpus not a number', run('--cpus', 'two'), /--cpus: "two" is not an integer/],
  ['--cpus 0', run('--cpus', '0'), /--cpus 0 must be at least 1/],
  ['--cpus huge', run('--cpus', '99999999999999999999999'), /--cpus 99999999999999999999999 must be at most 16/],
  ['--cpus negative', run('--cpus', '-3'), /--cpus -3 must be at least 1/],
  ['--cpus fractional', run('--cpus', '1.5'), /--cpus: "1.5" is not an integer/],
  ['--pcache not a size', run('--pcache', 'big'), /--pcache: "big" is not a size/],
  ['--pcache huge', run('--pcache', '999999999999G'), /--pcache 999999999999G must be at most 1G/],
  ['--pcache too small', run('--pcache', '4K'), /--pcache 4K must be at least 64K/],
  ['--pcache not whole lines', run('--pcache', '65537'), /--pcache 65537 must be a multiple of 4K/],
  ['--memory huge', run('--memory', '100000G'), /--memory 100000G must be at most 64G/],
  ['--memory too small', run('--memory', '4K'), /--memory 4K must be at least 64K/],
  ['--ways 3', run('--ways', '3'), /--ways 3 must be a power of two/],
  ['--ways huge', run('--ways', '1024'), /--ways 1024 must be at most 64/],
  ['--ways 0', run('--ways', '0'), /--ways 0 must be at least 1/],
  [
    '--ways and --pcache give no power-of-two sets',
    run('--pcache', '192K', '--ways', '1'),
    /the number of sets must be a power of two/,
  ],
  ['--evict unknown', run('--evict', 'lfu'), /--evict.*lfu/],
  ['--victim negative', run('--victim', '-1'), /--victim -1 must be 0 \(off\) or more/],
  ['--victim huge', run('--victim', '1000'), /--victim 1000 must be at most 128/],
  ['--seed negative', run('--seed', '-1'), /--seed -1 must be a non-negative integer/],
  ['--seed huge', run('--seed', '99999999999999999999'), /--seed 99999999999999999999 must fit in 32 bits/],
  ['--watchdog not a number', run('--watchdog', 'abc'), /--watchdog: "abc" is not a number/],
  ['--watchdog 0', run('--watchdog', '0'), /--watchdog 0 must be at least 1 second/],
  ['--heartbeat not a number', run('--heartbeat', 'soon'), /--heartbeat: "soon" is not a number/],
  [
    '--heartbeat too long',
    run('--heartbeat', '7200'),
    /--heartbeat 7200 is too long: at most 3600 seconds \(0 turns it off\)/,
  ],
  ['--watchdog huge', run('--watchdog', '1e9'), /--watchdog: "1e9" is not a number/],
  ['--sweep-interval not a number', run('--sweep-interval', 'soon'), /--sweep-interval: "soon" is not a number/],
  ['--sweep-interval huge', run('--sweep-interval', '99999'), /--sweep-interval 99999 must be at most 10000 ms/],
  ['--jitter not a probability', run('--jitter', '2'), /--jitter 2 must be a probability between 0 and 1/],
  ['--jitter not a number', run('--jitter', 'often'), /--jitter: "often" is not a number/],
  ['--check unknown', run('--check', 'always'), /--check.*always/],
  ['--log-level unknown', run('--log-level', 'loud'), /--log-level.*loud/],
  ['--topology unknown', run('--topology', '9P-9M'), /--topology 9P-9M must be 1P-1M-1S or 1P-1M/],
  [
    '--bug unknown, with a suggestion',
    run('--bug', 'free-before-flsh'),
    /--bug free-before-flsh is not a known bug; did you mean free-before-flush\?/,
  ],
  [
    '--kernel unknown, with a suggestion',
    run('--kernel', 'legoos-hed'),
    /--kernel legoos-hed is not a known kernel; did you mean legoos-head\?/,
  ],
  ['--cpus very long token', run('--cpus', longToken), /--cpus: "x{20,}…\(1000000 chars\)" is not an integer/],
  ['--pcache very long token', run('--pcache', longToken), /--pcache: "x{20,}…\(1000000 chars\)" is not a size/],
  ['--threads more than threads-max', run('--threads', '65'), /--threads 65 is more than the 64 live threads/],
  ['--threads 0', run('--threads', '0'), /--threads 0 must be a positive integer/],
  ['an unknown option', run('--frobnicate'), /unknown option '--frobnicate'/],
  ['an unknown workload', ['run', 'wordcount'], /unknown workload "wordcount"/],
  [
    'no workload',
    ['run'],
    /^splitkern: run needs a workload \(one of .*\) or --spawn "WORKLOAD \[args\] \[options\]"$/m,
  ],
  ['an unknown command', ['rn'], /unknown command 'rn'/],
  // workload options
  ['--top 0', ['run', 'word_count', '--top', '0'], /--top 0 must be an integer from 1 to 1000000/],
  [
    '--top huge',
    ['run', 'word_count', '--top', '99999999999'],
    /--top 99999999999 must be an integer from 1 to 1000000/,
  ],
  ['--size too big', ['run', 'word_count', '--size', '2G'], /--size 2G must be between 1 byte and 1G/],
  ['--packages 0', ['run', 'dpkg-status', '--packages', '0'], /--packages 0 must be an integer between 1 and 200000/],
  [
    '--out into a missing directory',
    ['run', 'dpkg-status', '--out', '/nonexistent-dir/status'],
    /--out \/nonexistent-dir\/status: directory \/nonexistent-dir does not exist/,
  ],
  ['--out a directory', ['run', 'dpkg-status', '--out', os.tmpdir()], /is a directory; give a file path/],
  ['mremap-stress --pattern unknown', run('--pattern', 'zigzag'), /mremap-stress: .*zigzag/],
  ['mremap-stress --iterations negative', run('--iterations', '-5'), /mremap-stress: .*iterations/],
  // input files: missing, a directory, a device, a FIFO
  [
    'a missing input file',
    ['run', 'word_count', '/nonexistent/file.txt'],
    /word_count: input \/nonexistent\/file.txt: no such file/,
  ],
  ['an input directory', ['run', 'word_count', os.tmpdir()], /is a directory; give a file/],
  [
    'an input device (/dev/zero)',
    ['run', 'word_count', '/dev/zero'],
    /word_count: input \/dev\/zero is not a regular file \(a device, FIFO or socket\)/,
  ],
  ['an input FIFO', ['run', 'dpkg-status', fifo], /is not a regular file \(a device, FIFO or socket\)/],
  ['a scenario device', ['run', 'script', '/dev/zero'], /script: scenario \/dev\/zero is not a regular file/],
  [
    'an input larger than half of M',
    ['run', 'word_count', '--memory', '64K', path.join(repoRoot, 'package-lock.json')],
    /more than half of M's DRAM \(--memory 64 KiB\): raise --memory/,
  ],
  // scenario fields
  [
    'a scenario: unknown op',
    ['run', 'script', scen('op.jsonl', ['{"op": "mmapp", "len": 4096}'])],
    /op.jsonl:1: .*mmapp/,
  ],
  [
    'a scenario: a very long token',
    ['run', 'script', scen('long.jsonl', [`{"op": "mmap", "len": "${'9'.repeat(1_000_000)}"}`])],
    /long.jsonl:1: bad number/,
  ],
  ['a scenario: not JSON', ['run', 'script', scen('json.jsonl', ['{op: mmap}'])], /json.jsonl:1: /],
  [
    'a scenario: a misspelt flag',
    ['run', 'script', scen('flag.jsonl', ['{"op": "mmap", "len": 4096, "flags": "MAP_PRIVAT|MAP_ANONYMOUS"}'])],
    /flag.jsonl:1: .*MAP_PRIVAT.*MAP_PRIVATE/,
  ],
  [
    'a scenario: a missing field',
    ['run', 'script', scen('missing.jsonl', ['{"op": "munmap", "addr": "0x10000000"}'])],
    /missing.jsonl:1: .*len/,
  ],
  [
    'a scenario: repeat out of range',
    ['run', 'script', scen('repeat.jsonl', ['{"op": "brk", "addr": 0, "repeat": 0}'])],
    /repeat.jsonl:1: .*repeat/,
  ],
  ...scenarioFieldCases(),
  // repro / soak
  ['repro with no bug', ['repro'], /repro: name a bug .* or give --all/],
  ['repro an unknown bug', ['repro', 'nope'], /nope is not a known bug/],
  [
    'repro --attempts 0',
    ['repro', 'brk-shrink-no-zap', '--attempts', '0'],
    /--attempts 0 must be an integer from 1 to 10000/,
  ],
  [
    'repro --controls negative',
    ['repro', 'brk-shrink-no-zap', '--controls', '-1'],
    /--controls -1 must be an integer from 0 to 10000/,
  ],
  ['soak --runs 0', ['soak', '--runs', '0'], /--runs 0 must be an integer from 1 to 100000/],
];

describe('every bad input: exit 2, one line naming the field and its limit, nothing booted', () => {
  it(`the table holds ${CASES.length} cases`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(60);
  });
  for (const [what, args, msg] of CASES) {
    it(what, async () => {
      const r = await inProcess(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      const lines = r.stderr.replace(/\n$/, '').split('\n');
      expect(lines, r.stderr.slice(0, 2000)).toHaveLength(1);
      expect(lines[0]!.length).toBeLessThanOrEqual(400);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stderr).not.toMatch(/booting/);
      expect(r.stdout).toBe('');
    });
  }
});

describe('the real binary', () => {
  it('a non-regular input file: exit 2 before boot', async () => {
    const r = await runCli(['run', 'word_count', '/dev/zero']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/booting/);
  });

  it('no arguments: usage on stderr, exit 2', async () => {
    const r = await runCli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/Usage: splitkern/);
  });
});

/** Start the binary, wait until `ready` appears on stderr, then send `sig`. */
function interruptWhen(
  args: string[],
  ready: RegExp,
  sig: NodeJS.Signals,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [bin, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && ready.test(stderr)) {
        sent = true;
        setTimeout(() => c.kill(sig), 500);
      }
    });
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`no exit after ${sig}\n${stderr.slice(-2000)}`));
    }, 120_000);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

describe('signals', () => {
  it('SIGINT mid-stress: the workload stops, a partial summary, exit 130', async () => {
    const r = await interruptWhen(
      ['run', 'mremap-stress', '--seconds', '60', '--iterations', '1000000', '--check', 'end'],
      /run: mremap-stress/,
      'SIGINT',
    );
    expect(r.code, r.stderr.slice(-1500)).toBe(130);
    expect(r.stdout).toMatch(/INTERRUPTED by SIGINT \(stopped cleanly in \d+ ms\)/);
    expect(r.stdout).toMatch(/partial: \d+ of 2000000 iterations done, \d+ pages moved/);
    expect(r.stdout).toMatch(/violations so far: 0/);
    expect(r.stderr).toMatch(/SIGINT: stopping the workload/);
  });

  it('SIGTERM with --json: the partial summary as JSON, exit 143', async () => {
    const r = await interruptWhen(
      ['run', 'mremap-stress', '--seconds', '60', '--iterations', '1000000', '--json'],
      /run: mremap-stress/,
      'SIGTERM',
    );
    expect(r.code).toBe(143);
    const j = JSON.parse(r.stdout) as {
      interrupted: string;
      exitCode: number;
      forced: boolean;
      progress: { done: number; total: number };
      violations: unknown[];
    };
    expect(j.interrupted).toBe('SIGTERM');
    expect(j.exitCode).toBe(143);
    expect(j.forced).toBe(false);
    expect(j.progress.total).toBe(2_000_000);
    expect(j.violations).toEqual([]);
  });

  it('repro interrupted: the signal reaches its child, and no process is left', async () => {
    const c = spawn(process.execPath, [bin, 'repro', 'mremap-unserialized', '--attempts', '3'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Wait for the child run to exist (it boots a machine), then interrupt repro.
    let kids: number[] = [];
    for (let i = 0; i < 200 && kids.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      kids = childrenOf(c.pid!);
    }
    expect(kids.length).toBeGreaterThan(0);
    const code = await new Promise<number | null>((resolve) => {
      c.on('close', resolve);
      c.kill('SIGINT');
    });
    expect(code).toBe(130);
    for (const k of kids) expect(() => process.kill(k, 0)).toThrow();
  });
});
