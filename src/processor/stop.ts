// stop_machine for checkers (kernel/stop_machine.c, much simplified): one context stops every CPU and
// the sweep kthread at a safe point — a point where the context that owns a CPU holds no kernel lock
// (user mode, a task taking a CPU, the CPU's idle loop) — runs a function, then lets them go. Only CPUs
// are stopped: a task off its CPU (asleep or queued) writes only its own thread words and the
// runqueues, which no checker takes for an invariant. A CPU whose idle context owns it counts as
// parked, and a task that takes it parks before it touches anything else. A checker running inside the
// window sees no transient state, so it never reports one as an error. The window is kCtlStopMachine
// (owner ctx + 1, taken by CAS from 0, released by Atomics.store + notify); a parked context sets its
// own kCpuParked (Atomics.store + notify) and keeps answering IPIs. Both functions may be called from
// any context (a CPU, the sweep kthread, the host) on its own thread, holding no kernel lock.
import type { Env } from '../kernel/env.ts';
import { kCpuParked, kCpuState, kCpuStateIdle, kCtlCpusBusy, kCtlShutdown, kCtlStopMachine } from '../kernel/layout.ts';

/** Park here if another context is stopping the machine. Call only where no kernel lock is held. */
export function safePoint(env: Env): void {
  const sh = env.sh;
  const owner = sh.ctl.load(kCtlStopMachine);
  if (owner === 0 || owner === env.ctx + 1) return;
  sh.cpu.store(env.ctx, kCpuParked, 1);
  sh.cpu.notify(env.ctx, kCpuParked);
  // A parked CPU still answers IPIs: a CPU that is not yet parked may be waiting for its ack.
  while (sh.ctl.load(kCtlStopMachine) !== 0 && sh.ctl.load(kCtlShutdown) === 0) {
    env.irq();
    env.wait(sh.ctl.a, kCtlStopMachine, sh.ctl.load(kCtlStopMachine), 0.5, 'wait:stop_machine');
  }
  sh.cpu.store(env.ctx, kCpuParked, 0);
}

/**
 * Stop every other CPU (and the sweep kthread) at a safe point, run fn, release them. The caller must
 * be at a safe point itself (no locks held). `withSweep` tells whether the sweep kthread runs.
 */
export function stopMachine<T>(env: Env, withSweep: boolean, fn: () => T): T {
  const sh = env.sh;
  while (sh.ctl.cas(kCtlStopMachine, 0, env.ctx + 1) !== 0) {
    safePoint(env); // someone else is stopping the machine: be stopped first
    env.irq();
  }
  try {
    const others: number[] = [];
    for (let c = 0; c < sh.geo.ctx.cpus; c++) if (c !== env.ctx) others.push(c);
    if (withSweep && env.ctx !== sh.geo.ctx.sweep) others.push(sh.geo.ctx.sweep);
    for (const c of others) {
      const isCpu = c < sh.geo.ctx.cpus;
      for (let n = 0; ; n++) {
        if (sh.cpu.load(c, kCpuParked) === 1) break;
        if (isCpu && sh.cpu.load(c, kCpuState) === kCpuStateIdle && (sh.ctl.load(kCtlCpusBusy) & (1 << c)) === 0) break;
        if (sh.ctl.load(kCtlShutdown) !== 0) break;
        env.irq();
        if (n > 64) env.wait(sh.cpu.a, sh.cpu.idx(c, kCpuParked), 0, 1, 'wait:parked');
      }
    }
    return fn();
  } finally {
    sh.ctl.store(kCtlStopMachine, 0);
    sh.ctl.notify(kCtlStopMachine);
  }
}
