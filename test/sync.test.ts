// Kernel locks (src/kernel/sync.ts): single-thread semantics in this thread, then real mutual exclusion between
// two worker threads (test/helpers/sync-worker.ts) incrementing a plain, non-atomic word.
//
// The single-thread tests play "the other CPU" from env.irq: every lock wait services IPIs, so a hook
// installed there runs while the caller waits, can look at the waiter's state and release the lock.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env } from '../src/kernel/env.ts';
import {
  allocateShared,
  geometryFor,
  kCpuLockKind,
  kCpuLockWait,
  RWSEM_READER_MASK,
  RWSEM_WRITER,
  RWSEM_WRITER_WAITING,
  Shared,
} from '../src/kernel/layout.ts';
import {
  bitLock,
  bitTrylock,
  bitUnlock,
  downRead,
  downReadTrylock,
  downWrite,
  LOCK_KIND,
  spinLock,
  spinTrylock,
  spinUnlock,
  upRead,
  upWrite,
} from '../src/kernel/sync.ts';
import {
  BIT,
  kWords,
  W_A,
  W_B,
  W_BITS,
  W_COUNT,
  W_INSIDE,
  W_LOCK,
  W_SEM,
  type SyncMode,
  type SyncRun,
  type SyncWorkerInit,
  type SyncWorkerMsg,
} from './helpers/sync-worker.ts';
import { TestWorker } from './helpers/test-worker.ts';

const config: MachineConfig = { ...DEFAULT_CONFIG, cpus: 2, pcacheBytes: 64 * 4096, ways: 4, victim: 0 };
const bufs = allocateShared(geometryFor(config));
const sh = new Shared(bufs);

const word = (): Int32Array => new Int32Array(new SharedArrayBuffer(8 * 4));

