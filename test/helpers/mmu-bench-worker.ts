// The load loops of test/mmu.bench.ts and the tiny processor they run on.
//
// buildMmuRig(): a tiny machine's shared buffers, CPU 0's Env/Kern/CpuMmu, and an mm slot whose first
// pages are mapped by hand the way the fault path maps them (walk -> pcacheAlloc -> PTE -> rmap), so no
// access below ever faults or reaches the fabric.
//
// main(): the same, as a worker started by ts-worker.cjs, i.e. compiled by tsx exactly like the CPU
// workers. It answers { name, samples } with the ns per load of every timed sample. (Under vitest's module
// transform every imported binding in a hot loop — PAGE_SIZE, kTlbEntries in mmu.ts — becomes a
// property read on a module namespace object, which costs several ns per access and would be measured
// as if it were the MMU's cost; the bench also runs the loops in-process to show that difference.)
import { parentPort } from 'node:worker_threads';
import { DEFAULT_CONFIG, type MachineConfig } from '../../src/kernel/config.ts';
import { Env } from '../../src/kernel/env.ts';
import { Fabric } from '../../src/fabric/ibapi.ts';
import { allocateShared, geometryFor, kCtlPgtableNext, kMmPgd, kMmPid, Shared } from '../../src/kernel/layout.ts';
import { Kern } from '../../src/processor/kern.ts';
import { CpuMmu } from '../../src/processor/mmu.ts';
import { pcacheAlloc } from '../../src/processor/pcache/alloc.ts';
import { pcacheEarlyInit } from '../../src/processor/pcache/init.ts';
import { pcacheAddRmap } from '../../src/processor/pcache/rmap.ts';
import { allocTablePage, mkPte, walk } from '../../src/processor/pgtable.ts';
import { tlbFlushAllLocal } from '../../src/processor/tlb.ts';

/** 4 KiB as a local constant: the loops below must not read an imported binding per iteration. */
const PS = 4096;
const BASE = 0x400000;
const PID = 7;
const SLOT = 0;
const PAGES = 2;
/** loads per timed sample */
export const kLoadsPerSample = 65536;

export type MmuCaseGroup = 'load8, one page' | 'load8, two pages' | 'load32, one page' | 'load32, two pages';
export interface MmuCase {
  name: string;
  group: MmuCaseGroup;
  raw: boolean;
  /** loads per sweep */
  loads: number;
}

export const MMU_CASES: MmuCase[] = [
  { name: 'raw Uint8Array, one page', group: 'load8, one page', raw: true, loads: PS },
  { name: 'mmu.load8, one page (fast path)', group: 'load8, one page', raw: false, loads: PS },
  { name: 'raw Uint8Array, two pages alternating', group: 'load8, two pages', raw: true, loads: PS },
  { name: 'mmu.load8, two pages alternating (TLB hit)', group: 'load8, two pages', raw: false, loads: PS },
  { name: 'raw DataView.getUint32, one page', group: 'load32, one page', raw: true, loads: PS / 4 },
  { name: 'mmu.load32, one page (fast path)', group: 'load32, one page', raw: false, loads: PS / 4 },
  { name: 'raw DataView.getUint32, two pages alternating', group: 'load32, two pages', raw: true, loads: PS / 4 },
  { name: 'mmu.load32, two pages alternating (TLB hit)', group: 'load32, two pages', raw: false, loads: PS / 4 },
];

export interface MmuRig {
  /** one sweep of a case; returns the sum of the loaded values */
  sweep: Record<string, () => number>;
  /**
   * ns per load of `samples` timed samples of a case (after `samples / 4` untimed ones); a sample is
   * kLoadsPerSample loads (several sweeps), so the timer's own cost stays out of the sub-ns raw loops.
   */
  time(name: string, samples: number): number[];
}

