// One CPU of the processor component, as its idle context: bring-up (cpuhp-style callbacks registered
// by subsystems), then cpu_idle (sched.ts cpuIdleLoop) until shutdown. User threads are tasks with
// workers of their own (task.ts); this worker owns its CPU only while no task does.
// Called from the CPU worker's own thread only. Locks: none of its own; the idle loop takes rq->lock.
// Its words: its per-CPU words and its bit of kCtlCpusOnline (Atomics), its statistics row while it
// owns the CPU. It enters safePoint only with no kernel lock held.
import { Env } from '../kernel/env.ts';
import { Fabric } from '../fabric/ibapi.ts';
import { hostPort, type WorkerInit, type WorkerMsg } from '../kernel/workerdata.ts';
import {
  kCpuKernelEnterMs,
  kCpuState,
  kCpuStateIdle,
  kCtlCpuBootCounter,
  kCtlCpusOnline,
  kStatsPerContext,
  Shared,
  stCpu,
} from '../kernel/layout.ts';
import { workerData } from 'node:worker_threads';
import { Kern } from './kern.ts';
import { cpuIdleLoop } from './sched.ts';
import { handleIpis, smpcfdPrepareCpu, smpcfdPrepared, tlbFlushAllLocal } from './tlb.ts';

/** A subsystem's per-CPU bring-up callback (cpuhp_setup_state): name as Linux logs it. */
interface CpuhpStep {
  name: string;
  startup: (c: Cpu) => void;
}

const CPUHP_STEPS: CpuhpStep[] = [
  // First: this CPU's statistics row starts from zero, so the steps below may count into it.
  {
    name: 'stats:online',
    startup: (c) => {
      for (let i = 0; i < kStatsPerContext; i++) c.sh.stats.set(c.env.ctx, i, 0);
    },
  },
  {
    // kernel/smp.c: the boot CPU's csd array comes from call_function_init, a secondary CPU's from
    // cpu_online_callback -> smpcfd_prepare_cpu. cpuhp-missing (LegoOS 2018-02-05): secondary CPUs
    // skip it, so their cfd_data.csd stays NULL and per_cpu_ptr(NULL, target) is the target's
    // call_single_queue: the first multi-target IPI they send links that queue head into itself.
    name: 'smpcfd:prepare',
    startup: (c) => {
      if (c.env.cpu !== 0 && c.env.bugs.has('cpuhp-missing')) {
        c.env.bugRan('cpuhp-missing');
        return;
      }
      smpcfdPrepareCpu(c.sh, c.env.cpu);
    },
  },
  { name: 'x86/tlb:online', startup: (c) => tlbFlushAllLocal(c.k) },
  {
    name: 'pcache/percpu:online',
    startup: (c) => {
      c.k.mmu.invalidateFast();
    },
  },
];

export class Cpu {
  readonly sh: Shared;
  readonly env: Env;
  readonly k: Kern;

  constructor(init: WorkerInit) {
    this.sh = new Shared(init.bufs);
    const id = this.sh.ctl.add(kCtlCpuBootCounter, 1);
    if (id >= this.sh.geo.ctx.cpus)
      throw new Error(`cpu bring-up: more CPU workers than --cpus ${this.sh.geo.ctx.cpus}`);
    this.env = new Env(this.sh, {
      ctx: id,
      cpu: id,
      name: `cpu${id}`,
      bootEpochMs: init.bootEpochMs,
      config: init.config,
    });
    this.k = new Kern(this.env, new Fabric(this.env));
    if (this.env.cs) this.env.cs.self = stCpu(id);
    this.bringUp();
  }

  private bringUp(): void {
    const { env, sh } = this;
    sh.cpu.store(env.ctx, kCpuKernelEnterMs, -1);
    for (const step of CPUHP_STEPS) {
      step.startup(this);
      env.printk('debug', `cpuhp/${env.cpu}: ${step.name}`);
    }
    env.irq = () => handleIpis(this.k);
    sh.cpu.store(env.ctx, kCpuState, kCpuStateIdle);
    sh.ctl.or(kCtlCpusOnline, 1 << env.cpu);
    const csdDone = smpcfdPrepared(sh, env.cpu);
    env.printk(
      'notice',
      `CPU${env.cpu}: online (${CPUHP_STEPS.map((s) => (s.name === 'smpcfd:prepare' && !csdDone ? `${s.name} SKIPPED` : s.name)).join(', ')})`,
    );
  }
}

/** The CPU worker's entry (workers/cpu.cjs): bring the CPU up, say so, and idle. */
export function main(): void {
  const cpu = new Cpu(workerData as WorkerInit);
  hostPort().postMessage({ type: 'online', who: cpu.env.name } satisfies WorkerMsg);
  cpuIdleLoop(cpu.k); // cpu_idle: own the CPU whenever no task does, until shutdown
}
