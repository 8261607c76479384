// kevict_sweepd (managers/processor/pcache/sweep.c): a P kernel thread on its own worker that ages
// the pcache's LRU lists while the CPUs run, racing with faults and evictions on the same sets.
import { parentPort, workerData } from 'node:worker_threads';
import { Env } from '../kernel/env.ts';
import { Fabric } from '../fabric/ibapi.ts';
import type { WorkerInit, WorkerMsg } from '../kernel/workerdata.ts';
import { kCtlShutdown, Shared } from '../kernel/layout.ts';
import { S } from '../kernel/stats.ts';
import { Kern } from './kern.ts';
import { pcacheSweepSet } from './pcache.ts';
import { safePoint } from './stop.ts';

export function kevictSweepd(k: Kern, intervalMs: number): void {
  const sh = k.sh;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Atomics.load(sh.ctl, kCtlShutdown) === 0) {
    k.env.stat(S.nr_sweep_run);
    for (let set = 0; set < sh.geo.nrSets && Atomics.load(sh.ctl, kCtlShutdown) === 0; set++) {
      safePoint(k.env);
      k.env.stat(S.nr_sweep_nr_pset);
      const moved = pcacheSweepSet(k, set);
      if (moved) k.env.stat(S.nr_sweep_nr_moved_pcm, moved);
    }
    Atomics.wait(nap, 0, 0, intervalMs);
  }
}

export function main(): void {
  const init = workerData as WorkerInit;
  const sh = new Shared(init.bufs);
  const env = new Env(sh, { ctx: sh.geo.ctx.sweep, cpu: -1, name: 'kevict_sweepd', bootEpochMs: init.bootEpochMs, config: init.config });
  const k = new Kern(env, new Fabric(env));
  env.irq = () => {}; // a kernel thread is not a CPU: no IPIs to answer
  env.printk('notice', `kevict_sweepd: started, interval ${init.config.sweepIntervalMs} ms over ${sh.geo.nrSets} sets`);
  parentPort!.postMessage({ type: 'online', who: 'sweep' } satisfies WorkerMsg);
  kevictSweepd(k, init.config.sweepIntervalMs);
}
