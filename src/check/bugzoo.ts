// The bug zoo: historical kernel bugs as flags. Each flag switches exactly one real code path of the
// fixed kernel back to its broken historical form (the code is at the places that test
// `env.bugs.has(name)`); it never writes a symptom itself. Stories: ../shared/reference/legoos-facts.md
// (§5.4, §7.3-7.5, §12) and DESIGN.md §7.

import { BUG_FLAGS, type BugFlag } from '../config.ts';

export interface BugEntry {
  name: BugFlag;
  /** which system, what broke, how it was found */
  story: string;
  /** the code path the flag switches back */
  path: string;
  /** what to look for */
  symptom: string;
  /** the detector(s) that catch it */
  detector: string;
  /** `splitkern repro NAME` runs: splitkern run <args> (seeds are varied per attempt) */
  repro: string[];
}

export const BUGS: BugEntry[] = [
  {
    name: 'mremap-no-pcache-move',
    story: 'LegoOS before 2018-02-07 (ff47ee16 "update the rmap move code") moved PTEs in move_ptes without moving the pcache line: the line stayed in the old set and its rmap kept the old address. sparc64 Linux had the same shape in move_pte with its virtually indexed D-cache, which corrupted dpkg databases after mremap.',
    path: 'src/processor/mm.ts moveExtent: the PTE moves to the new slot; the line, its set and its rmap stay as they were',
    symptom: 'set-index broken, rmap names the old slot: "mismatched PTE and rmap" on the next rmap walk; a line mapped at an address of another set; write-backs to the old address (lost data)',
    detector: 'rmap/PTE check (eviction, sweep, --check), set-index check, data oracle',
    repro: ['script', 'traces/mremap-paths.jsonl', '--check', 'syscall', '--pcache', '256K', '--ways', '4'],
  },
  {
    name: 'mremap-pte-before-rmap',
    story: 'LegoOS 2018-02-02..06 (571f75e0 "hook move_ptes, zap_pte with pcache"): move_ptes moved the PTE first and pcache_move_pte updated the rmap afterwards, outside the line lock; rmap walkers racing with mremap saw the old slot empty ("This can happen ... 1) mremap") and printed the mismatch, which 4122ef12 made a BUG().',
    path: 'src/processor/mm.ts moveExtent: the PTE is moved and the line unlocked before the rmap is re-pointed',
    symptom: '"ERROR: mismatched PTE and rmap" from a concurrent rmap walker (kevict_sweepd, eviction on another CPU)',
    detector: 'rmap/PTE check in every rmap walker',
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '256K', '--ways', '4', '--sweep', '--sweep-interval', '0', '--pattern', 'pingpong'],
  },
  {
    name: 'mremap-unserialized',
    story: 'LegoOS HEAD: P takes no mm lock around the P2M_MREMAP request and the page-table move (P never uses mmap_sem; legoos-facts §7.1). Two mremaps A: a->b and B: b->c are serialised by M but interleave on P: B may scan b before A installed PTEs there.',
    path: 'src/processor/syscalls.ts mremap: no mmap_sem around the M call and the replay of its page-table operations',
    symptom: 'dirty lines left mapped at b (write-back fails with -EFAULT: lost data), c filled with M\'s stale copy, PTEs left behind, or an ABBA deadlock on PTE-page locks',
    detector: 'data oracle, rmap/PTE check, soft-lockup watchdog',
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2'],
  },
  {
    name: 'mremap-dest-overwrite',
    story: 'LegoOS HEAD move_ptes never checks that the destination PTE is none (legoos-facts §7.4 hazard 4): a PTE faulted in at the destination before the move is overwritten while its rmap still names that slot.',
    path: 'src/processor/mm.ts moveExtent: a present destination PTE is overwritten instead of refused',
    symptom: 'the overwritten line\'s rmap points at a slot mapping another line: mismatch report, leaked line. It needs a fault to reach the destination between M\'s unmap and P\'s move, which only an unserialised mremap allows: reproduce it together with mremap-unserialized',
    detector: 'rmap/PTE check, --check (line-mapped-twice, pte-without-rmap)',
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2', '--check', 'end', '--bug', 'mremap-unserialized'],
  },
  {
    name: 'free-before-flush',
    story: 'LegoOS HEAD frees the line in pcache_zap_pte (munmap, brk shrink) and in the mremap slowpath before the extent\'s flush_tlb_mm_range (legoos-facts §7.4 hazard 1): another CPU may still write through a stale TLB entry into a line that is already free or reused.',
    path: 'src/processor/mm.ts releasePgtable and the mremap slowpath: put_pcache before flush_tlb_mm_range',
    symptom: 'a line handed out again while a TLB still maps it; another page\'s data appears in a reused line',
    detector: 'stale-TLB check at allocation (--check), data oracle',
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2', '--check', 'end'],
  },
  {
    name: 'tlb-shootdown-skip',
    story: 'A shootdown that flushes only the local TLB (LegoOS before 35e02ecc "Add tlb shootdown", 2017-09): remote CPUs of the mm keep their translations after mremap, munmap or eviction.',
    path: 'src/processor/tlb.ts flush_tlb_mm_range: no IPI to the other CPUs of mm_cpumask',
    symptom: 'a thread keeps using a stale translation: it reads or writes a line that now holds another page',
    detector: 'stale-TLB check at allocation (--check), data oracle',
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2', '--check', 'end'],
  },
  {
    name: 'brk-shrink-no-zap',
    story: 'LegoOS HEAD brk: M shrinks the heap with do_munmap but P never releases its PTEs (legoos-facts §7.5): after a shrink and a regrow the program reads its old data instead of zeros.',
    path: 'src/processor/syscalls.ts brk: the zap of the shrunk range is skipped on P',
    symptom: 'regrown heap pages hold old data instead of zeros; lines stay mapped at addresses M no longer maps',
    detector: 'data oracle (munmap-brk scenario), pte-without-rmap is not triggered (rmap stays consistent)',
    repro: ['script', 'traces/munmap-brk.jsonl'],
  },
  {
    name: 'cpuhp-missing',
    story: 'LegoOS 2018-02-05: secondary CPUs skipped part of their bring-up callbacks, so their call-function (csd) data was never initialised; the first IPI to such a CPU hit the WARN in kernel/smp.c generic_smp_call_function_single_interrupt and the shootdown never completed.',
    path: 'src/processor/cpu.ts CPUHP_STEPS: smpcfd:prepare is skipped',
    symptom: 'the smp.c warning, then a CPU waiting forever for the IPI ack (soft lockup)',
    detector: 'the smp.c warning, soft-lockup watchdog (exit 3)',
    repro: ['script', 'traces/legoos-mremap-2cpu.jsonl', '--cpus', '3', '--watchdog', '3'],
  },
];

