// The processor kernel's per-context handle: one per task worker and per CPU idle context (and one per
// P kernel thread). A task's Kern follows its task from CPU to CPU (its Env is rebound by sched.ts).
// Threaded through every P kernel path instead of a pile of positional arguments. (The host builds one
// too, for the checkers.) Its fields are worker-local state, used only on its own thread; it takes no
// lock: mmSlotOf reads kMmPid with Atomics.load (the slot may be freed right after), setCurrent stores
// the CPU's own kCpuPid (owner, Atomics.store).
import type { Env } from '../kernel/env.ts';
import type { Fabric } from '../fabric/ibapi.ts';
import { kCpuPid, kMaxProcs, kMmPid, type Shared } from '../kernel/layout.ts';

export interface MmuHooks {
  /** drop the CPU-private fast translation (after any local TLB flush) */
  invalidateFast(): void;
}

/** What the kernel asks of the scheduler (processor/sched.ts TaskSched), on a task's Kern only. */
export interface TaskHooks {
  /** the timer tick in user mode, and syscall return: switch out if the slice is used and a task waits */
  tick(): void;
  /** sched_yield */
  yield(): void;
  /** after the task's own affinity changed: move off this CPU if it is no longer allowed */
  checkAffinity(): void;
  /** schedule() off the CPU until done() holds (TASK_INTERRUPTIBLE); returns on a CPU, maybe another */
  sleep(a: Int32Array, i: number, done: () => boolean): void;
}

export class Kern {
  readonly sh: Shared;
  /** pid and mm slot of the user thread this CPU runs (0 / -1 when idle or a kthread) */
  pid = 0;
  mmSlot = -1;
  tid = 0;
  comm = '';
  /** this CPU holds its own mm's P-side mmap_sem for write (an address-space change is in progress) */
  mmapWriteHeld = false;
  mmu: MmuHooks = { invalidateFast: () => {} };
  /** the scheduler, when this Kern is a task's (absent for the idle contexts, kthreads, the host, tests) */
  task: TaskHooks | undefined;
  /** deterministic per-context PRNG (random eviction, jitter) */
  private rng: number;

  constructor(
    readonly env: Env,
    readonly fab: Fabric,
  ) {
    this.sh = env.sh;
    this.rng = (env.config.seed * 2654435761 + env.ctx * 40503 + 1) >>> 0;
  }

  get cpu(): number {
    return this.env.cpu;
  }

  /** a task's PRNG follows the task, not a CPU: seed it from the run's seed and the tid */
  seedRandom(salt: number): void {
    this.rng = (this.env.config.seed * 2654435761 + salt * 40503 + 7) >>> 0;
  }

  random(): number {
    // mulberry32
    let t = (this.rng = (this.rng + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** mm slot of a pid, -1 if the process is gone. */
  mmSlotOf(pid: number): number {
    if (pid === this.pid && this.mmSlot >= 0) return this.mmSlot;
    for (let s = 0; s < kMaxProcs; s++) if (this.sh.mm.load(s, kMmPid) === pid) return s;
    return -1;
  }

  setCurrent(pid: number, mmSlot: number, tid: number, comm: string): void {
    this.pid = pid;
    this.mmSlot = mmSlot;
    this.tid = tid;
    this.comm = comm;
    if (this.env.cpu >= 0) this.sh.cpu.store(this.env.ctx, kCpuPid, pid);
  }
}
