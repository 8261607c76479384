// fork-stress: parents and children that copy-on-write, mremap and munmap the same pages, checked by
// page tags against what each side wrote.
//
//   argv = [--procs N] [--pages P] [--iterations F] [--seconds S]
//
// main (the root) maps two private regions of P pages. Each round it verifies every page of both
// against the tags it wrote last, writes a new version of them all, then forks a child (up to N
// alive at once; past that it first reaps one with wait4), and every third round moves a region with
// mremap, so lines still shared with children move too. A tag is (writer pid, version, region, page)
// in the whole-page format of script/tags.ts, independent of where the page is mapped.
// The child starts knowing only the version its parent wrote before the fork (the fork argument: not
// memory, so an oracle the kernel cannot corrupt). It verifies that both regions hold exactly that
// version (nothing the parent wrote after the fork shows through), writes its own tags over region 0
// (every page a COW break), mremaps region 1 elsewhere and checks it still holds the parent's version,
// overwrites half of it, munmaps the second half of region 0, and verifies what is left. It exits 0,
// or with the number of bad pages (at most 255) after printing the first ones on stderr.
// A third region is shared (MAP_SHARED|MAP_ANONYMOUS, kSharedPages pages), with a second view of
// the same pages made by mremap(shared, 0, len, MREMAP_MAYMOVE): the alias. The root first checks
// that a write through either view is read through the other. Each child owns one page of it (its
// slot, given in the fork argument with its version): it writes its tag through one view, reads it
// through the other, makes a third view, writes a newer tag through that, munmaps it and checks the
// page through the first two. After reaping the child the root reads the slot through its own alias:
// it must hold what the child wrote last (shared pages are shared across fork). Every fifth round
// the root replaces its alias with a fresh one.
// Every eighth child instead execs another program (execve of pthread-stress with three threads,
// which checks itself and exits 0 only if its counts are the closed forms): the root counts it as
// verified when wait4 gives status 0. The root also checks execve's errors (-ENOENT, -E2BIG, and
// -EBUSY while it has a second thread).
// The root stops after F forks (default 200; 0 or --seconds alone: no limit) or S seconds (0: none),
// reaps every child and reports
// { kind: 'fork-stress', forks, reaped, childFailures, pagesVerified, mismatches, firstMismatch }.
// A child's pages count as verified only if it exited 0 (its exit means it checked all of them).
// User space: no kernel lock; it talks to the kernel only through fork, wait4, mmap, mremap, munmap.
import {
  CLOCK_MONOTONIC,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  MAP_SHARED,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  ECHILD,
  E2BIG,
  EBUSY,
  ENOENT,
  FUTEX_WAIT_PRIVATE,
  FUTEX_WAKE_PRIVATE,
  SIGSEGV,
  WNOHANG,
  wTermSig,
} from '../../uapi/abi.ts';
import { UserSignal, type Program, type UserContext } from '../../uapi/program.ts';
import { Libc, SIGABRT } from '../libc.ts';
import { at } from '../../lib/at.ts';
import { hex } from '../../lib/text.ts';
import { decodePageTag, describePageContent, writeTaggedPage, type PageTag } from './script/tags.ts';
import { intArg } from './args.ts';

export interface ForkStressOptions {
  procs: number;
  pages: number;
  iterations: number;
  seconds: number;
}
export const FORK_STRESS_DEFAULTS: ForkStressOptions = { procs: 4, pages: 32, iterations: 200, seconds: 0 };
export interface ForkStressReport {
  kind: 'fork-stress';
  forks: number;
  reaped: number;
  /** children that did not exit 0 (a bad page, or a signal) */
  childFailures: number;
  /** pages verified by the root and by children that exited 0 */
  pagesVerified: number;
  /** bad pages the root saw in its own regions */
  mismatches: number;
  firstMismatch?: string;
  /** children that exec'd another program and exited 0 */
  execs: number;
  /** wait4, execve and signal checks that failed (empty when all passed) */
  selfChecks: string[];
}
const kUsage = 'options: --procs N --pages P --iterations F --seconds S';

