// libc (src/user/libc/) on a fake machine: size classes, malloc/free/realloc against glibc's syscall
// pattern and heap checks, string.h, printf, the file helpers, and real threads racing on one arena.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EBUSY, EINVAL, EPERM, ETIMEDOUT, PAGE_SIZE } from '../src/uapi/abi.ts';
import { PD_TID, PTHREAD_COND_SIZE, PTHREAD_MUTEX_SIZE } from '../src/user/libc/pthread.ts';
import { UserSignal, type Program } from '../src/uapi/program.ts';
import { Libc, M_MMAP_THRESHOLD, binIndex, formatPrintf, request2size } from '../src/user/libc.ts';
import { makeFakeMachine, makeFakeUser, type FakeMachine } from './helpers/fake-user.ts';
import { pattern } from './helpers/pattern.ts';

const setup = (files: Record<string, string | Uint8Array> = {}, program?: Program): { m: FakeMachine; libc: Libc } => {
  const m = makeFakeMachine(files);
  const u = makeFakeUser(m, program);
  return { m, libc: Libc.init(u, { spinLimitMs: 2000 }) };
};

/** expect(a).toEqual(b) is slow on big typed arrays: compare with Buffer.compare and report the first difference. */
const expectSame = (a: Uint8Array, b: Uint8Array): void => {
  if (Buffer.compare(a, b) === 0) return;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  expect(`length ${a.length}, first difference at ${i}: ${a[i]}`).toBe(`length ${b.length}, equal`);
};
const readBack = (libc: Libc, p: number, n: number): Uint8Array => {
  const b = new Uint8Array(n);
  libc.mmu.read(p, b);
  return b;
};

describe('libc: size classes', () => {
  it('request2size and binIndex follow glibc', () => {
    expect(request2size(0)).toBe(32);
    expect(request2size(24)).toBe(32);
    expect(request2size(25)).toBe(48);
    expect(request2size(1000)).toBe(1008);
    let last = 0;
    let bad = '';
    for (let s = 32; s < 4 << 20; s += 16) {
      const b = binIndex(s);
      if (b < last || b >= 128) bad ||= `binIndex(${s}) = ${b} after ${last}`;
      last = b;
    }
    expect(bad).toBe('');
    expect(binIndex(1008)).toBe(63);
    expect(binIndex(1024)).toBe(64);
  });
});