describe('single thread', () => {
  let env: Env;
  /** what the waiter had published while it waited: [kCpuLockWait, kCpuLockKind] at each irq */
  let seen: Array<[number, number]>;
  let irqs: number;
  /** install an irq hook that records the waiter's state and calls `release` at irq number `at` */
  const onIrq = (at: number, release: () => void): void => {
    env.irq = () => {
      irqs++;
      seen.push([sh.cpu.load(0, kCpuLockWait), sh.cpu.load(0, kCpuLockKind)]);
      if (irqs === at) release();
    };
  };
  const lockWait = (): number => sh.cpu.load(0, kCpuLockWait);

  beforeEach(() => {
    env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config });
    seen = [];
    irqs = 0;
  });

  describe('spinlock', () => {
    it('trylock takes a free lock only; unlock frees it; neighbours untouched', () => {
      const a = word();
      a[2] = 7;
      a[4] = 9;
      expect(spinTrylock(a, 3)).toBe(true);
      expect(a[3]).toBe(1);
      expect(spinTrylock(a, 3)).toBe(false);
      expect(a[3]).toBe(1);
      spinUnlock(a, 3);
      expect(a[3]).toBe(0);
      expect(spinTrylock(a, 3)).toBe(true);
      spinUnlock(a, 3);
      expect([a[2], a[4]]).toEqual([7, 9]);
    });

    it('spin_lock on a free lock takes it without waiting', () => {
      const a = word();
      onIrq(1, () => {});
      spinLock(env, a, 1);
      expect(a[1]).toBe(1);
      expect(spinTrylock(a, 1)).toBe(false);
      expect(irqs).toBe(0);
      spinUnlock(a, 1);
      expect(a[1]).toBe(0);
    });

    it('spin_lock on a held lock services IPIs, publishes what it waits on, and gets it when released', () => {
      const a = word();
      expect(spinTrylock(a, 1)).toBe(true); // "another CPU" holds it
      onIrq(1, () => spinUnlock(a, 1));
      spinLock(env, a, 1, 41);
      expect(irqs).toBe(1);
      expect(seen[0]).toEqual([42, LOCK_KIND.spinlock]);
      expect(a[1]).not.toBe(0);
      expect(spinTrylock(a, 1)).toBe(false);
      expect(lockWait()).toBe(0); // cleared once acquired
      spinUnlock(a, 1);
      expect(a[1]).toBe(0);
    });

    it('a long wait goes to sleep (lock word 2 = locked with sleepers) and still gets the lock', () => {
      const a = word();
      expect(spinTrylock(a, 1)).toBe(true);
      onIrq(10, () => spinUnlock(a, 1));
      spinLock(env, a, 1);
      expect(irqs).toBe(10);
      expect(a[1]).toBe(2);
      expect(spinTrylock(a, 1)).toBe(false);
      expect(lockWait()).toBe(0);
      spinUnlock(a, 1);
      expect(a[1]).toBe(0);
    });
  });

  describe('bit lock', () => {
    it('trylock/unlock touch only their bit', () => {
      const a = word();
      a[0] = 0x81 | (1 << 20);
      expect(bitTrylock(a, 0, BIT)).toBe(true);
      expect(a[0]).toBe(0x81 | (1 << 20) | BIT);
      expect(bitTrylock(a, 0, BIT)).toBe(false);
      expect(bitTrylock(a, 0, 1 << 4)).toBe(true); // another bit of the same word is another lock
      bitUnlock(a, 0, BIT);
      expect(a[0]).toBe(0x81 | (1 << 20) | (1 << 4));
      bitUnlock(a, 0, 1 << 4);
      expect(a[0]).toBe(0x81 | (1 << 20));
    });

    it('bitLock takes a free bit at once, waits for a held one', () => {
      const a = word();
      a[0] = 1;
      onIrq(1, () => {});
      bitLock(env, a, 0, BIT, 5);
      expect(irqs).toBe(0);
      expect(a[0]).toBe(1 | BIT);
      onIrq(3, () => bitUnlock(a, 0, BIT));
      bitLock(env, a, 0, BIT, 5);
      expect(irqs).toBe(3);
      expect(seen[0]).toEqual([6, LOCK_KIND.pcache]);
      expect(a[0]).toBe(1 | BIT);
      expect(lockWait()).toBe(0);
      bitUnlock(a, 0, BIT);
      expect(a[0]).toBe(1);
    });
  });

  describe('rw semaphore', () => {
    it('readers count up and down; trylock and downRead are shared', () => {
      const s = word();
      expect(downReadTrylock(s, 0)).toBe(true);
      expect(downReadTrylock(s, 0)).toBe(true);
      onIrq(1, () => {});
      downRead(env, s, 0, 3);
      expect(irqs).toBe(0);
      expect(s[0]! & RWSEM_READER_MASK).toBe(3);
      expect(s[0]! & (RWSEM_WRITER | RWSEM_WRITER_WAITING)).toBe(0);
      upRead(s, 0);
      upRead(s, 0);
      expect(s[0]).toBe(1);
      upRead(s, 0);
      expect(s[0]).toBe(0);
    });

    it('a writer excludes readers: trylock fails under a writer, downRead waits for upWrite', () => {
      const s = word();
      downWrite(env, s, 0, 3);
      expect(s[0]).toBe(RWSEM_WRITER);
      expect(downReadTrylock(s, 0)).toBe(false);
      expect(s[0]).toBe(RWSEM_WRITER);
      onIrq(2, () => upWrite(s, 0));
      downRead(env, s, 0, 3);
      expect(irqs).toBe(2);
      expect(seen[0]).toEqual([4, LOCK_KIND.mmap_sem_read]);
      expect(s[0]).toBe(1);
      expect(lockWait()).toBe(0);
      upRead(s, 0);
      expect(s[0]).toBe(0);
    });

    it('a writer waits for every reader, announcing itself; then holds it alone', () => {
      const s = word();
      expect(downReadTrylock(s, 0)).toBe(true);
      expect(downReadTrylock(s, 0)).toBe(true);
      let waitingSeen = 0;
      env.irq = () => {
        irqs++;
        seen.push([lockWait(), sh.cpu.load(0, kCpuLockKind)]);
        if (s[0]! & RWSEM_WRITER_WAITING) waitingSeen++;
        if (irqs <= 2) upRead(s, 0); // the two readers leave, one per IPI
      };
      downWrite(env, s, 0, 8);
      expect(irqs).toBe(2);
      expect(waitingSeen).toBe(2);
      expect(seen[0]).toEqual([9, LOCK_KIND.mmap_sem_write]);
      expect(s[0]).toBe(RWSEM_WRITER); // the waiting bit is gone once it holds the lock
      expect(lockWait()).toBe(0);
      expect(downReadTrylock(s, 0)).toBe(false);
      // a second writer waits for the first
      onIrq(1, () => upWrite(s, 0));
      irqs = 0;
      downWrite(env, s, 0, 8);
      expect(irqs).toBe(1);
      expect(s[0]).toBe(RWSEM_WRITER);
      upWrite(s, 0);
      expect(s[0]).toBe(0);
    });

    it('a waiting writer blocks new downRead, but not downReadTrylock (nested read sections)', () => {
      const s = word();
      s[0] = RWSEM_WRITER_WAITING | 1; // one reader in, a writer queued
      expect(downReadTrylock(s, 0)).toBe(true);
      expect(s[0]).toBe(RWSEM_WRITER_WAITING | 2);
      onIrq(1, () => Atomics.and(s, 0, ~RWSEM_WRITER_WAITING)); // the writer gives up
      downRead(env, s, 0, 1);
      expect(irqs).toBe(1);
      expect(s[0]).toBe(3);
    });
  });
});

