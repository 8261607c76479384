// The `mremap-stress` workload: N threads of one process, each owning regions that it grows, shrinks,
// moves and re-creates while the other threads do the same next to it, verifying every page by its tag
// after every step. On a correct kernel it runs clean; with a historical mremap bug switched on it finds
// a page holding another region's, page's or generation's tag, zeros where data was, or it dies.
//
//   argv = [--threads T] [--regions R] [--pages P] [--iterations N] [--seconds S] [--pattern chain|pingpong|random]
//
// Address space (all MAP_FIXED, far from the brk heap and from the top-down mmap area below 0x7fff…):
//   kCtlBase     the control region, mapped by main before any clone (layout below)
//   kSharedBase  kSharedPages tagged pages written once by main, read by every thread (never move)
//   kArenaBase   the slot arena: `slots` address slots of maxPages = 2P pages each, in two lanes. Slot i is
//                lane i % 2, index i >> 1, at kArenaBase + lane * laneGap + index * stride, plus one page
//                for odd indexes of lane 1. laneGap is a multiple of 1 GiB, so a move between the two
//                lanes at an even index keeps every page in its pcache set (the fastpath on any geometry),
//                at an odd index it is 1 GiB + 4 KiB (slowpath), and moves along a lane are slowpath. A
//                guard page at least separates slots, so regions never touch (no VMA merging).
//                A region lives in a slot it owns, or "floats" where the kernel put it (mmap(0), MAYMOVE).
//   kScratchBase three scratch ranges of kScratchPages per thread (4 GiB apart per thread): range 0, range
//                1 = range 0 + 1 GiB, range 2 = range 1 + kScratchPages + 1 pages. Always mapped.
//
// Control region:
//   page 0        header: +0 u32 stop flag (set by the first failure), +4 u32 failure order counter,
//                 +8 u64 deadline (clock_gettime ms, 0 = none), +64 u32 lastFreed[t] = slot + 1 that thread t
//                 released last (the chain pattern moves into it), +320 u32 ready[t] = 1 once thread t
//                 mapped its scratch ranges
//   pages 1-2     main's output buffer
//   slot table    8 bytes per slot: u32 state, u32 pages of the region in it
//                 state 0 = free, else owner (t + 1) | region << 8 | BUSY (bit 16) | visitors << 20
//   stats         one page per thread: u64 counters (see kStat*), then the first failure's message, sealed
//                 by a checksum when the thread ends (main reports a page overwritten after that)
//
// Concurrency protocol, lock-free and wait-free except for the final check:
//   - a thread claims a free slot with cas32(state, 0, owner | BUSY) and maps or moves its region there;
//     it releases the old slot (cas32 back to 0) only AFTER the mremap/munmap returned, so other threads
//     move into holes the moment they are vacated.
//   - the owner works on a region (syscalls, verification, page writes) only while its slot is BUSY, which
//     it sets only when no visitor is in: cas32(owner, owner | BUSY).
//   - a visitor (another thread) pins a slot that is owned and not BUSY with cas32(w, w + 1 << 20), checks
//     one or two of its pages (region, page index, intact body, visit word) and bumps the page's visit
//     word (its last 4 bytes) with cas32; then unpins with xadd32. So other CPUs hold TLB entries and
//     dirty lines of every region, and a missed TLB shootdown or a line freed too early shows up as a
//     visitor reading the wrong page, or as a visit word that does not match its page.
//   - racy writers: every thread scribbles on the other threads' scratch ranges without any protocol,
//     while their owner moves them along 0 -> 1 -> 2 -> 0 with MREMAP_MAYMOVE|MREMAP_FIXED|MREMAP_DONTUNMAP
//     or replaces one with mmap(MAP_FIXED). Neither ever leaves a range unmapped, so on a correct kernel
//     such a write lands in the old or in the new page and never faults; with a line freed before the TLB
//     flush, or a shootdown skipped, it lands in a line that now holds some other (verified) page.
//     Scratch content is never verified.
//   - no thread ever waits for another, except main's final joins and the bounded wait for visitors to
//     leave before the final check.
//   - it is user space: no kernel lock, and no libc (so no arena lock); the words above are guarded by
//     this protocol alone, and each thread's stats page is written only by that thread.
//
// Page content: script.ts's tagged pages (region id = regionId("t<thread>r<region>"), page index,
// generation, writer thread), except that the last 4 bytes are the visit word:
//   visits << 16 | (hash(tag checksum, visits) & 0xffff).

import {
  CLOCK_MONOTONIC,
  EAGAIN,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  STDERR_FILENO,
  STDOUT_FILENO,
  errnoName,
} from '../../uapi/abi.ts';
import type { Mmu, Program, UserContext } from '../../uapi/program.ts';
import { Rng } from '../gen.ts';
import { decodePageTag, describePageContent, encodeTaggedPage, regionId, type PageTag } from './script/tags.ts';
import { hex } from '../../lib/text.ts';
import { at } from '../../lib/at.ts';

// ---------------------------------------------------------------------------------------------------
// Options

export const STRESS_PATTERNS = ['chain', 'pingpong', 'random'] as const;
export type StressPattern = (typeof STRESS_PATTERNS)[number];

export interface StressOptions {
  threads: number;
  /** regions per thread */
  regions: number;
  /** initial pages per region; regions grow up to 2x and shrink down to 1 page */
  pages: number;
  /** iterations per thread */
  iterations: number;
  /** time budget in seconds (0 = none): every thread stops when it is spent */
  seconds: number;
  pattern: StressPattern;
}

export const kStressMaxThreads = 64;
export const kStressMaxRegions = 64;
export const kStressMaxPages = 4096;
const kMaxIterations = 1_000_000_000;
const kMaxSeconds = 86_400;

export const STRESS_DEFAULTS: StressOptions = {
  threads: 2,
  regions: 2,
  pages: 16,
  iterations: 200,
  seconds: 0,
  pattern: 'chain',
};

const kUsage =
  'options: --threads T, --regions R, --pages P, --iterations N, --seconds S, --pattern chain|pingpong|random';