describe('libc: malloc/free/realloc', () => {
  it('small blocks come from brk, are 16-aligned and distinct', () => {
    const { m, libc } = setup();
    const ps = [1, 8, 24, 25, 100, 1000, 5000].map((n) => libc.malloc(n));
    for (const p of ps) {
      expect(p % 16).toBe(0);
      expect(p).toBeGreaterThanOrEqual(0x555555560000);
      expect(p).toBeLessThan(0x555555560000 + (1 << 30));
    }
    expect(new Set(ps).size).toBe(ps.length);
    expect(libc.mallocStats().nMmaps).toBe(0);
    expect(m.mmapCalls).toBe(1); // the arena page only
    for (const p of ps) libc.free(p);
    expect(libc.checkHeap()).toEqual([]);
  });

  it('blocks >= 128 KiB are mmapped and freed with munmap', () => {
    const { m, libc } = setup();
    const before = m.mmapCalls;
    const p = libc.malloc(M_MMAP_THRESHOLD);
    expect(m.mmapCalls).toBe(before + 1);
    expect(p).toBeGreaterThan(0x7f0000000000);
    expect(libc.mallocUsableSize(p)).toBeGreaterThanOrEqual(M_MMAP_THRESHOLD);
    expect(libc.mallocStats().nMmaps).toBe(1);
    libc.mmu.store8(p + M_MMAP_THRESHOLD - 1, 7);
    const pages = m.pages.size;
    libc.free(p);
    expect(m.pages.size).toBeLessThan(pages);
    expect(libc.mallocStats().nMmaps).toBe(0);
    // a just-below-threshold request stays on the heap
    const q = libc.malloc(M_MMAP_THRESHOLD - 64);
    expect(q).toBeLessThan(0x7f0000000000);
  });

  it('realloc of an mmapped block uses mremap and keeps the contents', () => {
    const { m, libc } = setup();
    const n = 200 * 1024;
    const p = libc.malloc(n);
    const data = pattern(1, n);
    libc.mmu.write(p, data);
    const calls = m.mremapCalls;
    const q = libc.realloc(p, 3 * n);
    expect(m.mremapCalls).toBe(calls + 1);
    expectSame(readBack(libc, q, n), data);
    // shrink: also mremap, stays mmapped
    const r = libc.realloc(q, n / 2);
    expect(m.mremapCalls).toBe(calls + 2);
    expectSame(readBack(libc, r, n / 2), data.subarray(0, n / 2));
    // same page count: no syscall
    const s = libc.realloc(r, n / 2 - 8);
    expect(s).toBe(r);
    expect(m.mremapCalls).toBe(calls + 2);
    libc.free(s);
    expect(libc.mallocStats().nMmaps).toBe(0);
  });

  it('a heap block growing past the threshold moves to an mmapped chunk', () => {
    const { m, libc } = setup();
    let p = libc.malloc(1000);
    const data = pattern(2, 1000);
    libc.mmu.write(p, data);
    const mm = m.mmapCalls;
    p = libc.realloc(p, 300 * 1024);
    expect(m.mmapCalls).toBe(mm + 1);
    expect(p).toBeGreaterThan(0x7f0000000000);
    expect(readBack(libc, p, 1000)).toEqual(data);
    expect(libc.checkHeap()).toEqual([]);
    // and further growth is by mremap
    const r = m.mremapCalls;
    p = libc.realloc(p, 600 * 1024);
    expect(m.mremapCalls).toBe(r + 1);
    expect(readBack(libc, p, 1000)).toEqual(data);
  });

  it('realloc grows in place into top and into a free neighbour', () => {
    const { libc } = setup();
    const a = libc.malloc(100);
    const a2 = libc.realloc(a, 5000); // a is next to top
    expect(a2).toBe(a);
    const b = libc.malloc(100);
    const c = libc.malloc(100);
    const d = libc.malloc(100);
    libc.mmu.write(b, pattern(3, 100));
    libc.free(c);
    const b2 = libc.realloc(b, 200);
    expect(b2).toBe(b);
    expect(readBack(libc, b2, 100)).toEqual(pattern(3, 100));
    expect(libc.checkHeap()).toEqual([]);
    libc.free(d);
    libc.free(b2);
    libc.free(a2);
    expect(libc.checkHeap()).toEqual([]);
  });

  it('free coalesces, brk heap is trimmed, and calloc after regrowth returns zeros', () => {
    const { libc } = setup();
    const ps: number[] = [];
    for (let i = 0; i < 200; i++) ps.push(libc.malloc(4000));
    const grown = libc.mallocStats().heapEnd;
    for (const p of ps) libc.mmu.fill(p, 0xab, 4000);
    for (const p of ps) libc.free(p);
    expect(libc.checkHeap()).toEqual([]);
    const st = libc.mallocStats();
    expect(st.heapEnd).toBeLessThan(grown); // trimmed with brk
    expect(st.topSize).toBeLessThan(M_MMAP_THRESHOLD * 2);
    const qs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const q = libc.calloc(1, 4000);
      qs.push(q);
      expect(readBack(libc, q, 4000).every((b) => b === 0)).toBe(true);
    }
    expect(libc.checkHeap()).toEqual([]);
  });

  it('calloc clears reused memory', () => {
    const { libc } = setup();
    const a = libc.malloc(500);
    const guard = libc.malloc(16);
    libc.mmu.fill(a, 0xff, 500);
    libc.free(a);
    const b = libc.calloc(10, 50);
    expect(b).toBe(a);
    expect(readBack(libc, b, 500).every((x) => x === 0)).toBe(true);
    libc.free(guard);
  });

  it('detects a double free and a corrupted list with SIGABRT', () => {
    const { libc } = setup();
    const a = libc.malloc(100);
    libc.malloc(100);
    libc.free(a);
    expect(() => libc.free(a)).toThrowError(/double free/);
    const { libc: l2 } = setup();
    const x = l2.malloc(100);
    l2.malloc(100);
    const y = l2.malloc(100);
    const z = l2.malloc(100);
    l2.free(x);
    l2.free(y);
    l2.mmu.store64(y, z - 16); // smash y's fd: points at a live chunk whose bk is not y
    try {
      l2.malloc(100);
      l2.malloc(100);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UserSignal);
      expect((e as UserSignal).signo).toBe(6);
    }
  });

  it('a lock held forever aborts after the spin limit', () => {
    const m = makeFakeMachine();
    const u = makeFakeUser(m);
    const libc = Libc.init(u, { spinLimitMs: 50 });
    libc.mmu.store32(libc.stateVa, 999); // another "thread" holds the arena lock
    expect(() => libc.malloc(10)).toThrowError(/arena lock held by tid 999/);
  });

  it('random malloc/realloc/free keeps contents and never overlaps (fast-check)', () => {
    type Op = { k: 'm'; n: number } | { k: 'f'; i: number } | { k: 'r'; i: number; n: number } | { k: 'c'; n: number };
    const size = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: 600 }) },
      { weight: 3, arbitrary: fc.integer({ min: 600, max: 40_000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 400_000 }) },
    );
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant('m' as const), n: size }),
      fc.record({ k: fc.constant('c' as const), n: size }),
      fc.record({ k: fc.constant('f' as const), i: fc.nat() }),
      fc.record({ k: fc.constant('r' as const), i: fc.nat(), n: size }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 150 }), (ops) => {
        const { libc } = setup();
        const live: Array<{ p: number; n: number; tag: number }> = [];
        let tag = 1;
        const verify = (b: { p: number; n: number; tag: number }): void => {
          expectSame(readBack(libc, b.p, b.n), pattern(b.tag, b.n));
        };
        for (const o of ops) {
          if (o.k === 'm' || o.k === 'c') {
            const p = o.k === 'm' ? libc.malloc(o.n) : libc.calloc(1, o.n);
            expect(p).not.toBe(0);
            expect(p % 16).toBe(0);
            expect(libc.mallocUsableSize(p)).toBeGreaterThanOrEqual(o.n);
            if (o.k === 'c') expect(readBack(libc, p, o.n).every((x) => x === 0)).toBe(true);
            const b = { p, n: o.n, tag: tag++ };
            libc.mmu.write(p, pattern(b.tag, b.n));
            live.push(b);
          } else if (live.length > 0) {
            const i = o.i % live.length;
            const b = live[i]!;
            verify(b);
            if (o.k === 'f') {
              libc.free(b.p);
              live.splice(i, 1);
            } else {
              const q = libc.realloc(b.p, o.n);
              if (o.n === 0) {
                expect(q).toBe(0);
                live.splice(i, 1);
                continue;
              }
              expect(q % 16).toBe(0);
              const keep = Math.min(b.n, o.n);
              expectSame(readBack(libc, q, keep), pattern(b.tag, b.n).subarray(0, keep));
              const nb = { p: q, n: o.n, tag: tag++ };
              libc.mmu.write(q, pattern(nb.tag, nb.n));
              live[i] = nb;
            }
          }
          // no overlap between live blocks (usable ranges)
          const rs = live.map((b) => [b.p, b.p + Math.max(b.n, 1)] as const).sort((x, y) => x[0] - y[0]);
          for (let j = 1; j < rs.length; j++) expect(rs[j]![0]).toBeGreaterThanOrEqual(rs[j - 1]![1]);
        }
        for (const b of live) verify(b);
        expect(libc.checkHeap()).toEqual([]);
        for (const b of live) libc.free(b.p);
        expect(libc.checkHeap()).toEqual([]);
        expect(libc.mallocStats().nMmaps).toBe(0);
        expect(libc.mmu.load32(libc.stateVa)).toBe(0); // lock released
      }),
      { numRuns: 150 },
    );
  });

  it('memory freed by another thread returns to the shared arena', () => {
    const program: Program = {
      name: 't',
      main: () => 0,
      threads: {
        worker: (u, arg) => {
          const l = Libc.attach(u, u.mmu.load64(arg));
          const victim = u.mmu.load64(arg + 8);
          l.free(victim); // allocated by main
          const mine = l.malloc(3000); // freed later by main
          l.mmu.fill(mine, 0x5a, 3000);
          u.mmu.store64(arg + 16, mine);
          const big = l.malloc(500_000);
          u.mmu.store64(arg + 24, l.realloc(big, 900_000));
          return 7;
        },
      },
    };
    const m = makeFakeMachine();
    const u = makeFakeUser(m, program);
    const libc = Libc.init(u);
    const task = libc.calloc(1, 32);
    const victim = libc.malloc(2000);
    libc.malloc(16);
    u.mmu.store64(task, libc.stateVa);
    u.mmu.store64(task + 8, victim);
    const tid = libc.pthreadCreate('worker', task);
    expect(tid).toBeGreaterThan(0);
    expect(libc.pthreadJoin(tid)).toBe(7);
    const mine = u.mmu.load64(task + 16);
    expect(readBack(libc, mine, 3000).every((b) => b === 0x5a)).toBe(true);
    libc.free(mine);
    libc.free(u.mmu.load64(task + 24));
    expect(libc.checkHeap()).toEqual([]);
    expect(libc.malloc(2000)).toBe(victim); // the block the thread freed is reused
    expect(libc.mallocStats().nMmaps).toBe(0);
    expect(() => Libc.attach(u, task)).toThrowError(/bad magic/);
  });
});

