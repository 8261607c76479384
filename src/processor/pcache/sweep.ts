// kevict_sweepd (managers/processor/pcache/sweep.c): a P kernel thread on its own worker that ages
// the pcache's LRU lists while the CPUs run, racing with faults and evictions on the same sets.
// pcacheSweepSet holds the set lock and only trylocks lines (a busy line is left for the next
// pass); the PTE locks are trylocked by pcacheReferencedTrylock.
import { workerEnv } from '../../kernel/env.ts';
import { Fabric } from '../../fabric/ibapi.ts';
import { hostPort, type WorkerMsg } from '../../kernel/workerdata.ts';
import { kCtlShutdown, kMetaPrev, kSetLruTail, PC_valid, ST_SWEEP } from '../../kernel/layout.ts';
import { S } from '../../kernel/stats.ts';
import { Kern } from '../kern.ts';
import { safePoint } from '../stop.ts';

import { lockSet, lruAddHead, lruDel, pcacheFlags, trylockPcache, unlockPcache, unlockSet } from './meta.ts';
import { pcacheReferencedTrylock } from './rmap.ts';

/**
 * kevict_sweepd's pass over one set (sweep.c): from the LRU tail, lines whose PTEs were referenced
 * since the last pass get their accessed bits cleared and move to the head, so eviction finds cold
 * lines at the tail. Only trylocks, like the sweep: a busy line is left for the next pass.
 */
export function pcacheSweepSet(k: Kern, set: number): number {
  const sh = k.sh;
  let moved = 0;
  lockSet(k, set);
  const lines: number[] = [];
  for (let e = sh.set.get(set, kSetLruTail); e !== 0; e = sh.meta.get(e - 1, kMetaPrev)) lines.push(e - 1);
  for (const line of lines) {
    if ((pcacheFlags(sh, line) & PC_valid) === 0 || !trylockPcache(sh, line)) continue;
    if (pcacheReferencedTrylock(k, line)) {
      lruDel(sh, set, line);
      lruAddHead(sh, set, line);
      moved++;
    }
    unlockPcache(sh, line);
  }
  unlockSet(k, set);
  return moved;
}

export function kevictSweepd(k: Kern, intervalMs: number): void {
  const sh = k.sh;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (sh.ctl.load(kCtlShutdown) === 0) {
    k.env.stat(S.nr_sweep_run);
    for (let set = 0; set < sh.geo.nrSets && sh.ctl.load(kCtlShutdown) === 0; set++) {
      safePoint(k.env);
      k.env.sched('sweep:set');
      k.env.stat(S.nr_sweep_nr_pset);
      const moved = pcacheSweepSet(k, set);
      if (moved) k.env.stat(S.nr_sweep_nr_moved_pcm, moved);
    }
    k.env.wait(nap, 0, 0, intervalMs, 'wait:sweep_nap');
  }
}

export function main(): void {
  const port = hostPort();
  const { init, sh, env } = workerEnv((c) => c.sweep, 'kevict_sweepd', ST_SWEEP);
  const k = new Kern(env, new Fabric(env));
  env.irq = () => {}; // a kernel thread is not a CPU: no IPIs to answer
  env.printk('notice', `kevict_sweepd: started, interval ${init.config.sweepIntervalMs} ms over ${sh.geo.nrSets} sets`);
  port.postMessage({ type: 'online', who: 'sweep' } satisfies WorkerMsg);
  kevictSweepd(k, init.config.sweepIntervalMs);
}
