// The report channel (src/kernel/report.ts) on its own: counters first, a ring that is never
// overwritten, records that always parse, and the host's drain in index order.
import { describe, expect, it } from 'vitest';
import {
  drainReports,
  kernelWarn,
  reportsDropped,
  reportViolation,
  violationCount,
  type Violation,
} from '../src/kernel/report.ts';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Env, type Level } from '../src/kernel/env.ts';
import { allocateShared, geometryFor, kReportSlots, Shared } from '../src/kernel/layout.ts';

function rig() {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 2 };
  const sh = new Shared(allocateShared(geometryFor(cfg)));
  const envs = [0, 1].map((c) => {
    const env = new Env(sh, { ctx: c, cpu: c, name: `cpu${c}`, bootEpochMs: performance.timeOrigin, config: cfg });
    env.printk = (_l: Level, _m: string) => {};
    return env;
  });
  return { sh, envs };
}

describe('report channel', () => {
  it('a flood past the ring with no drain: the count is exact, the ring keeps the first records, the rest are counted as dropped', () => {
    const { sh, envs } = rig();
    const n = kReportSlots * 3;
    for (let i = 0; i < n; i++)
      reportViolation({ env: envs[i % 2]! }, 'injected', { text: `report ${i}`, facts: [`n=${i}`] });
    expect(violationCount(sh)).toBe(n);
    expect(reportsDropped(sh)).toBe(n - kReportSlots);
    const got: Violation[] = [];
    drainReports(sh, got);
    expect(got).toHaveLength(kReportSlots);
    expect(got.map((v) => v.text)).toEqual([...Array(kReportSlots).keys()].map((i) => `report ${i}`));
    // drained, the ring has room again, and nothing is read twice
    reportViolation({ env: envs[0]! }, 'injected', { text: 'after the drain' });
    drainReports(sh, got);
    expect(got).toHaveLength(kReportSlots + 1);
    expect(got[kReportSlots]!.text).toBe('after the drain');
    expect(violationCount(sh)).toBe(n + 1);
  });

  it('a record too long for a slot is cut, keeping its kind and facts, and still parses', () => {
    const { sh, envs } = rig();
    reportViolation({ env: envs[1]! }, 'rmap-pte-mismatch', {
      text: 'y'.repeat(10_000),
      blob: 'z'.repeat(10_000),
      facts: ['pte=none', 'slot=same'],
    });
    const got: Violation[] = [];
    drainReports(sh, got);
    expect(got).toHaveLength(1);
    expect(got[0]!.kind).toBe('rmap-pte-mismatch');
    expect(got[0]!.truncated).toBe(true);
    expect(got[0]!.details).toEqual({ facts: ['pte=none', 'slot=same'] });
    expect(got[0]!.context).toBe('cpu1');
  });

  it('a reserved slot never committed (its writer died) stops the drain until the final one skips it', () => {
    const { sh, envs } = rig();
    reportViolation({ env: envs[0]! }, 'a', { text: 'first' });
    // a writer reserved the next index and died before its commit
    sh.repHdr.add(0, 1);
    reportViolation({ env: envs[0]! }, 'c', { text: 'third' });
    const got: Violation[] = [];
    drainReports(sh, got);
    expect(got.map((v) => v.kind)).toEqual(['a']);
    drainReports(sh, got, true);
    expect(got.map((v) => v.kind)).toEqual(['a', 'c']);
  });

  it('every WARN is a violation of kind warn with its site, the cut-here block printed once', () => {
    const { sh, envs } = rig();
    const log: string[] = [];
    envs[0]!.printk = (_l: Level, m: string) => {
      log.push(m);
    };
    for (let i = 0; i < 3; i++)
      kernelWarn({ env: envs[0]! }, { fn: 'test_site_fn', file: 'kernel/test.c' }, `state ${i}`);
    const got: Violation[] = [];
    drainReports(sh, got);
    expect(got.map((v) => [v.kind, v.details.facts])).toEqual([0, 1, 2].map(() => ['warn', ['site=test_site_fn']]));
    expect(log.filter((l) => l.includes('[ cut here ]'))).toHaveLength(1);
    expect(violationCount(sh)).toBe(3);
  });
});