describe('libc: pthread mutex and condition variable words (one thread, no contention)', () => {
  it('mutex2 states: lock 0 -> 1, trylock EBUSY, unlock -> 0, unlocking an unlocked mutex is EPERM', () => {
    const { libc } = setup();
    const mu = libc.calloc(1, PTHREAD_MUTEX_SIZE);
    expect(libc.pthreadMutexLock(mu)).toBe(0);
    expect(libc.mmu.load32(mu)).toBe(1); // locked, no waiters: no futex call needed to unlock
    expect(libc.pthreadMutexTrylock(mu)).toBe(EBUSY);
    expect(libc.pthreadMutexUnlock(mu)).toBe(0);
    expect(libc.mmu.load32(mu)).toBe(0);
    expect(libc.pthreadMutexTrylock(mu)).toBe(0);
    expect(libc.pthreadMutexUnlock(mu)).toBe(0);
    expect(libc.pthreadMutexUnlock(mu)).toBe(EPERM);
    expect(libc.mmu.load32(mu)).toBe(0);
  });

  it('signal and broadcast advance the sequence word; a timed wait nobody signals times out holding the mutex', () => {
    const { libc } = setup();
    const mu = libc.calloc(1, PTHREAD_MUTEX_SIZE);
    const cv = libc.calloc(1, PTHREAD_COND_SIZE);
    libc.pthreadCondSignal(cv);
    libc.pthreadCondBroadcast(cv);
    expect(libc.mmu.load32(cv)).toBe(2);
    libc.pthreadMutexLock(mu);
    expect(libc.pthreadCondWait(cv, mu, 5)).toBe(ETIMEDOUT);
    // re-locked in the contended state, as glibc's condvar does after a wait
    expect(libc.mmu.load32(mu)).toBe(2);
    expect(libc.pthreadMutexUnlock(mu)).toBe(0);
  });

  it('pthread_create stores the tid in struct pthread (CLONE_PARENT_SETTID); join sees it cleared and frees it', () => {
    const program: Program = { name: 't', main: () => 0, threads: { w: () => 5 } };
    const m = makeFakeMachine();
    const u = makeFakeUser(m, program);
    const libc = Libc.init(u);
    const pt = libc.pthreadCreate('w', 0);
    expect(pt).toBeGreaterThan(0);
    expect(libc.pthreadTid(pt)).toBeGreaterThan(0);
    expect(libc.mmu.load32(pt + PD_TID)).toBe(0); // the fake ran the thread inside clone: it has exited
    expect(libc.pthreadJoin(pt)).toBe(5);
    expect(libc.checkHeap()).toEqual([]);
    expect(libc.pthreadCreate('nope', 0)).toBe(-EINVAL);
  });
});

