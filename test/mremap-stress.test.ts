// The `mremap-stress` workload on the kernel-free fake user context: option parsing, the address layout,
// clean runs for every pattern, and corruptions injected into the fake's memory that it must report.
// (On the fake, clone runs a thread to completion at once, so threads take turns instead of racing: this
// checks the program's own logic; the races are for the emulator.)
import { describe, expect, it } from 'vitest';
import { EAGAIN, PAGE_SIZE } from '../src/uapi/abi.ts';
import type { UserContext } from '../src/uapi/program.ts';
import {
  STRESS_DEFAULTS,
  StressLayout,
  kScratchPages,
  kStressArenaBase,
  mremapStress,
  parseStressArgs,
  type StressReport,
} from '../src/user/programs/mremap_stress.ts';
import { makeFakeMachine, makeFakeUser, type FakeMachine } from './helpers/fake-user.ts';

const GiB = 2 ** 30;

interface Run {
  m: FakeMachine;
  rc: number;
  rep: StressReport;
  out: string;
}

function run(argv: string[], setup?: (m: FakeMachine, u: UserContext) => void, seed = 1): Run {
  const m = makeFakeMachine();
  m.enforceProt = true;
  const u = makeFakeUser(m, mremapStress, seed, argv);
  setup?.(m, u);
  const rc = mremapStress.main(u, argv);
  expect(m.reports).toHaveLength(1);
  return { m, rc, rep: m.reports[0] as StressReport, out: m.stdout.join('') };
}

/** After the n-th successful mremap (counting from 1), call `hit` with the result and the new length. */
function afterMremap(n: number, hit: (m: FakeMachine, addr: number, len: number) => void) {
  return (m: FakeMachine, u: UserContext): void => {
    const orig = u.sys.mremap.bind(u.sys);
    let calls = 0;
    u.sys.mremap = (oldAddr, oldLen, newLen, flags, newAddr) => {
      const r = orig(oldAddr, oldLen, newLen, flags, newAddr);
      if (r >= 0 && ++calls === n) hit(m, r, newLen);
      return r;
    };
  };
}

const vpn = (va: number): number => Math.floor(va / PAGE_SIZE);

