// pcache misses per second on a real machine (1P-1M, 1 CPU, 256 KiB 4-way pcache, victim cache 8):
// every access of the `script` scenario below is a miss: TLB miss -> walk -> fault -> line allocation
// (evicting the set's LRU line) -> victim cache lookup -> P2M_PCACHE_MISS to M -> 4 KiB copy into the
// line -> PTE -> rmap, then the MMU refills its TLB. The mapping is 64 times the pcache and is swept
// in order, so no line survives until its page is touched again.
//
//   read   PROT_READ mapping, one load per page: clean evictions
//   write  PROT_READ|PROT_WRITE mapping, one store per page: every eviction writes a dirty line back
//          (P2M_PCACHE_FLUSH, another fabric round trip carrying 4 KiB)
//
// One bench iteration is one run of the scenario (process creation, mmap, the sweeps, exit); misses are
// counted from the machine's own statistics (collectStats) before and after the run. misses/s = misses
// / wall time of the run; the table printed at the end also gives the mean fabric time of a miss as
// measured inside Fabric.sendReply.
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Machine } from '../src/host/machine.ts';
import { collectStats, type MachineStats } from '../src/host/summary.ts';
import type { ScriptReport } from '../src/user/programs/script/report.ts';

const PAGES = 4096; // 16 MiB mapping: 64x the pcache
const SWEEPS = 5;
let phase: 'warmup' | 'run' = 'run';
/** tinybench's setup hook says whether the calls that follow are warm-up: those are not recorded */
const opts = {
  time: 0,
  iterations: 5,
  warmupTime: 0,
  warmupIterations: 1,
  setup: (_t: unknown, mode: 'warmup' | 'run') => {
    phase = mode;
  },
};

function scenario(access: 'read' | 'write'): string {
  const len = `0x${(PAGES * 4096).toString(16)}`;
  return [
    `{"scenario": "pcache-bench-${access}", "threads": 1, "description": "${SWEEPS} sweeps of one ${access} per page over ${PAGES} pages"}`,
    `{"op": "mmap", "addr": "0x200000000", "len": "${len}", "prot": "${access === 'read' ? 'PROT_READ' : 'PROT_READ|PROT_WRITE'}", "flags": "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"}`,
    `{"op": "touch", "addr": "0x200000000", "len": "${len}", "access": "${access}", "repeat": ${SWEEPS}}`,
    `{"op": "munmap", "addr": "0x200000000", "len": "${len}"}`,
  ].join('\n');
}

interface RunStats {
  wallMs: number;
  misses: number;
  faults: number;
  flushes: number;
  evictions: number;
  victimHits: number;
  missFabricUs: number;
}
const runs: Record<'read' | 'write', RunStats[]> = { read: [], write: [] };

let m: Machine | undefined;

beforeAll(async () => {
  const cfg: MachineConfig = {
    ...DEFAULT_CONFIG,
    topology: '1P-1M',
    cpus: 1,
    pcacheBytes: 256 * 1024,
    ways: 4,
    logLevel: 'error',
  };
  m = new Machine(cfg, { console() {}, log() {} });
  await m.boot();
});

afterAll(async () => {
  await m?.shutdown();
  const lines = [
    '',
    `pcache misses on 1P-1M, 1 CPU, 256 KiB 4-way pcache, victim 8: ${SWEEPS} sweeps over ${PAGES} pages per run (median run)`,
  ];
  lines.push(
    `  ${'access'.padEnd(7)} ${'misses/run'.padStart(10)} ${'wall ms'.padStart(9)} ${'misses/s'.padStart(10)} ${'µs/miss'.padStart(8)} ${'fabric µs/miss'.padStart(15)} ${'flushes/run'.padStart(12)} ${'evictions/run'.padStart(14)}`,
  );
  for (const a of ['read', 'write'] as const) {
    if (!runs[a].length) continue;
    const sorted = [...runs[a]].sort((x, y) => x.misses / x.wallMs - y.misses / y.wallMs);
    const r = sorted[Math.floor(sorted.length / 2)]!;
    const rate = r.misses / (r.wallMs / 1000);
    lines.push(
      `  ${a.padEnd(7)} ${String(r.misses).padStart(10)} ${r.wallMs.toFixed(0).padStart(9)} ${rate.toFixed(0).padStart(10)} ${(1e6 / rate).toFixed(1).padStart(8)} ${r.missFabricUs.toFixed(1).padStart(15)} ${String(r.flushes).padStart(12)} ${String(r.evictions).padStart(14)}`,
    );
  }
  console.log(lines.join('\n'));
});

const latSum = (st: MachineStats, op: string): number => (st.fabric[op]?.count ?? 0) * (st.fabric[op]?.meanUs ?? 0);
const count = (st: MachineStats, op: string): number => st.fabric[op]?.count ?? 0;

async function runOnce(access: 'read' | 'write'): Promise<void> {
  const before = collectStats(m!.sh);
  const out = await m!.run('script', [scenario(access), `pcache-${access}.jsonl`]);
  const after = collectStats(m!.sh);
  const rep = out.main.reports.find((r) => (r as { kind?: string }).kind === 'script') as ScriptReport | undefined;
  if (out.main.exit !== 0 || !rep || rep.failures !== 0) {
    throw new Error(
      `pcache bench: the ${access} scenario failed (exit ${out.main.exit}, signal ${out.main.signal}): ${rep?.firstFailure?.message ?? out.main.why ?? 'no report'}`,
    );
  }
  const misses = count(after, 'P2M_PCACHE_MISS') - count(before, 'P2M_PCACHE_MISS');
  if (misses < PAGES * SWEEPS) throw new Error(`pcache bench: ${misses} misses, expected at least ${PAGES * SWEEPS}`);
  if (phase === 'run')
    runs[access].push({
      wallMs: out.wallMs,
      misses,
      faults: after.faults.total - before.faults.total,
      flushes: count(after, 'P2M_PCACHE_FLUSH') - count(before, 'P2M_PCACHE_FLUSH'),
      evictions: (after.pcache.nr_pcache_eviction_succeed ?? 0) - (before.pcache.nr_pcache_eviction_succeed ?? 0),
      victimHits: (after.pcache.nr_victim_hit ?? 0) - (before.pcache.nr_victim_hit ?? 0),
      missFabricUs: (latSum(after, 'P2M_PCACHE_MISS') - latSum(before, 'P2M_PCACHE_MISS')) / misses,
    });
}

describe(`pcache misses (1 op = one run: ${SWEEPS} x ${PAGES} misses)`, () => {
  bench('read misses (clean evictions)', () => runOnce('read'), opts);
  bench('write misses (dirty evictions, write-back)', () => runOnce('write'), opts);
});