export function parseForkStressArgs(argv: readonly string[]): ForkStressOptions | string {
  const o = { ...FORK_STRESS_DEFAULTS };
  const ints: Record<string, { key: keyof ForkStressOptions; min: number; max: number }> = {
    '--procs': { key: 'procs', min: 1, max: 12 },
    '--pages': { key: 'pages', min: 2, max: 4096 },
    '--iterations': { key: 'iterations', min: 0, max: 10_000_000 },
    '--seconds': { key: 'seconds', min: 0, max: 86_400 },
  };
  let forksGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = at(argv, i);
    if (a === '--iterations') forksGiven = true;
    const spec = ints[a];
    if (spec === undefined) return `unknown argument "${a}" (${kUsage})`;
    const n = intArg(a, argv[++i], spec.min, spec.max);
    if (typeof n === 'string') return n;
    o[spec.key] = n;
  }
  if (o.seconds > 0 && !forksGiven) o.iterations = 0; // a time budget alone: as many forks as fit
  if (o.iterations === 0 && o.seconds === 0) return '--iterations 0 needs --seconds S (else it never ends)';
  return o;
}

/**
 * A page's tag, in the page format the scenarios and mremap-stress use (script/tags.ts: a whole page,
 * self-describing and checksummed, independent of where it is mapped): the writer's pid as the
 * thread, the version as the generation (descriptions name the region by its number, 0 or 1).
 */
const tagOf = (owner: number, version: number, region: number, page: number): PageTag => ({
  region,
  page,
  generation: version,
  thread: owner,
});
const kRegionNames = new Map([
  [0, '0'],
  [1, '1'],
  [2, 'shared'],
]);
/** The shared region's region number in tags, and its pages: one slot per live child (--procs <= 12). */
const kShared = 2;
const kSharedPages = 16;
/** A child's fork argument: its parent's version and its shared slot. */
const kSlotsPerVersion = 64;

// The control page, at a fixed address (private, so a child reads the copy of fork time): the libc
// arena, the parent's pid, the region size and the regions' addresses.
const kCtl = 0x200000000;
const C_ARENA = 0; //   u64 libc arena state VA
const C_PARENT = 8; //  u32 pid of the tags' writer
const C_PAGES = 12; //  u32 pages per region
const C_REGION = 16; // u64 × 2: region addresses
const C_SHARED = 32; // u64: the shared region
const C_ALIAS = 40; //  u64: its alias (the second view of the same pages)
const C_IDLE = 48; //   u32: 0 while the root's idle thread must wait (execve's -EBUSY check)
/** What an exec'ing child runs: another program, with threads, that checks itself. */
const kExecArgv = ['--threads', '3', '--iterations', '50', '--items', '60'];

class Tags {
  bad = 0;
  first: string | undefined;
  private readonly buf = new Uint8Array(PAGE_SIZE);
  constructor(private readonly u: UserContext) {}
  write(va: number, tag: PageTag): void {
    writeTaggedPage(this.u.mmu, va, tag);
  }
  check(va: number, want: PageTag, what: string): boolean {
    this.u.mmu.read(va, this.buf);
    const c = decodePageTag(this.buf);
    const t = c.kind === 'tag' ? c.tag : undefined;
    if (
      c.kind === 'tag' &&
      c.intact &&
      t?.region === want.region &&
      t.page === want.page &&
      t.generation === want.generation &&
      t.thread === want.thread
    )
      return true;
    this.bad++;
    this.first ??= `${what} at ${hex(va)}: holds ${describePageContent(c, kRegionNames)}, expected region ${want.region} page ${want.page} generation ${want.generation} written by pid ${want.thread}`;
    return false;
  }
}

function mapRegion(u: UserContext, pages: number): number {
  const va = u.sys.mmap(0, pages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: mmap failed (${va})`);
  return va;
}

/** The shared region and a second view of it: mremap(old, 0, len, MREMAP_MAYMOVE) of a shared mapping. */
function mapShared(u: UserContext): number {
  const va = u.sys.mmap(0, kSharedPages * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (va < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: mmap of the shared region failed (${va})`);
  return va;
}

function aliasOf(u: UserContext, shared: number): number {
  const va = u.sys.mremap(shared, 0, kSharedPages * PAGE_SIZE, MREMAP_MAYMOVE, 0);
  if (va < 0)
    throw new UserSignal(SIGABRT, shared, `fork-stress: mremap(old_len 0) of the shared region failed (${va})`);
  return va;
}