describe('libc: string functions', () => {
  it('memcpy/memmove/memset/memcmp across pages', () => {
    const { libc } = setup();
    const n = 3 * PAGE_SIZE + 123;
    const a = libc.malloc(n + 64);
    const b = libc.malloc(n + 64);
    const data = pattern(9, n);
    libc.mmu.write(a, data);
    libc.memcpy(b, a, n);
    expect(readBack(libc, b, n)).toEqual(data);
    expect(libc.memcmp(a, b, n)).toBe(0);
    libc.mmu.store8(b + n - 1, (data[n - 1]! + 1) & 0xff);
    expect(Math.sign(libc.memcmp(a, b, n))).toBe(data[n - 1]! === 255 ? 1 : -1);
    // overlapping moves both ways
    libc.mmu.write(a, data);
    libc.memmove(a + 37, a, n - 64);
    expect(readBack(libc, a + 37, n - 64)).toEqual(data.subarray(0, n - 64));
    libc.mmu.write(a, data);
    libc.memmove(a, a + 37, n - 64);
    expect(readBack(libc, a, n - 64)).toEqual(data.subarray(37, 37 + n - 64));
    libc.memset(a, 0x1ff, 100);
    expect(readBack(libc, a, 100).every((x) => x === 0xff)).toBe(true);
  });

  it('strlen/strcmp/strcpy/cstring/putCString, including strings crossing a page end', () => {
    const { libc } = setup();
    const big = libc.malloc(3 * PAGE_SIZE);
    const edge = big + PAGE_SIZE * 2 - (big % PAGE_SIZE) - 5; // 5 bytes before a page boundary
    libc.putCString(edge, 'HELLO WORLD');
    expect(libc.strlen(edge)).toBe(11);
    expect(libc.cstring(edge)).toBe('HELLO WORLD');
    const s = libc.newCString('HELLO WORLE');
    expect(libc.strcmp(edge, s)).toBeLessThan(0);
    expect(libc.strcmp(s, edge)).toBeGreaterThan(0);
    const t = libc.malloc(64);
    libc.strcpy(t, edge);
    expect(libc.strcmp(t, edge)).toBe(0);
    const short = libc.newCString('HELLO');
    expect(libc.strcmp(short, edge)).toBeLessThan(0);
    expect(libc.strcmpBytes(edge, Buffer.from('HELLO WORLD'))).toBe(0);
    expect(libc.strcmpBytes(edge, Buffer.from('HELLO'))).toBeGreaterThan(0);
    expect(libc.strcmpBytes(short, Buffer.from('HELLO WORLD'))).toBeLessThan(0);
    const hi = libc.newCString('\xe9t\xe9');
    expect(libc.cstring(hi)).toBe('\xe9t\xe9');
    expect(libc.strcmp(hi, s)).toBeGreaterThan(0); // unsigned bytes
    const long = 'x'.repeat(10_000);
    const l = libc.newCString(long);
    expect(libc.strlen(l)).toBe(10_000);
    expect(libc.strdup(l)).not.toBe(l);
  });

  it('qsort sorts elements stably with a VA comparator', () => {
    const { libc } = setup();
    const n = 500;
    const base = libc.malloc(n * 12);
    const keys: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = (i * 7919) % 37;
      keys.push(k);
      libc.mmu.store32(base + i * 12, k);
      libc.mmu.store64(base + i * 12 + 4, i);
    }
    libc.qsort(base, n, 12, (a, b) => libc.mmu.load32(a) - libc.mmu.load32(b));
    const got = Array.from({ length: n }, (_, i) => [
      libc.mmu.load32(base + i * 12),
      libc.mmu.load64(base + i * 12 + 4),
    ]);
    const want = keys.map((k, i) => [k, i]).sort((x, y) => x[0]! - y[0]! || x[1]! - y[1]!);
    expect(got).toEqual(want);
  });
});