/** Parse argv; a string is the one-line error (without the program name). */
export function parseStressArgs(argv: readonly string[]): StressOptions | string {
  const o: StressOptions = { ...STRESS_DEFAULTS };
  const ints: Record<string, { key: 'threads' | 'regions' | 'pages' | 'iterations'; max: number }> = {
    '--threads': { key: 'threads', max: kStressMaxThreads },
    '--regions': { key: 'regions', max: kStressMaxRegions },
    '--pages': { key: 'pages', max: kStressMaxPages },
    '--iterations': { key: 'iterations', max: kMaxIterations },
  };
  for (let i = 0; i < argv.length; i++) {
    const a = at(argv, i);
    if (!a.startsWith('--')) return `unexpected argument "${a}" (${kUsage})`;
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const known = name === '--seconds' || name === '--pattern' || ints[name] !== undefined;
    if (!known) return `unknown option "${name}" (${kUsage})`;
    const val = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (val === undefined || val === '') return `${name} needs a value (${kUsage})`;
    const spec = ints[name];
    if (spec !== undefined) {
      const n = Number(val);
      if (!/^\d+$/.test(val) || !Number.isSafeInteger(n) || n < 1 || n > spec.max) {
        return `${name} ${val} must be an integer from 1 to ${spec.max}`;
      }
      o[spec.key] = n;
    } else if (name === '--seconds') {
      const s = Number(val);
      if (!/^\d+(\.\d+)?$/.test(val) || !(s >= 0 && s <= kMaxSeconds)) {
        return `--seconds ${val} must be a number of seconds from 0 (no limit) to ${kMaxSeconds}`;
      }
      o.seconds = s;
    } else {
      const p = STRESS_PATTERNS.find((x) => x === val);
      if (p === undefined) return `--pattern ${val} must be one of ${STRESS_PATTERNS.join(', ')}`;
      o.pattern = p;
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Layout

const GiB = 2 ** 30;
/** 16 TiB, like the script's control region (the two programs never share a process). */
export const kStressCtlBase = 0x100000000000;
export const kStressSharedBase = 0x180000000000;
export const kStressArenaBase = 0x200000000000;
export const kSharedPages = 8;
const kSharedName = 'shared';
export const kStressScratchBase = 0x300000000000;
export const kScratchPages = 4;
const kScratchThreadGap = 4 * GiB;

const kHdrStop = 0;
const kHdrFailOrder = 4;
const kHdrDeadline = 8;
const kHdrLastFreed = 64;
const kHdrReady = kHdrLastFreed + 4 * kStressMaxThreads;
const kOutPage = 1;
const kOutPages = 2;
const kSlotTablePage = kOutPage + kOutPages;

const kBusy = 1 << 16;
const kVisitor = 1 << 20;
const ownerWord = (t: number, r: number): number => (t + 1) | (r << 8);

// stats page (u64 each)
const kStatIterations = 0;
const kStatMoves = 8;
const kStatFastMoves = 16;
const kStatSlowMoves = 24;
const kStatGrows = 32;
const kStatShrinks = 40;
const kStatChurns = 48;
const kStatRewrites = 56;
const kStatVisits = 64;
const kStatPagesVerified = 72;
const kStatScratchMoves = 120;
const kStatScratchRemaps = 128;
const kStatScratchWrites = 136;
const kStatFailures = 80;
const kStatFailOrder = 88;
const kStatFailIteration = 96;
const kStatFailAddr = 104;
const kStatMsgLen = 112;
/** u32 FNV-1a of bytes [0, kStatSum) and of the message, and u32 kStatsMagic: the page is intact */
const kStatSum = 248;
const kStatMagic = 252;
const kStatsMagic = 0x5354534b; // "KSTS"
const kStatMsg = 256;

/** Where everything is, computed identically by every thread from the options. */
export class StressLayout {
  readonly maxPages: number;
  readonly slots: number;
  readonly stride: number;
  readonly laneGap: number;
  readonly slotTablePages: number;
  readonly ctlBytes: number;

  constructor(readonly o: StressOptions) {
    this.maxPages = 2 * o.pages;
    const n = o.threads * o.regions;
    const slots = o.pattern === 'chain' ? n + o.threads : 2 * n;
    this.slots = slots + (slots % 2);
    this.stride = (this.maxPages + 2) * PAGE_SIZE;
    const span = (this.slots / 2) * this.stride;
    this.laneGap = Math.max(1, Math.ceil(span / GiB)) * GiB;
    this.slotTablePages = Math.ceil((this.slots * 8) / PAGE_SIZE);
    this.ctlBytes = PAGE_SIZE * (kSlotTablePage + this.slotTablePages + o.threads);
  }

  slotAddr(s: number): number {
    const lane = s % 2;
    const idx = Math.floor(s / 2);
    return kStressArenaBase + lane * this.laneGap + (lane === 1 && idx % 2 === 1 ? PAGE_SIZE : 0) + idx * this.stride;
  }
  stateVa(s: number): number {
    return kStressCtlBase + kSlotTablePage * PAGE_SIZE + s * 8;
  }
  pagesVa(s: number): number {
    return this.stateVa(s) + 4;
  }
  lastFreedVa(t: number): number {
    return kStressCtlBase + kHdrLastFreed + 4 * t;
  }
  statsVa(t: number): number {
    return kStressCtlBase + PAGE_SIZE * (kSlotTablePage + this.slotTablePages + t);
  }
  readyVa(t: number): number {
    return kStressCtlBase + kHdrReady + 4 * t;
  }
  /**
   * Scratch range j (0..2) of thread t: 0 -> 1 is a move by 1 GiB (same pcache set), 1 -> 2 and 2 -> 0 are
   * not. All three stay mapped all the time (MREMAP_DONTUNMAP and MAP_FIXED replace, never unmap).
   */
  scratchAddr(t: number, j: number): number {
    const x = kStressScratchBase + t * kScratchThreadGap;
    return j === 0 ? x : j === 1 ? x + GiB : x + GiB + (kScratchPages + 1) * PAGE_SIZE;
  }
  /** The two slots of a region in the pingpong pattern. */
  pingpongSlots(t: number, r: number): [number, number] {
    const k = t * this.o.regions + r;
    return [2 * k, 2 * k + 1];
  }
}

export const stressRegionName = (t: number, r: number): string => `t${t}r${r}`;
const scratchName = (t: number): string => `scratch${t}`;

function regionNames(o: StressOptions): Map<number, string> {
  const m = new Map<number, string>();
  for (let t = 0; t < o.threads; t++) {
    for (let r = 0; r < o.regions; r++) m.set(regionId(stressRegionName(t, r)), stressRegionName(t, r));
    m.set(regionId(scratchName(t)), scratchName(t));
  }
  m.set(regionId(kSharedName), kSharedName);
  return m;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

function fnv1a(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ (bytes[i] ?? 0), 0x01000193) >>> 0;
  return h;
}

/** Checksum of a stats page: its counters and failure fields, then its message. */
function statsChecksum(page: Uint8Array): number {
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const len = Math.min(dv.getUint32(kStatMsgLen, true), PAGE_SIZE - kStatMsg);
  return fnv1a(page.subarray(kStatMsg, kStatMsg + len), fnv1a(page.subarray(0, kStatSum)));
}

const describeRet = (v: number): string => {
  const e = errnoName(v);
  return e !== undefined ? `${e} (${v})` : hex(v);
};
const mremapFlagNames = (f: number): string => {
  const names: string[] = [];
  if (f & MREMAP_MAYMOVE) names.push('MREMAP_MAYMOVE');
  if (f & MREMAP_FIXED) names.push('MREMAP_FIXED');
  return names.length ? names.join('|') : '0';
};

/** The 16-bit check of a visit word: ties the visit count to the page's tag checksum. */
function visitCheck(sum: number, visits: number): number {
  let x = (sum ^ Math.imul(visits + 1, 0x9e3779b1)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b) >>> 0;
  return (x ^ (x >>> 16)) & 0xffff;
}
const visitWord = (sum: number, visits: number): number =>
  (((visits & 0xffff) << 16) | visitCheck(sum, visits & 0xffff)) >>> 0;
const kVisitOff = PAGE_SIZE - 4;
const tagSum = (page: Uint8Array): number =>
  new DataView(page.buffer, page.byteOffset, page.byteLength).getUint32(28, true);

/** A tagged page whose last 4 bytes are a visit word with 0 visits. */
function stressPage(tag: PageTag, va: number): Uint8Array {
  const b = encodeTaggedPage(tag, va);
  new DataView(b.buffer).setUint32(kVisitOff, visitWord(tagSum(b), 0), true);
  return b;
}

/**
 * What is wrong with a page read into `buf` that should hold `want` (or zeros when `want` is undefined),
 * or undefined if nothing. `visit` is the visit word to check instead of the one in `buf` (visitors read
 * it atomically), `anyGeneration` lets visitors, who do not know the generation, accept any, and
 * `visits0` requires a page nobody visits (the shared region) to have 0 visits.
 */
function checkPage(
  buf: Uint8Array,
  want: PageTag | undefined,
  names: ReadonlyMap<number, string>,
  opts: { visit?: number; anyGeneration?: boolean; visits0?: boolean } = {},
): string | undefined {
  if (want === undefined) {
    if (buf.every((x) => x === 0)) return undefined;
    const c = decodePageTag(buf.subarray(0, kVisitOff));
    return `holds ${describePageContent(c.kind === 'tag' ? c : decodePageTag(buf), names)}`;
  }
  const c = decodePageTag(buf.subarray(0, kVisitOff));
  if (c.kind !== 'tag') return `holds ${describePageContent(decodePageTag(buf), names)}`;
  const t = c.tag;
  const good =
    c.intact &&
    t.region === want.region &&
    t.page === want.page &&
    t.thread === want.thread &&
    (opts.anyGeneration === true || t.generation === want.generation);
  if (!good) return `holds ${describePageContent(c, names)}`;
  const w = opts.visit ?? new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(kVisitOff, true);
  const visits = w >>> 16;
  if ((w & 0xffff) !== visitCheck(tagSum(buf), visits) || (opts.visits0 === true && visits !== 0)) {
    return (
      `holds ${describePageContent(c, names)} but its visit word ${hex(w)} does not belong to it` +
      ' (a write through a stale mapping?)'
    );
  }
  return undefined;
}

function describeWant(want: PageTag | undefined, names: ReadonlyMap<number, string>, anyGeneration = false): string {
  if (want === undefined) return 'zeros (the page is new since the last grow or mmap)';
  const name = names.get(want.region) ?? hex(want.region);
  const gen = anyGeneration ? 'any generation' : `generation ${want.generation}`;
  return `region ${name} page ${want.page} ${gen} written by thread ${want.thread}`;
}

/** Write `text` on fd from the buffer at `va` (nbytes at most `cap`), a chunk at a time. */
function writeOut(u: UserContext, fd: number, text: string, va: number, cap: number): void {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) {
    const n = Math.min(cap, bytes.length - off);
    u.mmu.write(va, bytes, off, n);
    const w = u.sys.write(fd, va, n);
    if (w <= 0) return;
    off += w;
  }
}

/** One line on stderr from a scratch page (used before the control region exists). */
function printErr(u: UserContext, msg: string): void {
  const va = u.sys.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va < 0) return;
  writeOut(u, STDERR_FILENO, `${msg}\n`, va, PAGE_SIZE);
  u.sys.munmap(va, PAGE_SIZE);
}

// ---------------------------------------------------------------------------------------------------
// A thread

interface Region {
  r: number;
  name: string;
  id: number;
  addr: number;
  pages: number;
  /** slot index, or -1 when the kernel chose the address */
  slot: number;
  /** expected generation of each page; 0 = new, reads zeros until written */
  gens: number[];
  nextGen: number;
  /** the last operation on it, for failure messages */
  history: string;
}

interface Counters {
  iterations: number;
  moves: number;
  fastMoves: number;
  slowMoves: number;
  grows: number;
  shrinks: number;
  churns: number;
  rewrites: number;
  visits: number;
  pagesVerified: number;
  scratchMoves: number;
  scratchRemaps: number;
  scratchWrites: number;
}

const kCounterOffsets: Array<[keyof Counters, number]> = [
  ['iterations', kStatIterations],
  ['moves', kStatMoves],
  ['fastMoves', kStatFastMoves],
  ['slowMoves', kStatSlowMoves],
  ['grows', kStatGrows],
  ['shrinks', kStatShrinks],
  ['churns', kStatChurns],
  ['rewrites', kStatRewrites],
  ['visits', kStatVisits],
  ['pagesVerified', kStatPagesVerified],
  ['scratchMoves', kStatScratchMoves],
  ['scratchRemaps', kStatScratchRemaps],
  ['scratchWrites', kStatScratchWrites],
];

type Action = 'move' | 'grow' | 'shrink' | 'churn' | 'rewrite';
const kActionWeights: Array<[Action, number]> = [
  ['move', 35],
  ['grow', 15],
  ['shrink', 15],
  ['churn', 10],
  ['rewrite', 25],
];
/** Consecutive iterations without a region free of visitors before the thread gives up. */
const kMaxBusyRetries = 1_000_000;
/** How long the final check waits for visitors to leave a slot. */
const kFinalWaitMs = 10_000;

class StressThread {
  readonly rng: Rng;
  readonly regions: Region[] = [];
  readonly c: Counters = {
    iterations: 0,
    moves: 0,
    fastMoves: 0,
    slowMoves: 0,
    grows: 0,
    shrinks: 0,
    churns: 0,
    rewrites: 0,
    visits: 0,
    pagesVerified: 0,
    scratchMoves: 0,
    scratchRemaps: 0,
    scratchWrites: 0,
  };
  failed = false;
  private readonly mmu: Mmu;
  private readonly buf = new Uint8Array(PAGE_SIZE);
  private readonly sharedId = regionId(kSharedName);
  /** 1-based number of the iteration in progress; 0 during setup */
  private iteration = 0;
  private phase = 'setup';

  constructor(
    readonly u: UserContext,
    readonly o: StressOptions,
    readonly lay: StressLayout,
    readonly t: number,
    readonly names: ReadonlyMap<number, string>,
  ) {
    this.mmu = u.mmu;
    this.rng = new Rng((Math.imul(u.seed >>> 0, 0x9e3779b1) ^ Math.imul(t + 1, 0x85ebca6b)) >>> 0);
  }

  // ---- failures and stats ----

  private where(): string {
    return this.phase === 'run' ? `iteration ${this.iteration}` : this.phase;
  }

  /** Record the first failure of this thread (and stop every thread). Always returns false. */
  fail(addr: number, message: string): false {
    if (this.failed) return false;
    this.failed = true;
    const m = this.mmu;
    m.store32(kStressCtlBase + kHdrStop, 1);
    const order = m.xadd32(kStressCtlBase + kHdrFailOrder, 1);
    const a = this.lay.statsVa(this.t);
    const bytes = new TextEncoder().encode(`${this.where()}: ${message}`).subarray(0, PAGE_SIZE - kStatMsg);
    m.write(a + kStatMsg, bytes);
    m.store64(a + kStatMsgLen, bytes.length);
    m.store64(a + kStatFailIteration, this.iteration);
    m.store64(a + kStatFailAddr, Math.max(0, addr));
    m.store64(a + kStatFailOrder, order);
    m.store64(a + kStatFailures, 1);
    return false;
  }

  /** Publish the counters, sealed with a checksum so that main can tell a page overwritten since. */
  writeStats(): void {
    const a = this.lay.statsVa(this.t);
    for (const [k, off] of kCounterOffsets) this.mmu.store64(a + off, this.c[k]);
    const page = new Uint8Array(PAGE_SIZE);
    this.mmu.read(a, page);
    this.mmu.store32(a + kStatSum, statsChecksum(page));
    this.mmu.store32(a + kStatMagic, kStatsMagic);
  }

  private sysFail(call: string, ret: number, want: string, addr: number): false {
    return this.fail(addr, `${call} returned ${describeRet(ret)}, expected ${want}`);
  }

  private stopRequested(): boolean {
    if (this.mmu.load32(kStressCtlBase + kHdrStop) !== 0) return true;
    const deadline = this.mmu.load64(kStressCtlBase + kHdrDeadline);
    return deadline !== 0 && this.u.sys.clock_gettime(CLOCK_MONOTONIC) >= deadline;
  }

  // ---- the slot table ----

  private claim(s: number, reg: Region): boolean {
    if (s < 0 || s >= this.lay.slots || s === reg.slot) return false;
    if (this.mmu.load32(this.lay.stateVa(s)) !== 0) return false;
    return this.mmu.cas32(this.lay.stateVa(s), 0, ownerWord(this.t, reg.r) | kBusy) === 0;
  }

  /** Free a slot this thread holds BUSY (after the region left it). */
  private release(s: number, reg: Region): boolean {
    const mine = (ownerWord(this.t, reg.r) | kBusy) >>> 0;
    const w = this.mmu.cas32(this.lay.stateVa(s), mine, 0);
    if (w !== mine) {
      return this.fail(
        this.lay.slotAddr(s),
        `slot table: slot ${s} held ${hex(w)} when thread ${this.t} released it` +
          ` (expected ${hex(mine)}): the control region was corrupted`,
      );
    }
    this.mmu.store32(this.lay.lastFreedVa(this.t), s + 1);
    return true;
  }

  /** 1: the region's slot is now BUSY (or it has none), 0: visitors are in, -1: failed. */
  private tryBusy(reg: Region): number {
    if (reg.slot < 0) return 1;
    const va = this.lay.stateVa(reg.slot);
    const mine = ownerWord(this.t, reg.r);
    const w = this.mmu.xadd32(va, 0);
    if ((w & 0x1ffff) !== mine) {
      this.fail(
        this.lay.slotAddr(reg.slot),
        `slot table: slot ${reg.slot} holds ${hex(w)} but region ${reg.name}` +
          ` (owner word ${hex(mine)}) lives there: the control region was corrupted`,
      );
      return -1;
    }
    if (w !== mine) return 0;
    return this.mmu.cas32(va, mine, mine | kBusy) === mine ? 1 : 0;
  }

  private unBusy(reg: Region): boolean {
    if (reg.slot < 0) return true;
    const mine = ownerWord(this.t, reg.r);
    this.mmu.store32(this.lay.pagesVa(reg.slot), reg.pages);
    const w = this.mmu.cas32(this.lay.stateVa(reg.slot), mine | kBusy, mine);
    if (w !== (mine | kBusy)) {
      return this.fail(
        this.lay.slotAddr(reg.slot),
        `slot table: slot ${reg.slot} holds ${hex(w)} while region ${reg.name}` +
          ` works in it (expected ${hex(mine | kBusy)}): the control region was corrupted`,
      );
    }
    return true;
  }

  /** Claim a free slot for `reg` to move (or be mapped) into, following the pattern; -1 if none. */
  private pickSlot(reg: Region): number {
    const n = this.lay.slots;
    const scan = (start: number): number => {
      for (let i = 0; i < n; i++) {
        const s = (start + i) % n;
        if (this.claim(s, reg)) return s;
      }
      return -1;
    };
    switch (this.o.pattern) {
      case 'pingpong': {
        const [a, b] = this.lay.pingpongSlots(this.t, reg.r);
        const first = reg.slot === a ? b : reg.slot === b ? a : this.rng.chance(0.5) ? a : b;
        if (this.claim(first, reg)) return first;
        const other = first === a ? b : a;
        return reg.slot < 0 && this.claim(other, reg) ? other : -1;
      }
      case 'chain': {
        // the slot the previous thread vacated last, else the next free one along the ring
        const prev = (this.t + this.o.threads - 1) % this.o.threads;
        const s = this.mmu.load32(this.lay.lastFreedVa(prev)) - 1;
        if (this.claim(s, reg)) return s;
        return scan(reg.slot >= 0 ? reg.slot + 1 : this.rng.int(n));
      }
      case 'random': {
        // half the time first the slot across the lanes (1 GiB away, or 1 GiB + 4 KiB at odd indexes)
        const across = reg.slot >= 0 ? reg.slot ^ 1 : -1;
        if (across >= 0 && this.rng.chance(0.5) && this.claim(across, reg)) return across;
        for (let i = 0; i < 8; i++) {
          const s = this.rng.int(n);
          if (this.claim(s, reg)) return s;
        }
        return scan(this.rng.int(n));
      }
    }
  }

  // ---- pages ----

  private tagOf(reg: Region, i: number): PageTag | undefined {
    const gen = at(reg.gens, i);
    return gen === 0 ? undefined : { region: reg.id, page: i, generation: gen, thread: this.t };
  }

  private writePage(reg: Region, i: number, gen: number): void {
    const va = reg.addr + i * PAGE_SIZE;
    reg.gens[i] = gen;
    this.mmu.write(va, stressPage({ region: reg.id, page: i, generation: gen, thread: this.t }, va));
  }

  /** Verify every page of a region this thread holds BUSY. */
  private verifyRegion(reg: Region): boolean {
    for (let i = 0; i < reg.pages; i++) {
      const va = reg.addr + i * PAGE_SIZE;
      const want = this.tagOf(reg, i);
      let got: string | undefined;
      if (!this.mmu.probe(va, false)) got = 'is unmapped';
      else {
        this.mmu.read(va, this.buf);
        got = checkPage(this.buf, want, this.names);
      }
      this.c.pagesVerified++;
      if (got !== undefined) {
        const where = reg.slot >= 0 ? `slot ${reg.slot}` : 'placed by the kernel';
        return this.fail(
          va,
          `page ${i} of region ${reg.name} (${reg.pages} pages at ${hex(reg.addr)}, ${where}) at ${hex(va)}` +
            ` ${got}, expected ${describeWant(want, this.names)}; last operation on the region: ${reg.history}`,
        );
      }
    }
    return true;
  }

  /** Write the new pages of a region and a few others with a new generation. */
  private refresh(reg: Region, extra: number): void {
    const gen = reg.nextGen++;
    for (let i = 0; i < reg.pages; i++) if (reg.gens[i] === 0) this.writePage(reg, i, gen);
    for (let k = 0; k < extra; k++) this.writePage(reg, this.rng.int(reg.pages), gen);
  }

  // ---- setup ----

  private mapAt(reg: Region, s: number, pages: number): boolean {
    const len = pages * PAGE_SIZE;
    let ret: number;
    let call: string;
    if (s >= 0) {
      const at = this.lay.slotAddr(s);
      ret = this.u.sys.mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      call = `mmap(${hex(at)}, ${hex(len)}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)`;
      if (ret !== at) return this.sysFail(call, ret, hex(at), at);
    } else {
      ret = this.u.sys.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      call = `mmap(0, ${hex(len)}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`;
      if (ret < 0) return this.sysFail(call, ret, 'an address', 0);
    }
    reg.addr = ret;
    reg.slot = s;
    reg.pages = pages;
    reg.gens = new Array<number>(pages).fill(0);
    reg.history = `${call} = ${hex(ret)} (${this.where()})`;
    return true;
  }

  /** Map and fill this thread's regions. */
  setup(): boolean {
    for (let r = 0; r < this.o.regions; r++) {
      const name = stressRegionName(this.t, r);
      const reg: Region = {
        r,
        name,
        id: regionId(name),
        addr: 0,
        pages: 0,
        slot: -1,
        gens: [],
        nextGen: 1,
        history: '',
      };
      this.regions.push(reg);
      const k = this.t * this.o.regions + r;
      // The initial slot may already be taken by a region that moved there: then any free one.
      const first = this.o.pattern === 'chain' ? k : 2 * k;
      let s = this.claim(first, reg) ? first : -1;
      if (s < 0 && this.o.pattern !== 'pingpong') s = this.pickSlot(reg);
      if (!this.mapAt(reg, s, this.o.pages) || !this.verifyRegion(reg)) return false;
      this.refresh(reg, 0);
      if (!this.unBusy(reg)) return false;
    }
    // The scratch ranges, then tell the other threads they may scribble on them.
    const len = kScratchPages * PAGE_SIZE;
    for (let j = 0; j < 3; j++) {
      const at = this.lay.scratchAddr(this.t, j);
      const ret = this.u.sys.mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (ret !== at)
        return this.sysFail(
          `mmap(${hex(at)}, ${hex(len)}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)`,
          ret,
          hex(at),
          at,
        );
    }
    for (let i = 0; i < kScratchPages; i++) this.scribble(this.t, 0, i);
    this.mmu.store32(this.lay.readyVa(this.t), 1);
    this.phase = 'run';
    return true;
  }

  // ---- actions ----

  private countMove(from: number, to: number): void {
    this.c.moves++;
    if ((to - from) % GiB === 0) this.c.fastMoves++;
    else this.c.slowMoves++;
  }

  /**
   * mremap a region to `newPages`: in place (flags 0), where the kernel likes (MREMAP_MAYMOVE), or into
   * the claimed slot `dst` (MREMAP_MAYMOVE|MREMAP_FIXED). The old slot is released after the call.
   */
  private remap(reg: Region, newPages: number, mode: 'inplace' | 'maymove' | 'fixed', dst: number): boolean {
    const oldAddr = reg.addr;
    const oldLen = reg.pages * PAGE_SIZE;
    const newLen = newPages * PAGE_SIZE;
    const flags = mode === 'inplace' ? 0 : mode === 'maymove' ? MREMAP_MAYMOVE : MREMAP_MAYMOVE | MREMAP_FIXED;
    const newAddr = mode === 'fixed' ? this.lay.slotAddr(dst) : undefined;
    const ret =
      newAddr === undefined
        ? this.u.sys.mremap(oldAddr, oldLen, newLen, flags)
        : this.u.sys.mremap(oldAddr, oldLen, newLen, flags, newAddr);
    const call =
      `mremap(${hex(oldAddr)}, ${hex(oldLen)}, ${hex(newLen)}, ${mremapFlagNames(flags)}` +
      `${newAddr !== undefined ? `, ${hex(newAddr)} = slot ${dst}` : ''})`;
    const want = mode === 'fixed' ? (newAddr ?? -1) : mode === 'inplace' ? oldAddr : -1;
    if (ret < 0 || (want >= 0 && ret !== want)) {
      return this.sysFail(call, ret, want >= 0 ? hex(want) : 'an address', oldAddr);
    }
    if (ret !== oldAddr) {
      this.countMove(oldAddr, ret);
      if (reg.slot >= 0 && !this.release(reg.slot, reg)) return false;
      reg.slot = mode === 'fixed' ? dst : -1;
    }
    reg.addr = ret;
    if (newPages < reg.pages) reg.gens.length = newPages;
    else while (reg.gens.length < newPages) reg.gens.push(0);
    reg.pages = newPages;
    reg.history = `${call} = ${hex(ret)} (${this.where()})`;
    return true;
  }

  private move(reg: Region): boolean {
    const dst = this.pickSlot(reg);
    if (dst < 0) return this.rewrite(reg);
    return this.remap(reg, reg.pages, 'fixed', dst);
  }

  private grow(reg: Region): boolean {
    if (reg.pages >= this.lay.maxPages) return this.shrink(reg);
    this.c.grows++;
    const n = this.rng.range(reg.pages + 1, this.lay.maxPages);
    const x = this.rng.float();
    if (reg.slot >= 0 ? x < 0.6 : x < 0.5) {
      // in place (a slot always has room), or wherever the kernel likes for a region it placed
      return this.remap(reg, n, reg.slot >= 0 && x < 0.4 ? 'inplace' : 'maymove', -1);
    }
    const dst = this.pickSlot(reg);
    return dst < 0 ? this.remap(reg, n, reg.slot >= 0 ? 'inplace' : 'maymove', -1) : this.remap(reg, n, 'fixed', dst);
  }

  private shrink(reg: Region): boolean {
    if (reg.pages <= 1) return this.grow(reg);
    this.c.shrinks++;
    const n = this.rng.range(1, reg.pages - 1);
    if (this.rng.chance(0.6)) return this.remap(reg, n, 'inplace', -1);
    const dst = this.pickSlot(reg);
    return this.remap(reg, n, dst < 0 ? 'inplace' : 'fixed', dst);
  }

  private churn(reg: Region): boolean {
    this.c.churns++;
    const len = reg.pages * PAGE_SIZE;
    const ret = this.u.sys.munmap(reg.addr, len);
    if (ret !== 0) return this.sysFail(`munmap(${hex(reg.addr)}, ${hex(len)})`, ret, '0', reg.addr);
    if (reg.slot >= 0 && !this.release(reg.slot, reg)) return false;
    reg.slot = -1;
    const s = this.rng.chance(0.3) ? -1 : this.pickSlot(reg);
    return this.mapAt(reg, s, this.rng.range(1, this.lay.maxPages));
  }

  private rewrite(reg: Region): boolean {
    this.c.rewrites++;
    const gen = reg.nextGen++;
    const n = this.rng.range(1, reg.pages);
    for (let k = 0; k < n; k++) this.writePage(reg, this.rng.int(reg.pages), gen);
    reg.history = `rewrite of ${n} pages with generation ${gen} (${this.where()})`;
    return true;
  }

  private act(reg: Region): boolean {
    let x = this.rng.int(100);
    let a: Action = 'rewrite';
    for (const [name, w] of kActionWeights) {
      if (x < w) {
        a = name;
        break;
      }
      x -= w;
    }
    switch (a) {
      case 'move':
        return this.move(reg);
      case 'grow':
        return this.grow(reg);
      case 'shrink':
        return this.shrink(reg);
      case 'churn':
        return this.churn(reg);
      case 'rewrite':
        return this.rewrite(reg);
    }
  }

  // ---- scratch ranges: racy by design, never verified ----

  /** Write a tagged page into page i of scratch range j of thread o (the content is never checked). */
  private scribble(o: number, j: number, i: number): void {
    const va = this.lay.scratchAddr(o, j) + i * PAGE_SIZE;
    const gen = (this.c.iterations + 1) >>> 0;
    this.mmu.write(va, stressPage({ region: regionId(scratchName(o)), page: i, generation: gen, thread: this.t }, va));
    this.c.scratchWrites++;
  }

  /**
   * Racy writers: scribble on another thread's scratch ranges while their owner moves them with
   * MREMAP_DONTUNMAP or replaces them with MAP_FIXED. Both keep every range mapped, so on a correct
   * kernel a write lands in the old or the new page and never faults; a line freed or reused before the
   * TLB flush turns such a write into corruption of some other (verified) page.
   */
  private scratchWork(): boolean {
    const T = this.o.threads;
    if (T > 1) {
      for (let k = 0; k < 2; k++) {
        const o = (this.t + 1 + this.rng.int(T - 1)) % T;
        if (this.mmu.load32(this.lay.readyVa(o)) !== 1) continue;
        this.scribble(o, this.rng.int(3), this.rng.int(kScratchPages));
      }
    }
    if (!this.rng.chance(0.35)) return true;
    const len = kScratchPages * PAGE_SIZE;
    if (this.rng.chance(0.75)) {
      const from = this.rng.int(3);
      const to = (from + 1) % 3;
      const a = this.lay.scratchAddr(this.t, from);
      const b = this.lay.scratchAddr(this.t, to);
      const ret = this.u.sys.mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, b);
      if (ret !== b) {
        return this.sysFail(
          `mremap(${hex(a)}, ${hex(len)}, ${hex(len)}, MREMAP_MAYMOVE|MREMAP_FIXED|MREMAP_DONTUNMAP, ${hex(b)})`,
          ret,
          hex(b),
          a,
        );
      }
      this.c.scratchMoves++;
      this.countMove(a, b);
      // the owner touches its new copy too, so the next move has lines to move
      this.scribble(this.t, to, this.rng.int(kScratchPages));
    } else {
      const j = this.rng.int(3);
      const at = this.lay.scratchAddr(this.t, j);
      const ret = this.u.sys.mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (ret !== at)
        return this.sysFail(
          `mmap(${hex(at)}, ${hex(len)}, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)`,
          ret,
          hex(at),
          at,
        );
      this.c.scratchRemaps++;
    }
    return true;
  }

  // ---- visits ----

  /** Check a page of the shared region and one or two pages of another thread's region. */
  private visit(): boolean {
    const m = this.mmu;
    const sp = this.rng.int(kSharedPages);
    const sva = kStressSharedBase + sp * PAGE_SIZE;
    const swant: PageTag = { region: this.sharedId, page: sp, generation: 1, thread: 0 };
    let sgot: string | undefined = 'is unmapped';
    if (m.probe(sva, false)) {
      m.read(sva, this.buf);
      sgot = checkPage(this.buf, swant, this.names, { visits0: true });
    }
    this.c.pagesVerified++;
    if (sgot !== undefined)
      return this.fail(
        sva,
        `page ${sp} of the shared region at ${hex(sva)} ${sgot}, expected ${describeWant(swant, this.names)}`,
      );
    if (this.o.threads === 1) return true;

    for (let tries = 0; tries < 4; tries++) {
      const s = this.rng.int(this.lay.slots);
      const sv = this.lay.stateVa(s);
      const w = m.load32(sv);
      const owner = (w & 0xff) - 1;
      if (w === 0 || (w & kBusy) !== 0 || owner === this.t) continue;
      if (m.cas32(sv, w, w + kVisitor) !== w) continue;
      try {
        return this.visitSlot(s, owner, (w >>> 8) & 0xff);
      } finally {
        m.xadd32(sv, -kVisitor);
      }
    }
    return true;
  }

  private visitSlot(s: number, owner: number, r: number): boolean {
    const m = this.mmu;
    const base = this.lay.slotAddr(s);
    const n = m.load32(this.lay.pagesVa(s));
    if (owner < 0 || owner >= this.o.threads || r >= this.o.regions || n < 1 || n > this.lay.maxPages) {
      return this.fail(
        base,
        `slot table: slot ${s} says region ${r} of thread ${owner} with ${n} pages lives there:` +
          ' the control region was corrupted',
      );
    }
    const name = stressRegionName(owner, r);
    const id = regionId(name);
    const count = Math.min(n, this.rng.range(1, 2));
    for (let k = 0; k < count; k++) {
      const i = this.rng.int(n);
      const va = base + i * PAGE_SIZE;
      const want: PageTag = { region: id, page: i, generation: 0, thread: owner };
      let got: string | undefined;
      let visit = 0;
      if (!m.probe(va, true)) got = 'is unmapped or read-only';
      else {
        m.read(va, this.buf);
        visit = m.xadd32(va + kVisitOff, 0);
        got = checkPage(this.buf, want, this.names, { visit, anyGeneration: true });
      }
      this.c.visits++;
      this.c.pagesVerified++;
      if (got !== undefined) {
        return this.fail(
          va,
          `visiting slot ${s} (region ${name}, ${n} pages at ${hex(base)}, owned by thread ${owner}):` +
            ` page ${i} at ${hex(va)} ${got}, expected ${describeWant(want, this.names, true)}`,
        );
      }
      m.cas32(va + kVisitOff, visit, visitWord(tagSum(this.buf), (visit >>> 16) + 1));
    }
    return true;
  }

  // ---- the loop ----

  run(): void {
    let spins = 0;
    while (!this.failed && this.c.iterations < this.o.iterations && !this.stopRequested()) {
      this.iteration = this.c.iterations + 1;
      if (!this.visit() || !this.scratchWork()) return;
      // a region no visitor is in, starting at a random one
      const start = this.rng.int(this.regions.length);
      let reg: Region | undefined;
      for (let k = 0; k < this.regions.length && reg === undefined; k++) {
        const cand = at(this.regions, (start + k) % this.regions.length);
        const b = this.tryBusy(cand);
        if (b < 0) return;
        if (b === 1) reg = cand;
      }
      if (reg === undefined) {
        if (++spins > kMaxBusyRetries) {
          this.fail(0, `no region of thread ${this.t} was free of visitors for ${kMaxBusyRetries} tries`);
          return;
        }
        continue;
      }
      spins = 0;
      if (!this.act(reg) || !this.verifyRegion(reg)) return;
      this.refresh(reg, this.rng.range(1, 3));
      if (!this.unBusy(reg)) return;
      this.c.iterations++;
      this.u.progress?.(this.c.iterations, this.o.iterations);
    }
  }

  /** Verify every region one last time (unless another thread failed), then publish the counters. */
  finish(): void {
    if (!this.failed && this.mmu.load32(kStressCtlBase + kHdrStop) === 0) {
      this.phase = 'final check';
      for (const reg of this.regions) {
        const t0 = this.u.sys.clock_gettime(CLOCK_MONOTONIC);
        let b: number;
        while ((b = this.tryBusy(reg)) === 0) {
          if (this.u.sys.clock_gettime(CLOCK_MONOTONIC) - t0 > kFinalWaitMs) {
            this.fail(
              reg.addr,
              `visitors did not leave slot ${reg.slot} of region ${reg.name} within ${kFinalWaitMs} ms`,
            );
            break;
          }
        }
        if (b !== 1 || !this.verifyRegion(reg) || !this.unBusy(reg)) break;
      }
    }
    this.writeStats();
  }
}