/** Move a region to a fresh address: map a hole there, then mremap onto it (MREMAP_FIXED-free). */
function moveRegion(u: UserContext, va: number, len: number): number {
  const hole = u.sys.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (hole < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: mmap failed (${hole})`);
  u.sys.munmap(hole, len);
  const to = u.sys.mremap(va, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
  if (to < 0) throw new UserSignal(SIGABRT, va, `fork-stress: mremap failed (${to})`);
  return to;
}

function child(u: UserContext, arg: number): number {
  const version = Math.floor(arg / kSlotsPerVersion);
  const slot = arg % kSlotsPerVersion;
  const m = u.mmu;
  const libc = Libc.attach(u, m.load64(kCtl + C_ARENA));
  const parent = m.load32(kCtl + C_PARENT);
  const pages = m.load32(kCtl + C_PAGES);
  const r0 = m.load64(kCtl + C_REGION);
  let r1 = m.load64(kCtl + C_REGION + 8);
  const me = u.pid;
  const t = new Tags(u);
  // 1. exactly the parent's version of fork time, in both regions
  for (let p = 0; p < pages; p++) {
    t.check(r0 + p * PAGE_SIZE, tagOf(parent, version, 0, p), `child ${me}: region 0 page ${p}`);
    t.check(r1 + p * PAGE_SIZE, tagOf(parent, version, 1, p), `child ${me}: region 1 page ${p}`);
  }
  // 2. COW-write region 0; move region 1 and check it kept the parent's data; overwrite its first half
  for (let p = 0; p < pages; p++) t.write(r0 + p * PAGE_SIZE, tagOf(me, 1, 0, p));
  r1 = moveRegion(u, r1, pages * PAGE_SIZE);
  const half = Math.floor(pages / 2);
  for (let p = 0; p < pages; p++) {
    t.check(r1 + p * PAGE_SIZE, tagOf(parent, version, 1, p), `child ${me}: moved region 1 page ${p}`);
    if (p < half) t.write(r1 + p * PAGE_SIZE, tagOf(me, 1, 1, p));
  }
  // 3. drop the second half of region 0, verify everything left
  u.sys.munmap(r0 + half * PAGE_SIZE, (pages - half) * PAGE_SIZE);
  for (let p = 0; p < half; p++) t.check(r0 + p * PAGE_SIZE, tagOf(me, 1, 0, p), `child ${me}: region 0 page ${p}`);
  for (let p = 0; p < pages; p++)
    t.check(
      r1 + p * PAGE_SIZE,
      p < half ? tagOf(me, 1, 1, p) : tagOf(parent, version, 1, p),
      `child ${me}: region 1 page ${p}`,
    );
  sharedSlot(u, t, slot, version);
  if (t.bad > 0) libc.dprintf(2, 'fork-stress: %d bad page(s); first: %s\n', t.bad, t.first ?? '');
  return Math.min(255, t.bad);
}

/**
 * The child's page of the shared region: written through one view and read through the other, then
 * written through a third view that is unmapped at once (a dirty shared page outliving its mapping),
 * and read through the first two. It leaves generation 2 * version + 1 for the root to find.
 */
function sharedSlot(u: UserContext, t: Tags, slot: number, version: number): void {
  const me = u.pid;
  const views = [u.mmu.load64(kCtl + C_SHARED), u.mmu.load64(kCtl + C_ALIAS)];
  const a = at(views, version % 2);
  const b = at(views, 1 - (version % 2));
  const off = slot * PAGE_SIZE;
  const first = tagOf(me, 2 * version, kShared, slot);
  t.write(a + off, first);
  t.check(b + off, first, `child ${me}: shared page ${slot} written at ${hex(a + off)}, read`);
  const third = aliasOf(u, at(views, 0));
  t.check(third + off, first, `child ${me}: shared page ${slot} through a new alias`);
  const last = tagOf(me, 2 * version + 1, kShared, slot);
  t.write(third + off, last);
  u.sys.munmap(third, kSharedPages * PAGE_SIZE);
  for (const v of views)
    t.check(
      v + off,
      last,
      `child ${me}: shared page ${slot} written through an unmapped alias at ${hex(third + off)}, read`,
    );
}

/** A child that becomes another program; execve returns only if it failed. */
function exec(u: UserContext): number {
  const r = u.sys.execve('pthread-stress', kExecArgv);
  return 100 + Math.min(100, -r);
}

/** A second thread of the root, so that execve must refuse (-EBUSY): it waits until told to end. */
function idle(u: UserContext): number {
  while (u.mmu.load32(kCtl + C_IDLE) === 0) u.sys.futex(kCtl + C_IDLE, FUTEX_WAIT_PRIVATE, 0);
  return 0;
}

/** execve's errors, each of which leaves the caller as it was. */
function execveChecks(u: UserContext, fails: string[]): void {
  const enoent = u.sys.execve('no-such-program', []);
  if (enoent !== -ENOENT) fails.push(`execve of an unknown program returned ${enoent}, not -ENOENT`);
  const e2big = u.sys.execve('pthread-stress', ['x'.repeat(200_000)]);
  if (e2big !== -E2BIG) fails.push(`execve with 200 KB of argv returned ${e2big}, not -E2BIG`);
  u.mmu.store32(kCtl + C_IDLE, 0);
  const tid = u.sys.clone('idle', 0);
  if (tid < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: clone failed (${tid})`);
  const ebusy = u.sys.execve('pthread-stress', kExecArgv);
  if (ebusy !== -EBUSY) fails.push(`execve with a second thread returned ${ebusy}, not -EBUSY`);
  u.mmu.store32(kCtl + C_IDLE, 1);
  u.sys.futex(kCtl + C_IDLE, FUTEX_WAKE_PRIVATE, 1);
  const joined = u.sys.join(tid);
  if (joined !== 0) fails.push(`the idle thread ended with ${joined}`);
}

