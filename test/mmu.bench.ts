// Emulated user loads on TLB hits (CpuMmu.load8 / load32) next to raw typed-array loads of the same
// bytes. In-process: a tiny machine's shared buffers, CPU 0's Env/Kern/CpuMmu, and an mm slot whose
// pages are mapped by hand the way the fault path maps them (walk -> pcacheAlloc -> PTE -> rmap), so no
// access below ever faults or reaches the fabric.
//
//   one page    4096 load8 / 1024 load32 over one 4 KiB page: the MMU's one-page fast path
//   two pages   the same number of loads alternating between two pages: every access misses the
//               one-page fast path and translates through the (shared-memory) TLB, which hits
//   raw         the same loops over the pcache lines themselves (Uint8Array / DataView on pcdata)
//
// vitest's ops/s count sweeps (1 op = 4096 byte loads or 1024 word loads); the table printed at the end
// gives ns per load (median over that case's iterations) and the emulated/raw ratios.
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/config.ts';
import { Env } from '../src/env.ts';
import { Fabric } from '../src/fabric/ibapi.ts';
import { allocateShared, geometryFor, kCtlPgtableNext, kMmPgd, kMmPid, Shared } from '../src/layout.ts';
import { Kern } from '../src/processor/kern.ts';
import { CpuMmu } from '../src/processor/mmu.ts';
import { pcacheAddRmap, pcacheAlloc, pcacheEarlyInit } from '../src/processor/pcache.ts';
import { allocTablePage, mkPte, walk } from '../src/processor/pgtable.ts';
import { tlbFlushAllLocal } from '../src/processor/tlb.ts';
import { PAGE_SIZE } from '../src/uapi.ts';

const BASE = 0x400000;
const PID = 7;
const SLOT = 0;
const PAGES = 4;
const opts = { time: 400, iterations: 200, warmupTime: 100, warmupIterations: 50 };

let mmu: CpuMmu;
let data: Uint8Array;
let view: DataView;
/** byte offset in pcdata of the line mapping page i */
const off: number[] = [];
const A = BASE;
const B = BASE + PAGE_SIZE;
/** results feed this so no loop is dead code */
let sink = 0;

beforeAll(() => {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 1, pcacheBytes: 64 * PAGE_SIZE, ways: 4, victim: 0, logLevel: 'error' };
  const geo = geometryFor(cfg);
  const sh = new Shared(allocateShared(geo));
  pcacheEarlyInit(sh);
  sh.ctl[kCtlPgtableNext] = 1;
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: performance.timeOrigin, config: cfg });
  const k = new Kern(env, new Fabric(env));
  mmu = new CpuMmu(k);
  tlbFlushAllLocal(k); // TLB tags start at 0 (zeroed memory): invalidate them as CPU bring-up does
  sh.mm[sh.mmIdx(SLOT, kMmPid)] = PID;
  sh.mm[sh.mmIdx(SLOT, kMmPgd)] = allocTablePage(sh);
  k.setCurrent(PID, SLOT, 1, 'bench');
  for (let i = 0; i < PAGES; i++) {
    const va = BASE + i * PAGE_SIZE;
    const ptep = walk(env, SLOT, va, true);
    const line = pcacheAlloc(k, va);
    Atomics.store(sh.pgtable, ptep, mkPte(line, true));
    if (!pcacheAddRmap(k, line, ptep, va, PID, 0)) throw new Error('mmu bench: rmap pool exhausted');
    off.push(sh.lineOffset(line));
    for (let j = 0; j < PAGE_SIZE; j++) sh.pcdata[sh.lineOffset(line) + j] = (j * 31 + i * 7) & 0xff;
  }
  data = sh.pcdata;
  view = sh.pcdataView;
  // The emulated and the raw loops must read the same bytes.
  let e = 0, r = 0;
  for (let j = 0; j < PAGE_SIZE; j++) { e += mmu.load8(A + j) + mmu.load8(B + j); r += data[off[0]! + j]! + data[off[1]! + j]!; }
  if (e !== r) throw new Error(`mmu bench: emulated sum ${e} != raw sum ${r}`);
});