describe('libc: printf', () => {
  it('formats like C', () => {
    const rd = (): string => 'FROMVA';
    expect(formatPrintf('%15s - %d\n', ['the', 42], rd)).toBe('            the - 42\n');
    expect(formatPrintf('%-15s|', ['ab'], rd)).toBe('ab             |');
    expect(formatPrintf('%x %X %#x %o %%', [255, 255, 255, 8], rd)).toBe('ff FF 0xff 10 %');
    expect(formatPrintf('%05d %+d %d %u %lu', [42, 3, -7, -1, 2 ** 40], rd)).toBe(
      '00042 +3 -7 4294967295 1099511627776',
    );
    expect(formatPrintf('%s %s %.3s %c%c', [0x1000, 0, 'abcdef', 65, 'z'], rd)).toBe('FROMVA (null) abc Az');
    expect(formatPrintf('%*d|%-*d|', [5, 1, 4, 2], rd)).toBe('    1|2   |');
    expect(formatPrintf('%lx %p %p', [0x7fffe5800000, 0x1000, 0], rd)).toBe('7fffe5800000 0x1000 (nil)');
  });

  it('printf stages bytes in emulated memory and writes them to fd 1', () => {
    const { m, libc } = setup();
    const w = libc.newCString('WORD');
    expect(libc.printf('Wordcount: Results (TOP %d of %lu):\n', 3, 10)).toBe(34);
    libc.printf('%15s - %d\n', w, 5);
    libc.printf('%s', 'y'.repeat(10_000));
    expect(m.stdout.join('')).toBe('Wordcount: Results (TOP 3 of 10):\n           WORD - 5\n' + 'y'.repeat(10_000));
  });
});