// ---------------------------------------------------------------------------------------------------
// The program

/** The run's shape, every thread's counters summed, and the first failure. */
export interface StressReport extends Counters {
  kind: 'mremap-stress';
  threads: number;
  regions: number;
  pages: number;
  pattern: StressPattern;
  failures: number;
  firstFailure?: { thread: number; iteration: number; addr: number; message: string };
}

function emptyReport(o: StressOptions): StressReport {
  return {
    kind: 'mremap-stress',
    threads: o.threads,
    regions: o.regions,
    pages: o.pages,
    pattern: o.pattern,
    iterations: 0,
    moves: 0,
    fastMoves: 0,
    slowMoves: 0,
    grows: 0,
    shrinks: 0,
    churns: 0,
    rewrites: 0,
    visits: 0,
    pagesVerified: 0,
    scratchMoves: 0,
    scratchRemaps: 0,
    scratchWrites: 0,
    failures: 0,
  };
}

/**
 * Sum the threads' counters from the control region (main, after joining the threads). A stats page
 * whose checksum does not match was overwritten after its thread sealed it: that is a failure too (and
 * its numbers are not added).
 */
function collectReport(u: UserContext, o: StressOptions, lay: StressLayout): StressReport {
  const rep = emptyReport(o);
  const page = new Uint8Array(PAGE_SIZE);
  const dv = new DataView(page.buffer);
  const u64 = (off: number): number => dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 2 ** 32;
  let firstOrder = Infinity;
  const late: Array<{ thread: number; addr: number; message: string }> = [];
  for (let t = 0; t < o.threads; t++) {
    const a = lay.statsVa(t);
    u.mmu.read(a, page);
    if (page.every((x) => x === 0)) continue; // never started (a failed clone is reported by main)
    const magic = dv.getUint32(kStatMagic, true);
    const sum = dv.getUint32(kStatSum, true);
    if (magic !== kStatsMagic || sum !== statsChecksum(page)) {
      rep.failures++;
      late.push({
        thread: t,
        addr: a,
        message:
          `the statistics page of thread ${t} at ${hex(a)} was overwritten after the thread` +
          ` sealed it (magic ${hex(magic)}, checksum ${hex(sum)}, content checksum ${hex(statsChecksum(page))})`,
      });
      continue;
    }
    for (const [k, off] of kCounterOffsets) rep[k] += u64(off);
    if (u64(kStatFailures) === 0) continue;
    rep.failures++;
    const order = u64(kStatFailOrder);
    if (order >= firstOrder) continue;
    firstOrder = order;
    const len = Math.min(u64(kStatMsgLen), PAGE_SIZE - kStatMsg);
    rep.firstFailure = {
      thread: t,
      iteration: u64(kStatFailIteration),
      addr: u64(kStatFailAddr),
      message: new TextDecoder().decode(page.subarray(kStatMsg, kStatMsg + len)),
    };
  }
  const firstLate = late[0];
  if (rep.firstFailure === undefined && firstLate) rep.firstFailure = { ...firstLate, iteration: 0 };
  return rep;
}