export function buildMmuRig(): MmuRig {
  const cfg: MachineConfig = {
    ...DEFAULT_CONFIG,
    cpus: 1,
    pcacheBytes: 64 * PS,
    ways: 4,
    victim: 0,
    logLevel: 'error',
  };
  const sh = new Shared(allocateShared(geometryFor(cfg)));
  pcacheEarlyInit(sh);
  sh.ctl.set(kCtlPgtableNext, 1);
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config: cfg });
  const k = new Kern(env, new Fabric(env));
  const mmu = new CpuMmu(k);
  tlbFlushAllLocal(k); // TLB tags start as 0 (zeroed memory): invalidate them as CPU bring-up does
  sh.mm.set(SLOT, kMmPid, PID);
  sh.mm.set(SLOT, kMmPgd, allocTablePage(sh));
  k.setCurrent(PID, SLOT, 1, 'bench');
  const off: number[] = [];
  for (let i = 0; i < PAGES; i++) {
    const va = BASE + i * PS;
    const ptep = walk(env, SLOT, va, true);
    const line = pcacheAlloc(k, va);
    sh.pgtable.store(ptep, mkPte(line, true));
    if (!pcacheAddRmap(k, line, ptep, va, PID, 0)) throw new Error('mmu bench: rmap pool exhausted');
    off.push(sh.lineOffset(line));
    for (let j = 0; j < PS; j++) sh.pcdata[sh.lineOffset(line) + j] = (j * 31 + i * 7) & 0xff;
  }
  const data = sh.pcdata;
  const view = sh.pcdataView;
  const oa = off[0]!;
  const ob = off[1]!;
  const A = BASE;
  const B = BASE + PS;
  const H = PS / 2;

  const sweep: Record<string, () => number> = {
    'raw Uint8Array, one page': () => {
      let s = 0;
      for (let i = 0; i < PS; i++) s += data[oa + i]!;
      return s;
    },
    'mmu.load8, one page (fast path)': () => {
      let s = 0;
      for (let i = 0; i < PS; i++) s += mmu.load8(A + i);
      return s;
    },
    'raw Uint8Array, two pages alternating': () => {
      let s = 0;
      for (let i = 0; i < H; i++) s += data[oa + i]! + data[ob + i]!;
      return s;
    },
    'mmu.load8, two pages alternating (TLB hit)': () => {
      let s = 0;
      for (let i = 0; i < H; i++) s += mmu.load8(A + i) + mmu.load8(B + i);
      return s;
    },
    'raw DataView.getUint32, one page': () => {
      let s = 0;
      for (let i = 0; i < PS; i += 4) s += view.getUint32(oa + i, true);
      return s;
    },
    'mmu.load32, one page (fast path)': () => {
      let s = 0;
      for (let i = 0; i < PS; i += 4) s += mmu.load32(A + i);
      return s;
    },
    'raw DataView.getUint32, two pages alternating': () => {
      let s = 0;
      for (let i = 0; i < H; i += 4) s += view.getUint32(oa + i, true) + view.getUint32(ob + i, true);
      return s;
    },
    'mmu.load32, two pages alternating (TLB hit)': () => {
      let s = 0;
      for (let i = 0; i < H; i += 4) s += mmu.load32(A + i) + mmu.load32(B + i);
      return s;
    },
  };
  // Each emulated loop must read exactly what its raw twin reads.
  for (const g of new Set(MMU_CASES.map((c) => c.group))) {
    const [r, e] = [true, false].map((raw) => sweep[MMU_CASES.find((c) => c.group === g && c.raw === raw)!.name]!());
    if (r !== e) throw new Error(`mmu bench: ${g}: emulated sum ${e} != raw sum ${r}`);
  }
  let sink = 0;
  return {
    sweep,
    time(name, samples) {
      const fn = sweep[name];
      const c = MMU_CASES.find((x) => x.name === name);
      if (!fn || !c) throw new Error(`mmu bench: no case "${name}"`);
      const reps = Math.max(1, Math.round(kLoadsPerSample / c.loads));
      for (let i = 0; i < (samples / 4) * reps; i++) sink += fn();
      const ns: number[] = [];
      for (let i = 0; i < samples; i++) {
        const t0 = performance.now();
        for (let r = 0; r < reps; r++) sink += fn();
        ns.push(((performance.now() - t0) * 1e6) / (reps * c.loads));
      }
      if (sink === -1) ns.push(0); // keep `sink` observable
      return ns;
    },
  };
}

export interface MmuBenchRequest {
  name: string;
  samples: number;
}
export type MmuBenchReply =
  { type: 'ready' } | { type: 'result'; name: string; ns: number[] } | { type: 'error'; message: string };

export function main(): void {
  const rig = buildMmuRig();
  const post = (m: MmuBenchReply): void => parentPort!.postMessage(m);
  parentPort!.on('message', (req: MmuBenchRequest) => {
    try {
      post({ type: 'result', name: req.name, ns: rig.time(req.name, req.samples) });
    } catch (e) {
      post({ type: 'error', message: String((e as Error).stack ?? e) });
    }
  });
  post({ type: 'ready' });
}