interface Case { name: string; loads: number; group: string; raw: boolean; fn: () => number }
const CASES: Case[] = [
  {
    name: 'raw Uint8Array, one page', group: 'load8, one page', loads: PAGE_SIZE, raw: true,
    fn: () => { const o = off[0]!; let s = 0; for (let i = 0; i < PAGE_SIZE; i++) s += data[o + i]!; return s; },
  },
  {
    name: 'mmu.load8, one page (fast path)', group: 'load8, one page', loads: PAGE_SIZE, raw: false,
    fn: () => { let s = 0; for (let i = 0; i < PAGE_SIZE; i++) s += mmu.load8(A + i); return s; },
  },
  {
    name: 'raw Uint8Array, two pages alternating', group: 'load8, two pages', loads: PAGE_SIZE, raw: true,
    fn: () => { const a = off[0]!, b = off[1]!; let s = 0; for (let i = 0; i < PAGE_SIZE / 2; i++) s += data[a + i]! + data[b + i]!; return s; },
  },
  {
    name: 'mmu.load8, two pages alternating (TLB hit)', group: 'load8, two pages', loads: PAGE_SIZE, raw: false,
    fn: () => { let s = 0; for (let i = 0; i < PAGE_SIZE / 2; i++) s += mmu.load8(A + i) + mmu.load8(B + i); return s; },
  },
  {
    name: 'raw DataView.getUint32, one page', group: 'load32, one page', loads: PAGE_SIZE / 4, raw: true,
    fn: () => { const o = off[0]!; let s = 0; for (let i = 0; i < PAGE_SIZE; i += 4) s += view.getUint32(o + i, true); return s; },
  },
  {
    name: 'mmu.load32, one page (fast path)', group: 'load32, one page', loads: PAGE_SIZE / 4, raw: false,
    fn: () => { let s = 0; for (let i = 0; i < PAGE_SIZE; i += 4) s += mmu.load32(A + i); return s; },
  },
  {
    name: 'raw DataView.getUint32, two pages alternating', group: 'load32, two pages', loads: PAGE_SIZE / 4, raw: true,
    fn: () => { const a = off[0]!, b = off[1]!; let s = 0; for (let i = 0; i < PAGE_SIZE / 2; i += 4) s += view.getUint32(a + i, true) + view.getUint32(b + i, true); return s; },
  },
  {
    name: 'mmu.load32, two pages alternating (TLB hit)', group: 'load32, two pages', loads: PAGE_SIZE / 4, raw: false,
    fn: () => { let s = 0; for (let i = 0; i < PAGE_SIZE / 2; i += 4) s += mmu.load32(A + i) + mmu.load32(B + i); return s; },
  },
];

/** per case: ns per load of every timed call */
const nsPerLoad = new Map<string, number[]>();

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

afterAll(() => {
  if (nsPerLoad.size === 0) return;
  const lines = ['', 'emulated loads on TLB hits vs raw typed-array loads (ns per load, median of the timed sweeps):'];
  const groups = [...new Set(CASES.map((c) => c.group))];
  for (const g of groups) {
    const raw = CASES.find((c) => c.group === g && c.raw)!;
    const emu = CASES.find((c) => c.group === g && !c.raw)!;
    const r = median(nsPerLoad.get(raw.name) ?? [NaN]);
    const e = median(nsPerLoad.get(emu.name) ?? [NaN]);
    lines.push(`  ${g.padEnd(18)} raw ${r.toFixed(2).padStart(6)} ns   emulated ${e.toFixed(2).padStart(6)} ns   emulated/raw = ${(e / r).toFixed(1)}x`);
  }
  lines.push(`  (sink ${sink & 0xffff})`);
  console.log(lines.join('\n'));
});

for (const g of [...new Set(CASES.map((c) => c.group))]) {
  describe(g, () => {
    for (const c of CASES.filter((x) => x.group === g)) {
      const samples: number[] = [];
      nsPerLoad.set(c.name, samples);
      bench(c.name, () => {
        const t0 = performance.now();
        sink += c.fn();
        samples.push(((performance.now() - t0) * 1e6) / c.loads);
      }, opts);
    }
  });
}