function summaryLine(r: StressReport): string {
  const head =
    `mremap-stress: ${r.threads} thread${r.threads === 1 ? '' : 's'} x ${r.regions} region${r.regions === 1 ? '' : 's'}` +
    ` x ${r.pages} pages, pattern ${r.pattern}: ${r.iterations} iterations, ${r.moves} moves (${r.fastMoves} fast, ${r.slowMoves} slow)` +
    `, ${r.grows} grows, ${r.shrinks} shrinks, ${r.churns} munmap/mmap, ${r.visits} visits,` +
    ` ${r.pagesVerified} pages verified`;
  if (r.failures === 0) return `${head}: OK\n`;
  const f = r.firstFailure;
  return (
    `${head}: FAILED in ${r.failures} thread${r.failures === 1 ? '' : 's'}` +
    (f ? `; first: thread ${f.thread}, ${f.message}` : '') +
    '\n'
  );
}

function stressMain(u: UserContext, argv: string[]): number {
  const o = parseStressArgs(argv);
  if (typeof o === 'string') {
    printErr(u, `mremap-stress: ${o}`);
    return 2;
  }
  const lay = new StressLayout(o);
  const names = regionNames(o);
  const m = u.mmu;
  const fail = (message: string): number => {
    printErr(u, `mremap-stress: ${message}`);
    u.report({ ...emptyReport(o), failures: 1, firstFailure: { thread: 0, iteration: 0, addr: 0, message } });
    return 1;
  };
  const ctl = u.sys.mmap(
    kStressCtlBase,
    lay.ctlBytes,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    -1,
    0,
  );
  if (ctl !== kStressCtlBase)
    return fail(`cannot map the control region at ${hex(kStressCtlBase)}: mmap returned ${describeRet(ctl)}`);
  m.store64(
    kStressCtlBase + kHdrDeadline,
    o.seconds > 0 ? Math.round(u.sys.clock_gettime(CLOCK_MONOTONIC) + o.seconds * 1000) : 0,
  );
  const shLen = kSharedPages * PAGE_SIZE;
  const sh = u.sys.mmap(
    kStressSharedBase,
    shLen,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    -1,
    0,
  );
  if (sh !== kStressSharedBase)
    return fail(`cannot map the shared region at ${hex(kStressSharedBase)}: mmap returned ${describeRet(sh)}`);
  const sharedId = regionId(kSharedName);
  for (let i = 0; i < kSharedPages; i++) {
    const va = kStressSharedBase + i * PAGE_SIZE;
    m.write(va, stressPage({ region: sharedId, page: i, generation: 1, thread: 0 }, va));
  }

  // Main is thread 0: its regions exist before the others start, so they have something to visit.
  const me = new StressThread(u, o, lay, 0, names);
  const ok = me.setup();
  const tids: number[] = [];
  const extra: string[] = [];
  for (let t = 1; ok && t < o.threads; t++) {
    const tid = u.sys.clone('mremap-stress-thread', t);
    if (tid < 0) {
      extra.push(
        `clone of thread ${t} returned ${describeRet(tid)}` +
          (tid === -EAGAIN ? ` (one user thread per CPU: run --threads ${t} or more CPUs)` : ''),
      );
      m.store32(kStressCtlBase + kHdrStop, 1);
      break;
    }
    tids.push(tid);
  }
  if (ok) me.run();
  me.finish();
  tids.forEach((tid, k) => {
    const r = u.sys.join(tid);
    if (r < 0) extra.push(`join of thread ${k + 1} (tid ${tid}) returned ${describeRet(r)}`);
  });
  const rep = collectReport(u, o, lay);
  for (const message of extra) {
    rep.failures++;
    rep.firstFailure ??= { thread: 0, iteration: 0, addr: 0, message };
  }
  u.report(rep);
  writeOut(u, STDOUT_FILENO, summaryLine(rep), kStressCtlBase + kOutPage * PAGE_SIZE, kOutPages * PAGE_SIZE);
  return rep.failures > 0 ? 1 : 0;
}

function stressThread(u: UserContext, t: number): number {
  const o = parseStressArgs(u.argv);
  if (typeof o === 'string') return 2;
  const th = new StressThread(u, o, new StressLayout(o), t, regionNames(o));
  if (th.setup()) th.run();
  th.finish();
  return th.failed ? 1 : 0;
}

export const mremapStress: Program = {
  name: 'mremap-stress',
  main: stressMain,
  threads: { 'mremap-stress-thread': stressThread },
};
