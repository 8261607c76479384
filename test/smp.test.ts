// kernel/smp.c's call-function IPIs on hand-driven CPUs in one thread: each CPU is a Kern of its own
// context, and a sender's wait loop (env.irq) runs the targets' interrupt handler, so every
// interleaving here is chosen by the test. The fixed kernel acks every csd; a CPU whose cfd_data was
// never prepared (cpuhp-missing) aliases the target's call_single_queue head and loses other
// senders' csds, with nothing in tlb.ts that knows about the flag.
import { describe, expect, it } from 'vitest';
import { drainReports, type Violation } from '../src/kernel/report.ts';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env, type Level } from '../src/kernel/env.ts';
import { Fabric } from '../src/fabric/ibapi.ts';
import {
  allocateShared,
  geometryFor,
  kCpuTlbState,
  kIpiFlushTlb,
  kMmCpumask,
  kMmPid,
  kPcpuCallSingleQueue,
  Shared,
  TLBSTATE_LAZY,
  TLBSTATE_OK,
} from '../src/kernel/layout.ts';
import { S } from '../src/kernel/stats.ts';
import { switchMm } from '../src/processor/sched.ts';
import { Kern } from '../src/processor/kern.ts';
import {
  callSingleQueued,
  flushTlbMmRange,
  handleIpis,
  smpCallFunctionMany,
  smpcfdPrepareCpu,
  smpcfdPrepared,
} from '../src/processor/tlb.ts';
import { PAGE_SIZE } from '../src/uapi/abi.ts';

const VA = 0x7fffe5788000;
const PID = 5;

function cpus(n: number, prepared: (c: number) => boolean) {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: n, pcacheBytes: 16 * 4096, ways: 1, victim: 0 };
  const sh = new Shared(allocateShared(geometryFor(cfg)));
  sh.mm.store(0, kMmPid, PID);
  const log: string[] = [];
  const ks = [...Array(n).keys()].map((c) => {
    const env = new Env(sh, { ctx: c, cpu: c, name: `cpu${c}`, bootEpochMs: performance.timeOrigin, config: cfg });
    env.printk = (_l: Level, msg: string) => {
      log.push(...msg.split('\n'));
    };
    const k = new Kern(env, new Fabric(env));
    k.setCurrent(PID, 0, c + 1, 'test');
    switchMm(k); // each CPU runs a task of PID's mm (slot 0)
    return k;
  });
  for (let c = 0; c < n; c++) if (prepared(c)) smpcfdPrepareCpu(sh, c);
  // a TLB entry for VA on every CPU, so a delivered flush is visible
  const e = (VA / PAGE_SIZE) % 64;
  for (let c = 0; c < n; c++) sh.tlbVpn.set(c, e, VA / PAGE_SIZE);
  const flushed = (c: number) => sh.tlbVpn.get(c, e) === -1;
  const refill = (c: number) => {
    sh.tlbVpn.set(c, e, VA / PAGE_SIZE);
  };
  const reports: Violation[] = [];
  const violations = () => {
    drainReports(sh, reports);
    return reports;
  };
  /** while `sender` waits, run the handlers of `targets` (and after `limit` polls, give up: a hang) */
  const answeredBy = (sender: number, targets: number[], limit = 1000) => {
    let polls = 0;
    ks[sender]!.env.irq = () => {
      if (++polls > limit) throw new Error(`CPU${sender} never got its acks`);
      for (const t of targets) handleIpis(ks[t]!);
    };
  };
  return { sh, ks, flushed, refill, violations, answeredBy };
}