describe('libc: files', () => {
  it('reads, maps and writes files through the kernel', () => {
    const body = 'hello\nworld\n'.repeat(50_000);
    const { m, libc } = setup({ '/in': body });
    const f = libc.readWholeFile('/in');
    if (typeof f === 'number') throw new Error(`read failed ${f}`);
    expect(f.size).toBe(body.length);
    expect(Buffer.from(readBack(libc, f.va, f.size)).toString()).toBe(body);
    expect(libc.mmu.load8(f.va + f.size)).toBe(0);
    expect(libc.readWholeFile('/nope')).toBe(-2);
    const mp = libc.mapFile('/in');
    if (typeof mp === 'number') throw new Error(`map failed ${mp}`);
    expect(libc.cstring(mp.va).slice(0, 11)).toBe('hello\nworld');
    const fd = libc.sys.open('/out', 0o1 | 0o100 | 0o1000, 0o644);
    expect(libc.writeAll(fd, f.va, f.size)).toBe(f.size);
    expect(Buffer.from(m.files.get('/out')!).toString()).toBe(body);
  });
});

// ------------------------------------------------------------------------------------------------
// True parallelism: several worker threads run the allocator on one SharedArrayBuffer-backed address
// space (a minimal shared machine defined in the worker source below, independent of the fake), with
// blocks handed between threads through a mailbox and freed by a thread other than their allocator.