describe('parseStressArgs', () => {
  it('has defaults and takes "--name value" and "--name=value"', () => {
    expect(parseStressArgs([])).toEqual(STRESS_DEFAULTS);
    expect(STRESS_DEFAULTS).toEqual({
      threads: 2,
      regions: 2,
      pages: 16,
      iterations: 200,
      seconds: 0,
      pattern: 'chain',
    });
    expect(
      parseStressArgs([
        '--threads',
        '3',
        '--regions=4',
        '--pages',
        '8',
        '--iterations=50',
        '--seconds',
        '1.5',
        '--pattern',
        'random',
      ]),
    ).toEqual({ threads: 3, regions: 4, pages: 8, iterations: 50, seconds: 1.5, pattern: 'random' });
  });

  it.each([
    [['--threads', '0'], '--threads 0 must be an integer from 1 to 64'],
    [['--pages', '4097'], '--pages 4097 must be an integer from 1 to 4096'],
    [['--regions', '2.5'], '--regions 2.5 must be an integer from 1 to 64'],
    [['--iterations'], /^--iterations needs a value/],
    [['--seconds', '-1'], /^--seconds -1 must be a number of seconds from 0/],
    [['--pattern', 'ring'], '--pattern ring must be one of chain, pingpong, random'],
    [['--thread', '2'], /^unknown option "--thread" \(options: --threads T, /],
    [['extra'], /^unexpected argument "extra"/],
  ])('%j is refused: %s', (argv, msg) => {
    const r = parseStressArgs(argv);
    expect(typeof r).toBe('string');
    if (typeof msg === 'string') expect(r).toBe(msg);
    else expect(r).toMatch(msg);
  });
});

describe('layout', () => {
  it('slots do not overlap; across the lanes they are 1 GiB apart at even indexes and 1 GiB + 4 KiB at odd ones', () => {
    for (const pattern of ['chain', 'pingpong', 'random'] as const) {
      const lay = new StressLayout({ ...STRESS_DEFAULTS, threads: 5, regions: 3, pattern });
      const spans = Array.from({ length: lay.slots }, (_, s) => lay.slotAddr(s)).sort((a, b) => a - b);
      for (let i = 1; i < spans.length; i++)
        expect(spans[i]! - spans[i - 1]!).toBeGreaterThan(lay.maxPages * PAGE_SIZE);
      expect(spans[0]).toBe(kStressArenaBase);
      for (let s = 0; s + 1 < lay.slots; s += 2) {
        expect(lay.slotAddr(s + 1) - lay.slotAddr(s)).toBe((s / 2) % 2 === 0 ? lay.laneGap : lay.laneGap + PAGE_SIZE);
      }
      expect(lay.laneGap % GiB).toBe(0);
      expect(lay.slots).toBeGreaterThanOrEqual(pattern === 'chain' ? 15 + 5 : 30);
    }
    const lay = new StressLayout(STRESS_DEFAULTS);
    expect(lay.scratchAddr(0, 1) - lay.scratchAddr(0, 0)).toBe(GiB);
    expect((lay.scratchAddr(0, 2) - lay.scratchAddr(0, 1)) % GiB).not.toBe(0);
    expect(lay.scratchAddr(0, 2) - lay.scratchAddr(0, 1)).toBeGreaterThan(kScratchPages * PAGE_SIZE);
    // the largest arena still fits below the scratch ranges
    const big = new StressLayout({ ...STRESS_DEFAULTS, threads: 64, regions: 64, pages: 4096, pattern: 'random' });
    expect(big.slotAddr(big.slots - 1) + big.maxPages * PAGE_SIZE).toBeLessThan(big.scratchAddr(0, 0));
  });
});

describe('clean runs on the fake', () => {
  for (const pattern of ['chain', 'pingpong', 'random'] as const) {
    for (const threads of [1, 3]) {
      it(`${pattern}, ${threads} thread${threads > 1 ? 's' : ''}: every page verified, every kind of step taken`, () => {
        const { rc, rep, out } = run(['--threads', String(threads), '--iterations', '60', '--pattern', pattern]);
        expect(rep.failures, rep.firstFailure?.message).toBe(0);
        expect(rc).toBe(0);
        expect(rep).toMatchObject({
          kind: 'mremap-stress',
          threads,
          regions: 2,
          pages: 16,
          pattern,
          iterations: 60 * threads,
        });
        expect(rep.moves).toBeGreaterThan(0);
        expect(rep.fastMoves).toBeGreaterThan(0);
        expect(rep.slowMoves).toBeGreaterThan(0);
        expect(rep.fastMoves + rep.slowMoves).toBe(rep.moves);
        expect(rep.grows).toBeGreaterThan(0);
        expect(rep.shrinks).toBeGreaterThan(0);
        expect(rep.churns).toBeGreaterThan(0);
        expect(rep.rewrites).toBeGreaterThan(0);
        expect(rep.scratchMoves).toBeGreaterThan(0);
        expect(rep.pagesVerified).toBeGreaterThan(60 * threads * 2);
        if (threads > 1) {
          expect(rep.visits).toBeGreaterThan(0);
          expect(rep.scratchWrites).toBeGreaterThan(rep.scratchMoves);
        }
        expect(rep.firstFailure).toBeUndefined();
        expect(out).toMatch(
          new RegExp(
            `^mremap-stress: ${threads} threads? x 2 regions x 16 pages, pattern ${pattern}: ` +
              `${60 * threads} iterations, ${rep.moves} moves \\(${rep.fastMoves} fast, ${rep.slowMoves} slow\\), .* pages verified: OK\\n$`,
          ),
        );
      });
    }
  }

  it('is deterministic for a seed', () => {
    const a = run(['--threads', '2', '--iterations', '40'], undefined, 7).rep;
    const b = run(['--threads', '2', '--iterations', '40'], undefined, 7).rep;
    const c = run(['--threads', '2', '--iterations', '40'], undefined, 8).rep;
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('handles one-page regions and many small regions', () => {
    const { rc, rep } = run([
      '--threads',
      '2',
      '--regions',
      '5',
      '--pages',
      '1',
      '--iterations',
      '80',
      '--pattern',
      'random',
    ]);
    expect(rep.failures, rep.firstFailure?.message).toBe(0);
    expect(rc).toBe(0);
    expect(rep.moves).toBeGreaterThan(0);
  });

  it('--seconds stops the run early', () => {
    const t0 = Date.now();
    const { rc, rep } = run(['--threads', '2', '--iterations', '1000000000', '--seconds', '0.2']);
    expect(rc).toBe(0);
    expect(rep.failures).toBe(0);
    expect(rep.iterations).toBeGreaterThan(0);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('corruption is found and named', () => {
  it("two pages swapped after a mremap: the page holding its neighbour's tag is reported", () => {
    const { rc, rep, out } = run(
      ['--threads', '1', '--iterations', '100'],
      afterMremap(5, (m, addr, len) => {
        expect(len).toBeGreaterThanOrEqual(2 * PAGE_SIZE); // a shrink to one page would need another test
        const a = m.pages.get(vpn(addr))!;
        m.pages.set(vpn(addr), m.pages.get(vpn(addr) + 1)!);
        m.pages.set(vpn(addr) + 1, a);
      }),
    );
    expect(rc).toBe(1);
    expect(rep.failures).toBe(1);
    const f = rep.firstFailure!;
    expect(f.thread).toBe(0);
    expect(f.iteration).toBeGreaterThan(0);
    expect(vpn(f.addr)).toBeGreaterThan(0);
    expect(f.message).toMatch(
      new RegExp(
        `^iteration ${f.iteration}: page 0 of region t0r[01] \\(\\d+ pages at 0x[0-9a-f]+, [^)]*\\) at 0x${f.addr.toString(16)}` +
          ' holds region t0r[01] page 1 generation \\d+ written by thread 0 at 0x[0-9a-f]+, expected region t0r[01] page 0 generation \\d+ written by thread 0;' +
          ' last operation on the region: mremap\\(0x',
      ),
    );
    expect(out).toMatch(
      /: FAILED in 1 thread; first: thread 0, iteration \d+: page 0 of region t0r[01] .* holds region t0r[01] page 1 generation \d+/,
    );
    expect(out.split('\n')).toHaveLength(2); // one line
  });

  it('a page zeroed after a mremap: "holds zeros" where data was', () => {
    const { rc, rep } = run(
      ['--threads', '2', '--iterations', '100', '--pattern', 'pingpong'],
      afterMremap(9, (m, addr) => {
        m.pages.get(vpn(addr))!.fill(0);
      }),
    );
    expect(rc).toBe(1);
    expect(rep.firstFailure?.message).toMatch(
      /page 0 of region t[01]r[01] .* holds zeros, expected region t[01]r[01] page 0 generation \d+ written by thread [01]/,
    );
  });

  it("a stale write of another page's bytes into a page's last word: its visit word does not belong to it", () => {
    const { rc, rep } = run(
      ['--threads', '1', '--iterations', '100', '--pattern', 'random'],
      afterMremap(3, (m, addr) => {
        const p = m.pages.get(vpn(addr))!;
        p[PAGE_SIZE - 1]! ^= 0x5a;
      }),
    );
    expect(rc).toBe(1);
    expect(rep.firstFailure?.message).toMatch(
      /page 0 of region t0r[01] .* holds region t0r[01] page 0 generation \d+ written by thread 0 at 0x[0-9a-f]+ but its visit word 0x[0-9a-f]+ does not belong to it/,
    );
  });

  it('a lost write (an old generation left behind) is told apart from the current one', () => {
    // From the program's 40th rewrite of a page that already holds data on, drop every such rewrite, as
    // lost write-backs would (one dropped write may be followed by a good one of the same generation).
    const dropped = new Set<number>();
    const { rc, rep } = run(['--threads', '1', '--iterations', '200', '--pattern', 'pingpong'], (m, u) => {
      const orig = u.mmu.write.bind(u.mmu);
      let rewrites = 0;
      u.mmu.write = (va, src, off, len) => {
        const p = m.pages.get(vpn(va));
        const rewrite =
          src.length === PAGE_SIZE &&
          va >= kStressArenaBase &&
          va < kStressArenaBase + 4 * GiB &&
          p !== undefined &&
          p.some((b) => b !== 0);
        if (rewrite && ++rewrites >= 40) {
          dropped.add(va);
          return;
        }
        orig(va, src, off, len);
      };
    });
    expect(rc).toBe(1);
    expect(dropped.has(rep.firstFailure?.addr ?? -1)).toBe(true);
    expect(rep.firstFailure?.message).toMatch(
      /page (\d+) of region (t0r[01]) .* holds region \2 page \1 generation (\d+) written by thread 0 at 0x[0-9a-f]+, expected region \2 page \1 generation (?!\3\b)\d+ written by thread 0/,
    );
  });

  it("a visitor finds another thread's page torn (the owner never looked again)", () => {
    // Scribble over every page of main's regions just before thread 1 starts: thread 1's visits find it.
    const { rc, rep } = run(['--threads', '2', '--iterations', '100'], (m, u) => {
      const orig = u.sys.clone.bind(u.sys);
      u.sys.clone = (entry, arg) => {
        for (const [v, p] of m.pages)
          if (v * PAGE_SIZE >= kStressArenaBase && v * PAGE_SIZE < kStressArenaBase + 4 * GiB) p[100]! ^= 0xff;
        return orig(entry, arg);
      };
    });
    expect(rc).toBe(1);
    expect(rep.failures).toBe(1);
    expect(rep.firstFailure?.thread).toBe(1);
    expect(rep.firstFailure?.message).toMatch(
      /^iteration \d+: visiting slot \d+ \(region t0r[01], \d+ pages at 0x[0-9a-f]+, owned by thread 0\): page \d+ at 0x[0-9a-f]+ holds region t0r[01] page \d+ generation \d+ written by thread 0 at 0x[0-9a-f]+, but its bytes from offset 0x64 do not match its tag \(torn or overwritten\), expected region t0r[01] page \d+ any generation written by thread 0$/,
    );
  });

  it('a statistics page overwritten after its thread ended is a failure, and its numbers are not added', () => {
    const { rc, rep } = run(['--threads', '2', '--iterations', '30'], (m, u) => {
      const lay = new StressLayout({ ...STRESS_DEFAULTS, threads: 2, iterations: 30 });
      const orig = u.sys.join.bind(u.sys);
      u.sys.join = (tid) => {
        m.pages.get(vpn(lay.statsVa(1)))![0]! ^= 1;
        return orig(tid);
      };
    });
    expect(rc).toBe(1);
    expect(rep.failures).toBe(1);
    expect(rep.iterations).toBe(30); // thread 0's only
    expect(rep.firstFailure?.message).toMatch(
      /^the statistics page of thread 1 at 0x[0-9a-f]+ was overwritten after the thread sealed it/,
    );
  });

  it('a failed syscall is a failure naming the call and the errno', () => {
    const { rc, rep } = run(['--threads', '1', '--iterations', '50'], (_m, u) => {
      const orig = u.sys.munmap.bind(u.sys);
      u.sys.munmap = (addr, len) => (addr >= kStressArenaBase ? -EAGAIN : orig(addr, len));
    });
    expect(rc).toBe(1);
    expect(rep.firstFailure?.message).toMatch(
      /^iteration \d+: munmap\(0x[0-9a-f]+, 0x[0-9a-f]+\) returned EAGAIN \(-11\), expected 0$/,
    );
  });

  it('a clone refused (more threads than CPUs) is reported, and the started threads are joined', () => {
    const { rc, rep } = run(['--threads', '3', '--iterations', '20'], (_m, u) => {
      const orig = u.sys.clone.bind(u.sys);
      let n = 0;
      u.sys.clone = (entry, arg) => (++n === 2 ? -EAGAIN : orig(entry, arg));
    });
    expect(rc).toBe(1);
    expect(rep.failures).toBe(1);
    expect(rep.firstFailure?.message).toBe(
      'clone of thread 2 returned EAGAIN (-11) (one user thread per CPU: run --threads 2 or more CPUs)',
    );
  });
});

describe('bad argv', () => {
  it.each([[['--threads', 'two']], [['--bogus']], [['--pattern', 'zigzag']]])(
    '%j: exit 2, one line on stderr, nothing started',
    (argv) => {
      const m = makeFakeMachine();
      const u = makeFakeUser(m, mremapStress, 1, argv);
      expect(mremapStress.main(u, argv)).toBe(2);
      const text = m.stdout.join('');
      expect(text).toMatch(/^mremap-stress: [^\n]+\n$/);
      expect(m.reports).toEqual([]);
      expect(m.mremapCalls).toBe(0);
    },
  );
});