describe('smp_call_function_many', () => {
  it('with every cfd_data prepared, reaches each target through its call_single_queue and is acked', () => {
    const m = cpus(3, () => true);
    m.answeredBy(0, [1, 2]);
    smpCallFunctionMany(m.ks[0]!, 0b110, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE);
    expect(m.flushed(1)).toBe(true);
    expect(m.flushed(2)).toBe(true);
    expect(m.flushed(0)).toBe(false); // not a target
    expect([0, 1, 2].map((c) => callSingleQueued(m.sh, c))).toEqual([false, false, false]);
    expect(m.violations()).toEqual([]);
  });

  it('with one target, takes the single-CPU fast path (an on-stack csd): a NULL cfd_data is not touched', () => {
    const m = cpus(2, (c) => c === 0);
    expect(smpcfdPrepared(m.sh, 1)).toBe(false);
    m.answeredBy(1, [0]);
    smpCallFunctionMany(m.ks[1]!, 0b01, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE);
    expect(m.flushed(0)).toBe(true);
    expect(m.violations()).toEqual([]);
  });

  it('nested senders on prepared CPUs: both shootdowns complete', () => {
    const m = cpus(3, () => true);
    let nested = false;
    const k0 = m.ks[0]!;
    m.answeredBy(1, [0, 2]);
    k0.env.irq = () => {
      // while CPU0 waits, CPU1 sends its own shootdown to CPU0 and CPU2; then the targets answer
      if (!nested) {
        nested = true;
        smpCallFunctionMany(m.ks[1]!, 0b101, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE);
      }
      handleIpis(m.ks[1]!);
      handleIpis(m.ks[2]!);
    };
    smpCallFunctionMany(k0, 0b110, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE);
    expect(nested).toBe(true);
    expect(m.violations()).toEqual([]);
  });

  it('a NULL cfd_data (smpcfd_prepare_cpu skipped) aliases per_cpu_ptr(NULL, cpu) = the queue head, and an earlier csd is lost', () => {
    const m = cpus(3, (c) => c !== 1);
    // per_cpu_ptr(NULL, 2) is CPU2's call_single_queue
    expect(m.sh.perCpuPtr(0, 2)).toBe(m.sh.perCpuPtr(kPcpuCallSingleQueue, 2));
    let nested = false;
    const k0 = m.ks[0]!;
    m.answeredBy(1, [0, 2]);
    let polls = 0;
    k0.env.irq = () => {
      if (++polls > 1000) throw new Error('CPU0 never got its acks');
      // CPU0's csd is queued on CPU1 and CPU2 and not yet taken: now CPU1, with no csd array, sends
      if (!nested) {
        nested = true;
        smpCallFunctionMany(m.ks[1]!, 0b101, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE);
        return;
      }
      handleIpis(m.ks[1]!);
      handleIpis(m.ks[2]!);
    };
    // CPU1's own call returned: its aliased csds were answered. CPU0's csd to CPU2 was unlinked by
    // the llist_add that pointed CPU2's queue head at itself: CPU0 waits for an ack that never comes.
    expect(() => smpCallFunctionMany(k0, 0b110, kIpiFlushTlb, PID, VA, VA + PAGE_SIZE)).toThrow(
      'CPU0 never got its acks',
    );
    expect(nested).toBe(true);
    expect(callSingleQueued(m.sh, 2)).toBe(false); // nothing left to deliver: the csd is gone, not late
  });
});

describe('lazy TLB (switch_mm, flush_tlb_func, leave_mm as in Linux 4.9 x86)', () => {
  it('a flush IPI reaching a lazy CPU makes it leave the mm: its bit goes, its TLB is dropped, and later flushes skip it', () => {
    const m = cpus(2, () => true);
    const sh = m.sh;
    expect(sh.mm.load(0, kMmCpumask)).toBe(0b11);
    // CPU1's task slept: its idle context keeps the mm's TLB (enter_lazy_tlb)
    sh.cpu.store(1, kCpuTlbState, TLBSTATE_LAZY);
    m.answeredBy(0, [1]);
    flushTlbMmRange(m.ks[0]!, PID, 0, VA, VA + PAGE_SIZE);
    expect(sh.mm.load(0, kMmCpumask)).toBe(0b01); // leave_mm cleared CPU1's bit
    expect(m.flushed(1)).toBe(true); // and dropped everything (load_cr3(swapper_pg_dir))
    expect(sh.stats.get(1, S.nr_leave_mm)).toBe(1);
    // CPU1 is out of the mask: the next flush sends it nothing (its stale-looking entry stays, and
    // it is harmless: switching back to the mm reloads)
    const sent = sh.stats.get(0, S.ipi_sent);
    m.refill(1);
    flushTlbMmRange(m.ks[0]!, PID, 0, VA, VA + PAGE_SIZE);
    expect(sh.stats.get(0, S.ipi_sent)).toBe(sent);
    expect(m.flushed(1)).toBe(false);
    // a task of the mm comes back to CPU1: the bit is gone, so switch_mm sets it and flushes
    switchMm(m.ks[1]!);
    expect(sh.mm.load(0, kMmCpumask)).toBe(0b11);
    expect(m.flushed(1)).toBe(true);
    expect(sh.cpu.load(1, kCpuTlbState)).toBe(TLBSTATE_OK);
    expect(m.violations()).toEqual([]);
  });

  it('a lazy CPU that no flush reached keeps its TLB when a task of the same mm comes back', () => {
    const m = cpus(2, () => true);
    m.sh.cpu.store(1, kCpuTlbState, TLBSTATE_LAZY);
    switchMm(m.ks[1]!);
    expect(m.flushed(1)).toBe(false);
    expect(m.sh.cpu.load(1, kCpuTlbState)).toBe(TLBSTATE_OK);
  });
});