const SHARED_WORKER = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const HEAP_VA = 0x555555560000, HEAP_SIZE = 32 << 20;
const MMAP_VA = 0x7f0000000000, MMAP_SIZE = 192 << 20;
const CTL = 0, H_OFF = 4096, M_OFF = H_OFF + HEAP_SIZE;
const C_BRK = 0, C_MMAP_PAGES = 1, C_STATE_LO = 2, C_STATE_HI = 3, BOX = 16, NBOX = 32; // mailbox: 8 x i32 per slot
function machine(sab, tid) {
  const u8 = new Uint8Array(sab), dv = new DataView(sab), i32 = new Int32Array(sab);
  const off = (va, n) => {
    if (va >= HEAP_VA && va + n <= HEAP_VA + Atomics.load(i32, C_BRK)) return H_OFF + (va - HEAP_VA);
    if (va >= MMAP_VA && va + n <= MMAP_VA + MMAP_SIZE) return M_OFF + (va - MMAP_VA);
    throw new Error('shared machine: SIGSEGV at 0x' + va.toString(16) + ' (+' + n + ')');
  };
  const a32 = (va) => { const o = off(va, 4); if (o % 4) throw new Error('unaligned atomic'); return o / 4; };
  const mmu = {
    load8: (va) => u8[off(va, 1)],
    load16: (va) => dv.getUint16(off(va, 2), true),
    load32: (va) => Atomics.load(i32, a32(va)) >>> 0,
    load64: (va) => (Atomics.load(i32, a32(va)) >>> 0) + (Atomics.load(i32, a32(va + 4)) >>> 0) * 2 ** 32,
    store8: (va, v) => { u8[off(va, 1)] = v; },
    store16: (va, v) => dv.setUint16(off(va, 2), v, true),
    store32: (va, v) => { Atomics.store(i32, a32(va), v | 0); },
    store64: (va, v) => { Atomics.store(i32, a32(va), (v % 2 ** 32) | 0); Atomics.store(i32, a32(va + 4), Math.floor(v / 2 ** 32) | 0); },
    read: (va, dst, o = 0, len = dst.length - o) => { const s = off(va, len); dst.set(u8.subarray(s, s + len), o); },
    write: (va, src, o = 0, len = src.length - o) => { u8.set(src.subarray(o, o + len), off(va, len)); },
    fill: (va, b, len) => { const s = off(va, len); u8.fill(b, s, s + len); },
    cas32: (va, e, r) => Atomics.compareExchange(i32, a32(va), e | 0, r | 0) >>> 0,
    xadd32: (va, d) => Atomics.add(i32, a32(va), d | 0) >>> 0,
    probe: () => true,
  };
  const mmap = (len) => {
    const pages = Math.ceil(len / 4096);
    const first = Atomics.add(i32, C_MMAP_PAGES, pages);
    if ((first + pages) * 4096 > MMAP_SIZE) return -12;
    return MMAP_VA + first * 4096;
  };
  const sys = {
    mmap: (_a, len) => mmap(len),
    munmap: (va, len) => { u8.fill(0xdd, off(va, len), off(va, len) + len); return 0; },
    mprotect: () => 0,
    mremap: (va, oldLen, newLen) => {
      if (newLen <= oldLen) { mmu.fill(va + newLen, 0xdd, oldLen - newLen); return va; }
      const nv = mmap(newLen);
      if (nv < 0) return nv;
      const s = off(va, oldLen);
      u8.copyWithin(off(nv, oldLen), s, s + oldLen);
      u8.fill(0xdd, s, s + oldLen);
      return nv;
    },
    brk: (addr) => {
      const cur = HEAP_VA + Atomics.load(i32, C_BRK);
      if (addr === 0 || addr < HEAP_VA || addr > HEAP_VA + HEAP_SIZE) return cur;
      if (addr < cur) u8.fill(0, H_OFF + (addr - HEAP_VA), H_OFF + (cur - HEAP_VA));
      Atomics.store(i32, C_BRK, addr - HEAP_VA);
      return addr;
    },
    open: () => -38, read: () => -38, write: () => -38, close: () => -38, fstat: () => -38, lseek: () => -38,
    clone: () => -38, join: () => -38, barrier: () => -38, getpid: () => 1, gettid: () => tid,
    clock_gettime: () => performance.now(),
    exit: (c) => { throw new Error('exit ' + c); },
  };
  return { mmu, sys, pid: 1, tid, cpu: tid, argv: [], seed: 1, report: () => {} };
}
function pattern(tag, n) {
  const b = new Uint8Array(n);
  let x = (tag * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[i] = x & 0xff; }
  return b;
}
(async () => {
  const { register } = await import(workerData.api);
  register();
  const { Libc } = await import(workerData.lib);
  const { sab, id, ops, role } = workerData;
  const u = machine(sab, id + 2);
  const i32 = new Int32Array(sab);
  if (role === 'init') {
    const libc = Libc.init(u, { spinLimitMs: 20000 });
    Atomics.store(i32, C_STATE_LO, libc.stateVa % 2 ** 32 | 0);
    Atomics.store(i32, C_STATE_HI, Math.floor(libc.stateVa / 2 ** 32));
    parentPort.postMessage({ ok: true });
    return;
  }
  const stateVa = (Atomics.load(i32, C_STATE_LO) >>> 0) + Atomics.load(i32, C_STATE_HI) * 2 ** 32;
  const libc = Libc.attach(u, stateVa, { spinLimitMs: 20000 });
  const check = (b, what) => {
    const got = new Uint8Array(b.n);
    u.mmu.read(b.p, got);
    const want = pattern(b.tag, b.n);
    if (Buffer.compare(got, want) !== 0) {
      let i = 0; while (got[i] === want[i]) i++;
      throw new Error('worker ' + id + ' ' + what + ': block 0x' + b.p.toString(16) + ' tag ' + b.tag + ' len ' + b.n + ' differs at +' + i);
    }
  };
  const take = (slot) => {
    const s = BOX + slot * 8;
    if (Atomics.compareExchange(i32, s, 2, 1) !== 2) return null;
    const b = { p: (i32[s + 1] >>> 0) + i32[s + 2] * 2 ** 32, n: i32[s + 3], tag: i32[s + 4] };
    Atomics.store(i32, s, 0);
    return b;
  };
  if (role === 'check') {
    for (let k = 0; k < NBOX; k++) { const b = take(k); if (b) { check(b, 'drain'); libc.free(b.p); } }
    parentPort.postMessage({ ok: true, errs: libc.checkHeap(), stats: libc.mallocStats(), lock: u.mmu.load32(stateVa) });
    return;
  }
  let seed = (id + 1) * 0x9e3779b9 >>> 0;
  const rnd = () => { seed = (seed + 0x6d2b79f5) >>> 0; let t = seed; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const size = () => { const r = rnd(); return r < 0.7 ? Math.floor(rnd() * 512) : r < 0.98 ? 512 + Math.floor(rnd() * 20000) : 130000 + Math.floor(rnd() * 270000); };
  let tagc = 0;
  const newTag = () => id * 1000000 + ++tagc;
  const live = [];
  let handed = 0, adopted = 0;
  for (let i = 0; i < ops; i++) {
    const r = rnd();
    if (r < 0.4 || live.length === 0) {
      const n = size();
      const calloc = rnd() < 0.15;
      const p = calloc ? libc.calloc(1, n) : libc.malloc(n);
      if (p === 0 || p % 16) throw new Error('bad malloc result ' + p);
      if (calloc) { const z = new Uint8Array(n); u.mmu.read(p, z); if (z.some((x) => x !== 0)) throw new Error('calloc not zero'); }
      const b = { p, n, tag: newTag() };
      u.mmu.write(p, pattern(b.tag, n));
      live.push(b);
    } else if (r < 0.65) {
      const b = live.splice(Math.floor(rnd() * live.length), 1)[0];
      check(b, 'free'); libc.free(b.p);
    } else if (r < 0.85) {
      const k = Math.floor(rnd() * live.length);
      const b = live[k];
      check(b, 'realloc');
      const n = size() + 1;
      const q = libc.realloc(b.p, n);
      const keep = Math.min(n, b.n);
      const got = new Uint8Array(keep); u.mmu.read(q, got);
      if (Buffer.compare(got, pattern(b.tag, b.n).subarray(0, keep)) !== 0) throw new Error('realloc lost data');
      live[k] = { p: q, n, tag: newTag() };
      u.mmu.write(q, pattern(live[k].tag, n));
    } else {
      const slot = Math.floor(rnd() * NBOX);
      const s = BOX + slot * 8;
      if (rnd() < 0.5) {
        if (Atomics.compareExchange(i32, s, 0, 1) === 0) {
          const b = live.splice(Math.floor(rnd() * live.length), 1)[0];
          i32[s + 1] = b.p % 2 ** 32 | 0; i32[s + 2] = Math.floor(b.p / 2 ** 32); i32[s + 3] = b.n; i32[s + 4] = b.tag;
          Atomics.store(i32, s, 2);
          handed++;
        }
      } else {
        const b = take(slot);
        if (b) { check(b, 'adopt'); adopted++; if (rnd() < 0.5) libc.free(b.p); else live.push(b); }
      }
    }
  }
  for (const b of live) { check(b, 'final'); libc.free(b.p); }
  libc.release();
  parentPort.postMessage({ ok: true, handed, adopted });
})().catch((e) => parentPort.postMessage({ ok: false, err: String((e && e.stack) || e) }));
`;

describe('libc: real threads on shared memory', () => {
  it('parallel malloc/realloc/free with cross-thread frees keeps data and heap intact', async () => {
    const { Worker } = await import('node:worker_threads');
    const { createRequire } = await import('node:module');
    const req = createRequire(import.meta.url);
    const api = 'file://' + req.resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs');
    const lib = new URL('../src/user/libc.ts', import.meta.url).href;
    const sab = new SharedArrayBuffer(4096 + (32 << 20) + (192 << 20));
    type Msg = {
      ok: boolean;
      err?: string;
      errs?: string[];
      stats?: { nMmaps: number; contended: number };
      lock?: number;
      handed?: number;
      adopted?: number;
    };
    const run = (role: string, id: number, ops = 0): Promise<Msg> =>
      new Promise((resolve, reject) => {
        const w = new Worker(SHARED_WORKER, { eval: true, workerData: { api, lib, sab, id, ops, role } });
        w.once('message', (m: Msg) => {
          void w.terminate();
          resolve(m);
        });
        w.once('error', reject);
      });
    expect(await run('init', 0)).toEqual({ ok: true });
    const results = await Promise.all([1, 2, 3, 4].map((id) => run('work', id, 2500)));
    for (const r of results) expect(r.err ?? '').toBe('');
    expect(results.reduce((s, r) => s + (r.adopted ?? 0), 0)).toBeGreaterThan(0);
    const fin = await run('check', 9);
    expect(fin.err ?? '').toBe('');
    expect(fin.errs).toEqual([]);
    expect(fin.lock).toBe(0);
    expect(fin.stats!.nMmaps).toBe(0);
  });
});