/**
 * A child that must die: it makes region 0 read-only and writes to it. Its lines are still shared
 * copy-on-write with the parent, and the write must be SIGSEGV (the mapping forbids it), not a COW break.
 */
function crash(u: UserContext): number {
  const r0 = u.mmu.load64(kCtl + C_REGION);
  u.sys.mprotect(r0, PAGE_SIZE, PROT_READ);
  u.mmu.store8(r0, 1);
  return 0;
}

/** Pages a child verifies when it exits 0 (steps 1 to 3 above). */
const childPages = (pages: number): number => 2 * pages + pages + Math.floor(pages / 2) + pages + 4;

function main(u: UserContext, argv: string[]): number {
  const o = parseForkStressArgs(argv);
  if (typeof o === 'string') throw new UserSignal(SIGABRT, 0, `fork-stress: ${o}`);
  const m = u.mmu;
  const libc = Libc.init(u);
  const c = u.sys.mmap(kCtl, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (c !== kCtl) throw new UserSignal(SIGABRT, 0, `fork-stress: mmap of the control page failed (${c})`);
  const len = o.pages * PAGE_SIZE;
  const region = [mapRegion(u, o.pages), mapRegion(u, o.pages)];
  m.store64(kCtl + C_ARENA, libc.stateVa);
  m.store32(kCtl + C_PARENT, u.pid);
  m.store32(kCtl + C_PAGES, o.pages);
  const t = new Tags(u);
  const status = mapRegion(u, 1);
  const shared = mapShared(u);
  let alias = aliasOf(u, shared);
  m.store64(kCtl + C_SHARED, shared);
  m.store64(kCtl + C_ALIAS, alias);
  // the alias rule: a write through either view is read through the other, at once
  for (let p = 0; p < kSharedPages; p++) {
    const off = p * PAGE_SIZE;
    t.write(shared + off, tagOf(u.pid, 0, kShared, p));
    t.check(
      alias + off,
      tagOf(u.pid, 0, kShared, p),
      `root: shared page ${p} written at ${hex(shared + off)}, read through its alias`,
    );
    t.write(alias + off, tagOf(u.pid, 1, kShared, p));
    t.check(
      shared + off,
      tagOf(u.pid, 1, kShared, p),
      `root: shared page ${p} written through its alias at ${hex(alias + off)}, read`,
    );
  }
  const deadline = o.seconds > 0 ? u.sys.clock_gettime(CLOCK_MONOTONIC) + o.seconds * 1000 : Infinity;
  const rep: ForkStressReport = {
    kind: 'fork-stress',
    forks: 0,
    reaped: 0,
    childFailures: 0,
    pagesVerified: 0,
    mismatches: 0,
    execs: 0,
    selfChecks: [],
  };
  execveChecks(u, rep.selfChecks);
  rep.pagesVerified += 2 * kSharedPages - t.bad;
  // wait4's edges, and a child killed by a signal: a write to a read-only page it shares by COW
  if (u.sys.wait4(-1, status, 0) !== -ECHILD) rep.selfChecks.push('wait4 with no child did not return -ECHILD');
  m.store64(kCtl + C_REGION, at(region, 0));
  t.write(at(region, 0), tagOf(u.pid, 0, 0, 0)); // present, so the child shares its line
  const doomed = u.sys.fork('crash', 0);
  const got = doomed > 0 ? u.sys.wait4(doomed, status, 0) : doomed;
  if (got !== doomed || m.load32(status) !== wTermSig(SIGSEGV))
    rep.selfChecks.push(
      `the crashing child: wait4 gave ${got}, status 0x${m.load32(status).toString(16)} (want SIGSEGV)`,
    );
  if (u.sys.wait4(doomed, status, WNOHANG) !== -ECHILD) rep.selfChecks.push('a reaped child was reaped again');
  let live = 0;
  // live child -> its shared page (-1: an exec'ing child, which has none)
  const slots = new Map<number, { slot: number; version: number }>();
  const freeSlots = Array.from({ length: kSharedPages }, (_, i) => kSharedPages - 1 - i);
  const reap = (options: number): boolean => {
    const pid = u.sys.wait4(-1, status, options);
    if (pid === 0) return false;
    if (pid < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: wait4 failed (${pid})`);
    live--;
    rep.reaped++;
    const owned = slots.get(pid);
    if (owned === undefined) throw new UserSignal(SIGABRT, 0, `fork-stress: wait4 returned ${pid}, not a child`);
    slots.delete(pid);
    if (owned.slot < 0) {
      if (m.load32(status) === 0) rep.execs++;
      else {
        rep.childFailures++;
        libc.dprintf(2, 'fork-stress: exec child %d ended with wait status 0x%x\n', pid, m.load32(status));
      }
      return true;
    }
    freeSlots.push(owned.slot);
    if (m.load32(status) === 0) {
      rep.pagesVerified += childPages(o.pages);
      const va = alias + owned.slot * PAGE_SIZE;
      const what = `root: shared page ${owned.slot} of child ${pid}, read through the root's alias`;
      if (t.check(va, tagOf(pid, 2 * owned.version + 1, kShared, owned.slot), what)) rep.pagesVerified++;
    } else {
      rep.childFailures++;
      libc.dprintf(2, 'fork-stress: child %d ended with wait status 0x%x\n', pid, m.load32(status));
    }
    return true;
  };
  for (let version = 1; ; version++) {
    for (let r = 0; r < 2; r++) {
      const base = at(region, r);
      for (let p = 0; p < o.pages; p++) {
        if (
          version > 1 &&
          t.check(base + p * PAGE_SIZE, tagOf(u.pid, version - 1, r, p), `root: region ${r} page ${p}`)
        )
          rep.pagesVerified++;
        t.write(base + p * PAGE_SIZE, tagOf(u.pid, version, r, p));
      }
      m.store64(kCtl + C_REGION + 8 * r, base);
    }
    if ((o.iterations > 0 && rep.forks >= o.iterations) || u.sys.clock_gettime(CLOCK_MONOTONIC) >= deadline) break;
    while (live >= o.procs) reap(0);
    const exec = version % 8 === 4;
    const slot = exec ? -1 : freeSlots.pop();
    if (slot === undefined) throw new UserSignal(SIGABRT, 0, 'fork-stress: no free shared slot');
    if (version % 5 === 0) {
      u.sys.munmap(alias, kSharedPages * PAGE_SIZE);
      alias = aliasOf(u, shared);
      m.store64(kCtl + C_ALIAS, alias);
    }
    const pid = exec ? u.sys.fork('exec', 0) : u.sys.fork('child', version * kSlotsPerVersion + slot);
    if (pid < 0) throw new UserSignal(SIGABRT, 0, `fork-stress: fork failed (${pid})`);
    slots.set(pid, { slot, version });
    live++;
    rep.forks++;
    while (live > 0 && reap(WNOHANG));
    if (version % 3 === 0) region[version % 2] = moveRegion(u, at(region, version % 2), len);
  }
  while (live > 0) reap(0);
  rep.mismatches = t.bad;
  if (t.first !== undefined) rep.firstMismatch = t.first;
  u.report(rep);
  libc.printf(
    'fork-stress: %d forks, %d children reaped (%d failed), %d pages verified, %d bad\n',
    rep.forks,
    rep.reaped,
    rep.childFailures,
    rep.pagesVerified,
    rep.mismatches,
  );
  return rep.childFailures > 0 || rep.mismatches > 0 || rep.selfChecks.length > 0 ? 1 : 0;
}

export const forkStress: Program = { name: 'fork-stress', main, threads: { child, crash, exec, idle } };
