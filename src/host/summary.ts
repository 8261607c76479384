// Statistics of a run, read from every context's counter row at the end (each row has one writer).
// Called on the host thread; the rows are read with plain Float64 loads and no lock (there is none):
// exact once the workers stopped writing (after run/shutdown), a snapshot if read mid-run (heartbeat).
// formatStats is pure.
import { ALL_OPS } from '../fabric/opcodes.ts';
import type { Shared } from '../kernel/layout.ts';
import {
  FAB_BYTES_IN,
  FAB_BYTES_OUT,
  FAB_COUNT,
  FAB_HIST,
  FAB_LAT_SUM,
  kFabricBase,
  kFabricHistBuckets,
  kFabricSlot,
  kSyscallBase,
  BUG_EVENTS,
  PCACHE_EVENTS,
  S,
  SYSCALL_NAMES,
} from '../kernel/stats.ts';
import { at } from '../lib/at.ts';

export interface FabricOpStats {
  count: number;
  bytesOut: number;
  bytesIn: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
}
export interface MachineStats {
  pcache: Record<string, number>;
  /** per set totals from struct pcache_set counters (alloc, fill from memory/victim, evictions) */
  fabric: Record<string, FabricOpStats>;
  tlb: {
    fills: number;
    localFlushes: number;
    fullLocalFlushes: number;
    shootdowns: number;
    ipisSent: number;
    ipisReceived: number;
  };
  syscalls: Record<string, number>;
  syscallErrors: number;
  faults: { total: number; spurious: number; segfaults: number };
  mremap: { psetSame: number; psetDiff: number; pagesMoved: number };
  /** FUTEX_WAITs that queued, waiters a FUTEX_WAKE unqueued, and waiters that unqueued themselves at their timeout */
  futex: { waits: number; woken: number; timedOut: number };
  /** shared pages on P: fills that mapped an alias's line, alias-scan retries, write-backs at unmap */
  shared: { aliasFills: number; retries: number; zapFlushes: number; evictions: number };
  /**
   * per CPU (splitkern top): faults and syscalls of the tasks that ran there; context switches, time
   * slices used up (preemptions), sched_yields, migrations onto it; times it went lazy (idle keeping
   * an mm's TLB) and left an mm on a flush IPI (leave_mm)
   */
  perCpu: Array<{
    cpu: number;
    faults: number;
    syscalls: number;
    switches: number;
    preemptions: number;
    yields: number;
    migrations: number;
    lazyTlb: number;
    leaveMm: number;
  }>;
  /** nr_bug_<flag>: executions of each bug flag's broken branch (0 on the fixed kernel) */
  bugs: Record<string, number>;
}

export function collectStats(sh: Shared): MachineStats {
  const nCtx = sh.geo.ctx.total;
  const sum = (i: number): number => {
    let s = 0;
    for (let c = 0; c < nCtx; c++) s += sh.stats.get(c, i);
    return s;
  };
  const pcache: Record<string, number> = {};
  for (const name of PCACHE_EVENTS) pcache[name] = sum(S[name]);
  const fabric: Record<string, FabricOpStats> = {};
  for (const op of ALL_OPS) {
    const base = kFabricBase + op.slot * kFabricSlot;
    const count = sum(base + FAB_COUNT);
    if (count === 0) continue;
    const hist: number[] = [];
    for (let b = 0; b < kFabricHistBuckets; b++) hist.push(sum(base + FAB_HIST + b));
    fabric[op.name] = {
      count,
      bytesOut: sum(base + FAB_BYTES_OUT),
      bytesIn: sum(base + FAB_BYTES_IN),
      meanUs: round(sum(base + FAB_LAT_SUM) / count),
      p50Us: percentile(hist, count, 0.5),
      p99Us: percentile(hist, count, 0.99),
    };
  }
  const syscalls: Record<string, number> = {};
  SYSCALL_NAMES.forEach((n, i) => {
    const v = sum(kSyscallBase + i);
    if (v) syscalls[n] = v;
  });
  const bugs: Record<string, number> = {};
  for (const name of BUG_EVENTS) bugs[name] = sum(S[name]);
  const perCpu = [];
  for (let c = 0; c < sh.geo.ctx.cpus; c++)
    perCpu.push({
      cpu: c,
      faults: sh.stats.get(c, S.nr_pgfault),
      syscalls: sh.stats.get(c, S.syscall),
      switches: sh.stats.get(c, S.nr_switches),
      preemptions: sh.stats.get(c, S.nr_preempt),
      yields: sh.stats.get(c, S.nr_yield),
      migrations: sh.stats.get(c, S.nr_migrations),
      lazyTlb: sh.stats.get(c, S.nr_lazy_tlb),
      leaveMm: sh.stats.get(c, S.nr_leave_mm),
    });
  return {
    pcache,
    fabric,
    tlb: {
      fills: sum(S.tlb_fill),
      localFlushes: sum(S.tlb_flush_local),
      fullLocalFlushes: sum(S.tlb_flush_all_local),
      shootdowns: sum(S.tlb_shootdown),
      ipisSent: sum(S.ipi_sent),
      ipisReceived: sum(S.ipi_received),
    },
    syscalls,
    syscallErrors: sum(S.syscall_error),
    faults: { total: sum(S.nr_pgfault), spurious: sum(S.spurious_fault), segfaults: sum(S.segfault) },
    mremap: {
      psetSame: sum(S.nr_mremap_pset_same),
      psetDiff: sum(S.nr_mremap_pset_diff),
      pagesMoved: sum(S.mremap_move_pages),
    },
    futex: { waits: sum(S.futex_wait), woken: sum(S.futex_wake), timedOut: sum(S.futex_timedout) },
    shared: {
      aliasFills: sum(S.nr_pcache_fill_shm_alias),
      retries: sum(S.nr_pcache_fill_shm_retry),
      zapFlushes: sum(S.nr_shm_zap_flush),
      evictions: sum(S.nr_shm_evict),
    },
    perCpu,
    bugs,
  };
}

