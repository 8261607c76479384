// The layout module's declarations (src/kernel/layout.ts) walked as data: every record-shaped region
// declares each word once, with its guard; no two words overlap; every word lies inside its stride;
// the accessors the kernel uses have the declared strides; and every k-constant named like a
// region's words is a declared word (a word cannot be added without its declaration and guard).
import { describe, expect, it } from 'vitest';
import * as layout from '../src/kernel/layout.ts';
import { DEFAULT_CONFIG } from '../src/kernel/config.ts';

const {
  BARRIER,
  CPU,
  CSD,
  CSD_INFO,
  CTL,
  META,
  MM,
  MM_F,
  PRINTK_SLOT,
  RECV,
  REPORT_SLOT,
  REP_HDR,
  RMAP,
  SET,
  THREAD,
  VICTIM,
} = layout;
const REGIONS = layout.DECLARED_REGIONS;

describe('the layout declarations', () => {
  it.each(REGIONS.map((r) => [r.name, r] as const))(
    '%s: words inside the stride, no overlap, every guard written',
    (_n, r) => {
      const owner = new Map<number, string>();
      for (const [name, w] of Object.entries(r.words)) {
        const count = w.count ?? 1;
        expect(Number.isInteger(w.at) && w.at >= 0, `${name}.at`).toBe(true);
        expect(w.at + count, `${name} ends inside ${r.name}'s stride ${r.stride}`).toBeLessThanOrEqual(r.stride);
        expect(w.guard.trim().length, `${name} has a guard`).toBeGreaterThan(10);
        for (let i = w.at; i < w.at + count; i++) {
          expect(owner.get(i), `word ${i} of ${r.name} is ${name}'s only`).toBeUndefined();
          owner.set(i, name);
        }
      }
    },
  );

  it('every exported word constant is a declared word with the declared index', () => {
    const declared = new Map<string, number>();
    for (const r of REGIONS) for (const [name, w] of Object.entries(r.words)) declared.set(name, w.at);
    const prefixes = /^k(Ctl|Barrier|Cpu|Meta|Set|Rmap|Mm|Pcpu|Csd|CsdInfo|Victim|Thread|Printk|Rep|Mbox|Recv)[A-Z]/;
    // constants that are not words: strides, sizes and counts, kept beside their region
    const notWords = new Set([
      'kCtlGlobalWords',
      'kPerCpuStride',
      'kMetaStride',
      'kCpuStateIdle',
      'kCpuStateUser',
      'kCpuStateKernel',
      'kCsdWords',
      'kCsdStackStride',
      'kPrintkSlots',
      'kPrintkSlotBytes',
      'kPrintkHeaderWords',
      'kPrintkTextOff',
      'kReportSlots',
      'kReportSlotBytes',
      'kReportSlotHeaderBytes',
      'kReportHeaderWords',
      'kMboxHeaderWords',
      'kMboxFloatWords',
      'kMboxPayloadBytes',
      'kMboxBytes',
      'kMboxFloatOff',
      'kMboxPageOff',
      'kMboxPayloadOff',
      'kRecvPendingWords',
      'kSetEvictPid',
      'kPercpuAreaWords',
      'kMaxThreads',
      'kMaxProcs',
      'kPercpuBase',
      'kPcpuChunkNext',
    ]);
    const exported = Object.entries(layout).filter(([k]) => prefixes.test(k) && !notWords.has(k));
    expect(exported.length).toBeGreaterThan(80);
    for (const [name, v] of exported) {
      expect(declared.has(name), `${name} is declared in a region`).toBe(true);
      expect(v, name).toBe(declared.get(name));
    }
  });

  it('the accessors have the declared strides, and a read beyond a region is a RangeError', () => {
    const cfg = { ...DEFAULT_CONFIG, cpus: 2, pcacheBytes: 64 * 4096, ways: 4, victim: 4 };
    const sh = new layout.Shared(layout.allocateShared(layout.geometryFor(cfg)));
    const pairs: Array<[{ stride: number }, layout.RegionDecl]> = [
      [sh.cpu, CPU],
      [sh.meta, META],
      [sh.set, SET],
      [sh.rmap, RMAP],
      [sh.mm, MM],
      [sh.mmF, MM_F],
      [sh.csdInfo, CSD_INFO],
      [sh.victim, VICTIM],
      [sh.threads, THREAD],
      [sh.recv, RECV],
      [sh.printkSlots, PRINTK_SLOT],
      [sh.repSlots, REPORT_SLOT],
      [sh.barrier, BARRIER],
      [sh.threadF, layout.THREAD_F],
      [sh.futexHb, layout.FUTEX_HB],
    ];
    for (const [acc, r] of pairs) expect(acc.stride, r.name).toBe(r.stride);
    expect(sh.ctl.a.length).toBe(CTL.stride);
    expect(sh.repHdr.a.length).toBe(REP_HDR.stride);
    expect(() => sh.meta.get(sh.geo.nrLines, layout.kMetaFlags)).toThrow(RangeError);
    expect(() => sh.ctl.get(CTL.stride)).toThrow(new RegExp(`ctl: word ${CTL.stride} is outside the region`));
    expect(() => sh.pgtable.get(-1)).toThrow(RangeError);
  });

  it('views laid over other words reach exactly those words', () => {
    const cfg = { ...DEFAULT_CONFIG, cpus: 2, pcacheBytes: 64 * 4096, ways: 4, victim: 4 };
    const sh = new layout.Shared(layout.allocateShared(layout.geometryFor(cfg)));
    // the barriers are ctl's kCtlBarrierBase words, and fill them
    const base = CTL.words.kCtlBarrierBase;
    expect(sh.barrier.a.length).toBe(base.count);
    sh.barrier.store(layout.kNrBarriers - 1, layout.kBarrierGen, 7);
    expect(sh.ctl.load(base.at + base.count - 1)).toBe(7);
    sh.barrier.store(0, layout.kBarrierCount, 3);
    expect(sh.ctl.load(base.at)).toBe(3);
    expect(() => sh.barrier.get(layout.kNrBarriers, layout.kBarrierCount)).toThrow(RangeError);
    // a csd pointer is a percpu word index: csd->flags is percpu[csd + kCsdFlags]
    const csd = sh.csdStackPtr(1);
    sh.csd.store(csd, layout.kCsdFlags, 5);
    expect(sh.percpu.load(csd + CSD.words.kCsdFlags.at)).toBe(5);
    expect(() => sh.csd.load(sh.percpu.a.length, layout.kCsdFlags)).toThrow(RangeError);
  });
});
