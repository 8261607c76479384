// pthread-stress: libc's futex-based mutex, condition variables and join under contention.
//
//   argv = [--threads T] [--iterations N] [--items K] [--capacity C] [--timed-ms W] [--relock] [--spin]
//          [--yields Y] [--affinity MASK]
//
// --affinity MASK: every thread first calls sched_setaffinity(0, MASK) (a CPU bitmask).
// Phase 0, with --spin: a user-space spin barrier. Every thread adds itself to a counter (xadd) and
// spins, reading it with plain loads and no syscall, until all T have arrived. With more threads than
// CPUs it ends only if the kernel preempts the spinners (the timer tick) so the others get a CPU.
// With --yields Y, the threads then meet at a kernel barrier and each calls sched_yield Y times (a
// context-switch benchmark on one CPU).
// Phase 1, every thread (main is thread 0): N times, lock one mutex, read a 64-bit counter on another
// page, write it back plus one, unlock. A lost wake-up hangs the run (the hang check names the
// sleepers); a broken mutex loses increments.
// Phase 2, with T >= 2: main produces the items 1..K into a ring of C slots guarded by a second mutex,
// with the condition variables "not empty" and "not full"; threads 1..T-1 consume them and add up how
// many they took, their sum and their sum of squares. Then main sets "done", broadcasts, and joins.
// With --timed-ms W every condition wait has a W ms timeout and loops (pthread_cond_timedwait).
// --relock: every thread locks the phase-1 mutex twice, a self-deadlock on a normal mutex: the
// process must be killed as hung, not run for ever.
//
// Report: { kind: 'pthread-stress', threads, iterations, items, counter, consumed, sum, sumSquares,
// perThread, timeouts }. The host checks it against T·N and the closed forms of 1..K; main also
// exits 1 if they do not hold (or a thread failed), so a parent's wait4 sees the verdict.
// User space: it takes no kernel lock; its locks are the pthread mutexes in its own memory.
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE, ETIMEDOUT } from '../../uapi/abi.ts';
import { UserSignal, type Program, type UserContext } from '../../uapi/program.ts';
import { Libc, SIGABRT } from '../libc.ts';
import { at } from '../../lib/at.ts';
import { intArg } from './args.ts';

export interface PthreadStressOptions {
  threads: number;
  iterations: number;
  items: number;
  capacity: number;
  timedMs: number;
  relock: boolean;
  spin: boolean;
  yields: number;
  affinity: number;
}
export const PTHREAD_STRESS_DEFAULTS: PthreadStressOptions = {
  threads: 2,
  iterations: 20_000,
  items: 20_000,
  capacity: 4,
  timedMs: -1,
  relock: false,
  spin: false,
  yields: 0,
  affinity: 0,
};
/** What main reports (u.report): the host's oracle checks it. */
export interface PthreadStressReport {
  kind: 'pthread-stress';
  threads: number;
  iterations: number;
  items: number;
  /** the phase-1 counter after every thread's increments */
  counter: number;
  /** items the consumers took, their sum and their sum of squares */
  consumed: number;
  sum: number;
  sumSquares: number;
  /** condition waits that timed out (--timed-ms) */
  timeouts: number;
  perThread: Array<{ consumed: number; sum: number; sumSquares: number; timeouts: number }>;
}
export const kPthreadStressMaxThreads = 64;
const kMaxCount = 10_000_000;
const kMaxCapacity = 64;
const kUsage =
  'options: --threads T --iterations N --items K --capacity C --timed-ms W --relock --spin --yields Y --affinity MASK';

/** Parse the program's argv; a string is the one-line error. */
export function parsePthreadStressArgs(argv: readonly string[]): PthreadStressOptions | string {
  const o = { ...PTHREAD_STRESS_DEFAULTS };
  const ints: Record<
    string,
    {
      key: 'threads' | 'iterations' | 'items' | 'capacity' | 'timedMs' | 'yields' | 'affinity';
      min: number;
      max: number;
    }
  > = {
    '--threads': { key: 'threads', min: 1, max: kPthreadStressMaxThreads },
    '--iterations': { key: 'iterations', min: 0, max: kMaxCount },
    '--items': { key: 'items', min: 0, max: kMaxCount },
    '--capacity': { key: 'capacity', min: 1, max: kMaxCapacity },
    '--timed-ms': { key: 'timedMs', min: 1, max: 60_000 },
    '--yields': { key: 'yields', min: 0, max: kMaxCount },
    '--affinity': { key: 'affinity', min: 1, max: 0xffff },
  };
  for (let i = 0; i < argv.length; i++) {
    const a = at(argv, i);
    if (a === '--relock' || a === '--spin') {
      o[a === '--relock' ? 'relock' : 'spin'] = true;
      continue;
    }
    const spec = ints[a];
    if (spec === undefined) return `unknown argument "${a}" (${kUsage})`;
    const n = intArg(a, argv[++i], spec.min, spec.max);
    if (typeof n === 'string') return n;
    o[spec.key] = n;
  }
  return o;
}