describe('two worker threads', () => {
  const words = new SharedArrayBuffer(kWords * 4);
  const w = new Int32Array(words);
  const workers: Array<TestWorker<SyncWorkerMsg>> = [];
  let round = 0;
  const N = 20000;

  beforeAll(async () => {
    for (const ctx of [0, 1]) {
      const init: SyncWorkerInit = { module: 'test/helpers/sync-worker.ts', bufs, config, ctx, words };
      workers.push(new TestWorker<SyncWorkerMsg>(`cpu${ctx}`, init));
    }
    for (const wk of workers) await wk.expect('ready');
  });

  afterAll(async () => {
    await Promise.all(workers.map((wk) => wk.terminate()));
  });

  const run = async (mode: SyncMode): Promise<Array<Extract<SyncWorkerMsg, { type: 'done' }>>> => {
    w[W_COUNT] = 0;
    const msg: SyncRun = { mode, iterations: N, round: ++round };
    for (const wk of workers) wk.post(msg);
    return Promise.all(workers.map((wk) => wk.expect('done')));
  };

  it('spinLock: 2 x 20000 plain increments under the lock give exactly 40000', async () => {
    w[W_LOCK] = 0;
    await run('spin');
    expect(w[W_COUNT]).toBe(2 * N);
    expect(w[W_LOCK]).toBe(0);
  });

  it('bitLock: 2 x 20000 plain increments give exactly 40000, other bits of the word kept', async () => {
    w[W_BITS] = 1 | (1 << 20);
    await run('bit');
    expect(w[W_COUNT]).toBe(2 * N);
    expect(w[W_BITS]).toBe(1 | (1 << 20));
  });

  it('downWrite/upWrite: 2 x 20000 plain increments give exactly 40000', async () => {
    w[W_SEM] = 0;
    await run('rwsem-write');
    expect(w[W_COUNT]).toBe(2 * N);
    expect(w[W_SEM]).toBe(0);
  });

  it('downRead never sees a writer inside its critical section', async () => {
    w[W_SEM] = 0;
    w[W_A] = 0;
    w[W_B] = 0;
    w[W_INSIDE] = 0;
    const [writer, reader] = await run('rwsem-mixed');
    expect(writer!.mismatches).toBe(0);
    expect(reader!.mismatches).toBe(0);
    expect(reader!.reads).toBe(N);
    expect([w[W_A], w[W_B], w[W_INSIDE]]).toEqual([N, N, 0]);
    expect(w[W_SEM]).toBe(0);
  });
});