export const BUG_NAMES: readonly BugFlag[] = BUGS.map((b) => b.name);
export const isBugFlag = (s: string): s is BugFlag => (BUG_FLAGS as readonly string[]).includes(s);

export interface KernelPreset {
  name: string;
  bugs: BugFlag[];
  rmapReportFormat: '2018-02' | 'head';
  why: string;
}

export const KERNELS: KernelPreset[] = [
  { name: 'fixed', bugs: [], rmapReportFormat: 'head', why: 'splitkern\'s kernel: every path in its fixed form' },
  {
    name: 'legoos-head',
    bugs: ['mremap-unserialized', 'mremap-dest-overwrite', 'free-before-flush', 'brk-shrink-no-zap'],
    rmapReportFormat: 'head',
    why: 'LegoOS HEAD: fast/slow mremap paths (ff47ee16), but no P-side mm lock (§7.1), no destination check in move_ptes (§7.4 hazard 4), lines freed before the TLB flush (hazard 1), no PTE release on brk shrink (§7.5)',
  },
  {
    name: 'legoos-2018-02-03',
    bugs: ['mremap-pte-before-rmap', 'mremap-unserialized', 'brk-shrink-no-zap'],
    rmapReportFormat: '2018-02',
    why: 'after 571f75e0 (02-02, move_ptes hooked to pcache_move_pte, PTE moved before the rmap) and 933163e8 (02-03, lock order), before the fast/slow split (02-07); no P-side mm lock and no brk zap in any version',
  },
  {
    name: 'legoos-2018-02-01',
    bugs: ['mremap-no-pcache-move', 'mremap-unserialized', 'brk-shrink-no-zap'],
    rmapReportFormat: '2018-02',
    why: 'c9a9651a (02-01) adds the "mismatched PTE and rmap" check, but move_ptes does not touch the pcache yet (571f75e0 is 02-02): the line stays in its old set',
  },
];

export { closest } from '../text.ts';