// The shared state: page 0 holds the locks and the ring, page 1 the counter, page 2 the per-thread sums.
const S_LIBC = 0; //         u64 libc arena state VA (for attach)
const S_MUTEX = 8; //        pthread_mutex_t of phase 1
const S_QMUTEX = 12; //      pthread_mutex_t of the ring
const S_NOT_EMPTY = 16; //   pthread_cond_t
const S_NOT_FULL = 20; //    pthread_cond_t
const S_DONE = 24; //        u32: the producer is done
const S_ARRIVED = 28; //     u32: threads at the spin barrier (--spin)
const kYieldBarrier = 0x9e1d; // the kernel barrier before --yields
const S_HEAD = 32; //        u64 items taken
const S_TAIL = 40; //        u64 items put
const S_RING = 64; //        u64 × capacity
const S_COUNTER = PAGE_SIZE; // u64, on its own page
const S_SUMS = 2 * PAGE_SIZE; // per thread: u64 consumed, sum, sum of squares, timeouts
const kSumStride = 32;
const kSharedBytes = 3 * PAGE_SIZE;

class Worker {
  timeouts = 0;
  constructor(
    private readonly libc: Libc,
    private readonly o: PthreadStressOptions,
    private readonly base: number,
    private readonly t: number,
  ) {}

  /** phase 0 (--spin): arrive, then spin in user mode until every thread has */
  spinBarrier(): void {
    if (!this.o.spin) return;
    const m = this.libc.mmu;
    m.xadd32(this.base + S_ARRIVED, 1);
    while (m.load32(this.base + S_ARRIVED) < this.o.threads) {
      /* spin: no syscall, only the timer tick can take this CPU away */
    }
  }

  /** --yields: once every thread is here (a kernel barrier), give the CPU away Y times */
  yieldLoop(): void {
    if (this.o.yields === 0) return;
    const sys = this.libc.sys;
    if (this.o.threads > 1) sys.barrier(kYieldBarrier, this.o.threads);
    for (let i = 0; i < this.o.yields; i++) sys.sched_yield();
  }

  /** phase 1: the counter under the mutex */
  count(): void {
    const { libc, base } = this;
    const m = libc.mmu;
    const mutex = base + S_MUTEX;
    if (this.o.relock) {
      libc.pthreadMutexLock(mutex);
      libc.pthreadMutexLock(mutex); // a normal mutex does not know its owner: this sleeps for ever
    }
    for (let i = 0; i < this.o.iterations; i++) {
      libc.pthreadMutexLock(mutex);
      m.store64(base + S_COUNTER, m.load64(base + S_COUNTER) + 1);
      libc.pthreadMutexUnlock(mutex);
    }
  }

  private wait(cond: number): void {
    if (this.libc.pthreadCondWait(this.base + cond, this.base + S_QMUTEX, this.o.timedMs) === ETIMEDOUT)
      this.timeouts++;
  }

  /** phase 2, main: put 1..K into the ring, then say done */
  produce(): void {
    const { libc, base, o } = this;
    const m = libc.mmu;
    const q = base + S_QMUTEX;
    for (let v = 1; v <= o.items; v++) {
      libc.pthreadMutexLock(q);
      while (m.load64(base + S_TAIL) - m.load64(base + S_HEAD) === o.capacity) this.wait(S_NOT_FULL);
      const tail = m.load64(base + S_TAIL);
      m.store64(base + S_RING + (tail % o.capacity) * 8, v);
      m.store64(base + S_TAIL, tail + 1);
      libc.pthreadCondSignal(base + S_NOT_EMPTY);
      libc.pthreadMutexUnlock(q);
    }
    libc.pthreadMutexLock(q);
    m.store32(base + S_DONE, 1);
    libc.pthreadCondBroadcast(base + S_NOT_EMPTY);
    libc.pthreadMutexUnlock(q);
  }

  /** phase 2, threads 1..T-1: take items until the ring is empty and the producer is done */
  consume(): void {
    const { libc, base, o } = this;
    const m = libc.mmu;
    const q = base + S_QMUTEX;
    let n = 0;
    let sum = 0;
    let sq = 0;
    for (;;) {
      libc.pthreadMutexLock(q);
      while (m.load64(base + S_HEAD) === m.load64(base + S_TAIL) && m.load32(base + S_DONE) === 0)
        this.wait(S_NOT_EMPTY);
      const head = m.load64(base + S_HEAD);
      if (head === m.load64(base + S_TAIL)) {
        libc.pthreadMutexUnlock(q);
        break;
      }
      const v = m.load64(base + S_RING + (head % o.capacity) * 8);
      m.store64(base + S_HEAD, head + 1);
      libc.pthreadCondSignal(base + S_NOT_FULL);
      libc.pthreadMutexUnlock(q);
      n++;
      sum += v;
      sq += v * v;
    }
    const r = base + S_SUMS + this.t * kSumStride;
    m.store64(r, n);
    m.store64(r + 8, sum);
    m.store64(r + 16, sq);
  }