const round = (x: number): number => Math.round(x * 10) / 10;

/** Upper bound (µs) of the log2 bucket holding the q-quantile: bucket b covers [2^(b-1), 2^b). */
function percentile(hist: number[], count: number, q: number): number {
  const target = Math.ceil(count * q);
  let acc = 0;
  for (let b = 0; b < hist.length; b++) {
    acc += at(hist, b);
    if (acc >= target) return b === 0 ? 1 : 2 ** b;
  }
  return 2 ** (hist.length - 1);
}

/** The human-readable statistics block. */
export function formatStats(st: MachineStats): string {
  const out: string[] = [];
  out.push('pcache (LegoOS counters):');
  const names = Object.entries(st.pcache).filter(([, v]) => v !== 0);
  for (const [n, v] of names) out.push(`  ${n.padEnd(40)} ${v}`);
  out.push('fabric:');
  out.push(
    `  ${'opcode'.padEnd(20)} ${'msgs'.padStart(9)} ${'bytes out'.padStart(12)} ${'bytes in'.padStart(12)} ${'mean µs'.padStart(9)} ${'p50 µs≤'.padStart(8)} ${'p99 µs≤'.padStart(8)}`,
  );
  for (const [n, f] of Object.entries(st.fabric)) {
    out.push(
      `  ${n.padEnd(20)} ${String(f.count).padStart(9)} ${String(f.bytesOut).padStart(12)} ${String(f.bytesIn).padStart(12)} ${f.meanUs.toFixed(1).padStart(9)} ${String(f.p50Us).padStart(8)} ${String(f.p99Us).padStart(8)}`,
    );
  }
  out.push(
    `tlb: ${st.tlb.fills} fills, ${st.tlb.shootdowns} shootdowns, ${st.tlb.ipisSent} IPIs sent, ${st.tlb.ipisReceived} received, ${st.tlb.localFlushes} range flushes, ${st.tlb.fullLocalFlushes} full flushes`,
  );
  out.push(`faults: ${st.faults.total} page faults (${st.faults.spurious} spurious), ${st.faults.segfaults} segfaults`);
  out.push(
    `mremap: ${st.mremap.pagesMoved} pages moved, PCACHE_MREMAP_PSET_SAME ${st.mremap.psetSame}, PCACHE_MREMAP_PSET_DIFF ${st.mremap.psetDiff}`,
  );
  const sharedSeen = st.shared.aliasFills + st.shared.retries + st.shared.zapFlushes + st.shared.evictions;
  if (sharedSeen > 0)
    out.push(
      `shared pages: ${st.shared.aliasFills} fills mapped an alias's line, ${st.shared.retries} alias-scan retries, ${st.shared.evictions} lines evicted, ${st.shared.zapFlushes} written back at unmap`,
    );
  out.push('sched:');
  out.push(
    `  ${'cpu'.padEnd(5)} ${'switches'.padStart(9)} ${'preempted'.padStart(9)} ${'yields'.padStart(7)} ${'migrated'.padStart(8)} ${'lazy tlb'.padStart(8)} ${'leave_mm'.padStart(8)} ${'faults'.padStart(8)} ${'syscalls'.padStart(8)}`,
  );
  for (const c of st.perCpu)
    out.push(
      `  ${`cpu${c.cpu}`.padEnd(5)} ${String(c.switches).padStart(9)} ${String(c.preemptions).padStart(9)} ${String(c.yields).padStart(7)} ${String(c.migrations).padStart(8)} ${String(c.lazyTlb).padStart(8)} ${String(c.leaveMm).padStart(8)} ${String(c.faults).padStart(8)} ${String(c.syscalls).padStart(8)}`,
    );
  if (st.futex.waits || st.futex.woken)
    out.push(`futex: ${st.futex.waits} waits queued, ${st.futex.woken} woken, ${st.futex.timedOut} timed out`);
  out.push(
    `syscalls: ${
      Object.entries(st.syscalls)
        .map(([n, v]) => `${n} ${v}`)
        .join(', ') || 'none'
    }${st.syscallErrors ? ` (${st.syscallErrors} returned an error)` : ''}`,
  );
  return out.join('\n');
}
