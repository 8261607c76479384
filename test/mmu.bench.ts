// Emulated user loads on TLB hits (CpuMmu.load8 / load32) next to raw typed-array loads of the same
// bytes (test/helpers/mmu-bench-worker.ts builds the processor and the loops):
//
//   one page    4096 load8 / 1024 load32 over one 4 KiB page: the MMU's one-page fast path
//   two pages   the same number of loads alternating between two pages: every access misses the
//               one-page fast path and translates through the (shared-memory) TLB, which hits
//   raw         the same loops over the pcache lines themselves (Uint8Array / DataView on pcdata)
//
// The loops run in a worker thread that loads the kernel through workers/tsx-boot.cjs, as the CPU
// workers do: under vitest's module transform each imported binding read in a hot loop costs several ns
// (the in-process column of the table shows it). vitest's ops/s are batches/s (1 op = SAMPLES timed
// samples of 64 Ki loads, i.e. 16 sweeps of 4096 byte loads or 64 of 1024 word loads, plus a message to
// the worker and back); the table printed at the end gives ns per load (median over every timed
// sample) and the emulated/raw ratios.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, bench, describe } from 'vitest';
import {
  buildMmuRig,
  kLoadsPerSample,
  MMU_CASES,
  type MmuBenchReply,
  type MmuBenchRequest,
  type MmuCaseGroup,
} from './helpers/mmu-bench-worker.ts';

const SAMPLES = 40; // timed samples of kLoadsPerSample loads per bench iteration
let phase: 'warmup' | 'run' = 'run';
/** tinybench's setup hook says whether the calls that follow are warm-up: those are not recorded */
const opts = {
  time: 0,
  iterations: 25,
  warmupTime: 0,
  warmupIterations: 3,
  setup: (_t: unknown, mode: 'warmup' | 'run') => {
    phase = mode;
  },
};
const IN_PROCESS_SAMPLES = 150;

const here = path.dirname(fileURLToPath(import.meta.url));
let worker: Worker | undefined;
let pending: { resolve: (ns: number[]) => void; reject: (e: Error) => void } | undefined;
const ns = new Map<string, number[]>(MMU_CASES.map((c) => [c.name, []]));

beforeAll(async () => {
  worker = await new Promise<Worker>((resolve, reject) => {
    const w = new Worker(path.join(here, 'helpers', 'ts-worker.cjs'), {
      workerData: { module: 'test/helpers/mmu-bench-worker.ts' },
    });
    w.once('error', reject);
    w.on('message', (m: MmuBenchReply) => {
      if (m.type === 'ready') resolve(w);
      else if (m.type === 'error') {
        const e = new Error(m.message);
        if (pending) pending.reject(e);
        else reject(e);
        pending = undefined;
      } else if (pending) {
        const p = pending;
        pending = undefined;
        p.resolve(m.ns);
      }
    });
  });
});

async function batch(name: string): Promise<void> {
  const r = await new Promise<number[]>((resolve, reject) => {
    pending = { resolve, reject };
    const req: MmuBenchRequest = { name, samples: SAMPLES };
    worker!.postMessage(req);
  });
  if (phase === 'run') ns.get(name)!.push(...r);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

afterAll(async () => {
  await worker?.terminate();
  if ([...ns.values()].every((x) => x.length === 0)) return;
  // The same loops in this process (through vitest's module transform), for comparison only.
  const rig = buildMmuRig();
  const inProc = new Map(MMU_CASES.map((c) => [c.name, median(rig.time(c.name, IN_PROCESS_SAMPLES))]));
  const groups = [...new Set(MMU_CASES.map((c) => c.group))];
  const pick = (g: MmuCaseGroup, raw: boolean) => MMU_CASES.find((c) => c.group === g && c.raw === raw)!.name;
  const lines = ['', 'emulated loads on TLB hits vs raw typed-array loads, ns per load (median of every timed sample)'];
  lines.push(
    `  ${''.padEnd(18)} ${'-- worker (tsx, as the CPUs run) --'.padStart(44)}   ${'-- in-process (vitest transform) --'.padStart(36)}`,
  );
  lines.push(
    `  ${'case'.padEnd(18)} ${'raw ns'.padStart(10)} ${'emulated ns'.padStart(12)} ${'emulated/raw'.padStart(14)}   ${'raw ns'.padStart(10)} ${'emulated ns'.padStart(12)} ${'ratio'.padStart(8)}`,
  );
  for (const g of groups) {
    const r = median(ns.get(pick(g, true))!);
    const e = median(ns.get(pick(g, false))!);
    const ir = inProc.get(pick(g, true))!;
    const ie = inProc.get(pick(g, false))!;
    lines.push(
      `  ${g.padEnd(18)} ${r.toFixed(2).padStart(10)} ${e.toFixed(2).padStart(12)} ${`${(e / r).toFixed(1)}x`.padStart(14)}   ${ir.toFixed(2).padStart(10)} ${ie.toFixed(2).padStart(12)} ${`${(ie / ir).toFixed(1)}x`.padStart(8)}`,
    );
  }
  const tlb8 = median(ns.get(pick('load8, two pages', false))!) - median(ns.get(pick('load8, one page', false))!);
  lines.push(`  TLB-hit translation (two-page load8 minus one-page load8): ${tlb8.toFixed(1)} ns per access`);
  console.log(lines.join('\n'));
});

for (const g of [...new Set(MMU_CASES.map((c) => c.group))]) {
  describe(`${g} (1 op = ${SAMPLES} x ${kLoadsPerSample} loads, in a worker)`, () => {
    for (const c of MMU_CASES.filter((x) => x.group === g)) bench(c.name, () => batch(c.name), opts);
  });
}