  finish(): void {
    this.libc.mmu.store64(this.base + S_SUMS + this.t * kSumStride + 24, this.timeouts);
  }
}

function options(u: UserContext): PthreadStressOptions {
  const o = parsePthreadStressArgs(u.argv);
  if (typeof o === 'string') throw new UserSignal(SIGABRT, 0, `pthread-stress: ${o}`);
  return o;
}

/** --affinity: pin the calling thread, or abort (the host checked the CPUs exist) */
function pin(u: UserContext, o: PthreadStressOptions): void {
  if (o.affinity === 0) return;
  const r = u.sys.sched_setaffinity(0, o.affinity);
  if (r < 0) throw new UserSignal(SIGABRT, 0, `pthread-stress: sched_setaffinity(0, ${o.affinity}) failed (${r})`);
}

function stressMain(u: UserContext): number {
  const o = options(u);
  pin(u, o);
  const libc = Libc.init(u);
  const m = u.mmu;
  const base = u.sys.mmap(0, kSharedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base < 0) throw new UserSignal(SIGABRT, 0, `pthread-stress: mmap of the shared pages failed (${base})`);
  m.store64(base + S_LIBC, libc.stateVa);
  const threads: number[] = [];
  for (let t = 1; t < o.threads; t++) {
    const pt = libc.pthreadCreate('pthread-stress-thread', base + t);
    if (pt < 0) {
      libc.dprintf(2, 'pthread-stress: pthread_create of thread %d failed: %d\n', t, pt);
      return 1;
    }
    threads.push(pt);
  }
  const me = new Worker(libc, o, base, 0);
  me.spinBarrier();
  me.yieldLoop();
  me.count();
  if (o.threads >= 2) me.produce();
  me.finish();
  let bad = 0;
  for (const pt of threads) {
    const tid = libc.pthreadTid(pt);
    const r = libc.pthreadJoin(pt);
    if (r !== 0) {
      libc.dprintf(2, 'pthread-stress: thread tid %d returned %d\n', tid, r);
      bad++;
    }
  }
  const perThread: PthreadStressReport['perThread'] = [];
  let consumed = 0;
  let sum = 0;
  let sumSquares = 0;
  let timeouts = 0;
  for (let t = 0; t < o.threads; t++) {
    const r = base + S_SUMS + t * kSumStride;
    const p = { consumed: m.load64(r), sum: m.load64(r + 8), sumSquares: m.load64(r + 16), timeouts: m.load64(r + 24) };
    perThread.push(p);
    consumed += p.consumed;
    sum += p.sum;
    sumSquares += p.sumSquares;
    timeouts += p.timeouts;
  }
  const counter = m.load64(base + S_COUNTER);
  const rep: PthreadStressReport = {
    kind: 'pthread-stress',
    threads: o.threads,
    iterations: o.iterations,
    items: o.items,
    counter,
    consumed,
    sum,
    sumSquares,
    timeouts,
    perThread,
  };
  u.report(rep);
  // its own verdict too (the exit status a parent gets, as after fork-stress's execve): the host's
  // oracle checks the same closed forms independently
  const k = o.threads >= 2 ? o.items : 0;
  if (
    counter !== o.threads * o.iterations ||
    consumed !== k ||
    sum !== (k * (k + 1)) / 2 ||
    sumSquares !== (k * (k + 1) * (2 * k + 1)) / 6
  ) {
    libc.dprintf(2, 'pthread-stress: counter %d, consumed %d, sum %d: not the closed forms\n', counter, consumed, sum);
    bad++;
  }
  if (o.threads >= 2)
    libc.printf('pthread-stress: counter %d, %d items consumed by %d consumer(s)\n', counter, consumed, o.threads - 1);
  else libc.printf('pthread-stress: counter %d\n', counter);
  return bad ? 1 : 0;
}

function stressThread(u: UserContext, arg: number): number {
  const o = options(u);
  pin(u, o);
  const t = arg % PAGE_SIZE;
  const base = arg - t;
  const libc = Libc.attach(u, u.mmu.load64(base + S_LIBC));
  const w = new Worker(libc, o, base, t);
  w.spinBarrier();
  w.yieldLoop();
  w.count();
  w.consume();
  w.finish();
  return 0;
}

export const pthreadStress: Program = {
  name: 'pthread-stress',
  main: stressMain,
  threads: { 'pthread-stress-thread': stressThread },
};
