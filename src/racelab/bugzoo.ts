// The bug zoo: historical kernel bugs as flags (the race lab's catalogue). Each flag switches exactly
// one real code path of the fixed kernel back to its broken historical form (the code is at the places
// that test `env.bugs.has(name)`, and each counts its broken branch with `env.bugRan(name)`); it never
// writes a symptom itself. Each entry names its signature (what its failure looks like), its
// reproducer and its control. Stories: ../shared/reference/legoos-facts.md (§5.4, §7.3-7.5, §9, §12)
// and DESIGN.md §7. Kernel presets name a dated LegoOS as a set of flags; the mremap move path has one
// function per dated form (src/processor/mremap.ts), which the flags select. A catalogue of constant
// data: it touches no shared memory and takes no lock; callers on any thread hold nothing.

import { BUG_FLAGS, type BugFlag } from '../kernel/config.ts';
import type { ExpectedSignature } from './signature.ts';

export interface BugEntry {
  name: BugFlag;
  /** which system, what broke, how it was found */
  story: string;
  /** the code path the flag switches back, with the commit and date its broken form stands for */
  path: string;
  /** what to look for */
  symptom: string;
  /** the detector(s) that catch it */
  detector: string;
  /**
   * What this bug's failure looks like: the detector kind and the facts that tell it apart from the
   * others (src/racelab/signature.ts). A run reproduces the bug only if it shows this signature and
   * `nr_bug_<flag>` > 0 (the broken branch ran); anything else is an "other failure".
   */
  signature: ExpectedSignature;
  /** `splitkern repro NAME` runs: splitkern run <repro> --bug NAME[,companions] --seed N */
  repro: string[];
  /**
   * Flags the reproducer needs on besides this one (in the run and in its control): the control is
   * the same command with only this flag off, and must not show the signature.
   */
  companions?: BugFlag[];
}

export const BUGS: BugEntry[] = [
  {
    name: 'mremap-no-pcache-move',
    story:
      'LegoOS before 2018-02-02 (c9a9651a 2018-02-01 added the "mismatched PTE and rmap" check; 571f75e0 of 02-02 first hooked move_ptes to the pcache) moved PTEs in move_ptes without telling the pcache: the line stayed in its old set and its rmap kept the old slot and address. sparc64 Linux had the same shape in move_pte with its virtually indexed D-cache, which corrupted dpkg databases after mremap.',
    path: 'src/processor/mremap.ts movePteNoPcache (the 2018-02-01 form, c9a9651a): the PTE moves to the new slot; the line, its set and its rmap stay as they were',
    symptom:
      'after the mremap returned, an rmap names its old, now empty slot: "mismatched PTE and rmap" on the next rmap walk or check; a line mapped at an address of another set; write-backs to the old address (lost data)',
    detector: 'rmap/PTE check (eviction, sweep, --check), set-index check, data oracle',
    signature: {
      kind: 'rmap-pte-mismatch',
      facts: ['pte=none', 'during=none'],
      describe: 'an rmap naming an empty slot while no mremap is moving its address: the move never told the pcache',
    },
    repro: ['script', 'traces/mremap-paths.jsonl', '--check', 'syscall', '--pcache', '256K', '--ways', '4'],
  },
  {
    name: 'mremap-pte-before-rmap',
    story:
      'LegoOS 2018-02-02..06 (571f75e0 "hook move_ptes, zap_pte with pcache" to ff47ee16 of 02-07): move_ptes moved the PTE first and pcache_move_pte re-pointed the rmap afterwards, outside the PTE locks, for every page whatever the sets (the line stayed where it was); rmap walkers racing with mremap saw the old slot empty ("This can happen ... 1) mremap") and printed the mismatch, which 4122ef12 (02-06) made a BUG().',
    path: 'src/processor/mremap.ts pcacheMovePtePteFirst (the 2018-02-02 form, 571f75e0): the PTE is moved and the PTE locks dropped before the line is locked and its rmap re-pointed',
    symptom:
      '"ERROR: mismatched PTE and rmap" from a concurrent rmap walker (kevict_sweepd, eviction on another CPU) while the mremap runs',
    detector: 'rmap/PTE check in every rmap walker',
    signature: {
      kind: 'rmap-pte-mismatch',
      facts: ['pte=none', 'slot=same', 'during=mremap'],
      describe:
        "an rmap naming its own, empty slot, found inside move_page_tables of the rmap's address: the window between the PTE move and the rmap update",
    },
    repro: ['script', 'traces/legoos-mremap-loop.jsonl', '--cpus', '2', '--sweep', '--sweep-interval', '0'],
  },
  {
    name: 'mremap-unserialized',
    story:
      'LegoOS HEAD: P takes no mm lock around the P2M_MREMAP request and the page-table move (P never uses mmap_sem; legoos-facts §7.1). Two mremaps A: a->b and B: b->c are serialised by M but interleave on P: B may scan b before A installed PTEs there; page faults run in the middle of a move.',
    path: 'src/processor/syscalls.ts changeAddressSpace: mremap runs without mmap_sem around the M call and the replay of its page-table operations (counted when another address-space change or a fault of the mm runs inside it)',
    symptom:
      "dirty lines left mapped at b (write-back fails with -EFAULT: lost data), c filled with M's stale copy, PTEs left behind, or an ABBA deadlock on PTE-page locks",
    detector: 'data oracle, rmap/PTE check, soft-lockup watchdog',
    signature: {
      kind: 'oracle',
      facts: ['got=zeros|older-generation'],
      describe: "a page that lost its data (zeros) or holds an older generation of itself: M's stale copy",
    },
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2'],
  },
  {
    name: 'mremap-dest-overwrite',
    story:
      'LegoOS HEAD move_ptes never checks that the destination PTE is none (legoos-facts §7.4 hazard 4): a PTE faulted in at the destination before the move is overwritten while its rmap still names that slot.',
    path: 'src/processor/mremap.ts destinationNone: a present destination PTE is overwritten instead of refused (LegoOS HEAD move_ptes)',
    symptom:
      "the overwritten line's rmap names a slot that now maps another line: mismatch report, the line leaked. It needs a fault to reach the destination between P's zap of it and the move, which only an unserialised mremap allows: the reproducer runs with mremap-unserialized, and so does its control",
    detector: 'rmap/PTE check (eviction, sweep, --check)',
    signature: {
      kind: 'rmap-pte-mismatch',
      facts: ['pte=other-line', 'slot=same'],
      describe: 'an rmap whose own slot maps another line: its PTE was overwritten',
    },
    repro: ['script', 'traces/mremap-dest-fault.jsonl', '--cpus', '2', '--check', 'end'],
    companions: ['mremap-unserialized'],
  },
  {
    name: 'free-before-flush',
    story:
      "LegoOS HEAD frees the line in pcache_zap_pte (munmap, brk shrink) and in the mremap slowpath (ff47ee16, 2018-02-07) before the extent's flush_tlb_mm_range (legoos-facts §7.4 hazard 1): another CPU may still write through a stale TLB entry into a line that is already free or reused.",
    path: 'src/processor/mremap.ts pcacheMovePteSlowpathHead (the HEAD slowpath, ff47ee16) and src/processor/mm.ts releasePgtable: put_pcache before flush_tlb_mm_range',
    symptom: "a line handed out again while a TLB still maps it; another page's data appears in a reused line",
    detector: 'stale-TLB check at allocation (--check), data oracle',
    signature: {
      kind: 'stale-tlb',
      facts: ['at=alloc', 'flush=pending'],
      describe:
        'a line reallocated while a TLB still maps it and the flush that would remove the entry is still on its way: freed before its flush',
    },
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2', '--check', 'end'],
  },
  {
    name: 'tlb-shootdown-skip',
    story:
      'A shootdown that flushes only the local TLB (LegoOS before 35e02ecc "Add tlb shootdown", 2017-09-17): remote CPUs of the mm keep their translations after mremap, munmap or eviction.',
    path: 'src/processor/tlb.ts flushTlbMmRange: no IPI to the other CPUs of mm_cpumask',
    symptom: 'a thread keeps using a stale translation: it reads or writes a line that now holds another page',
    detector: 'stale-TLB check at use and at allocation (--check), data oracle',
    signature: {
      kind: 'stale-tlb',
      facts: ['flush=done'],
      describe: 'a TLB entry still used or still present after the flush that should have removed it completed',
    },
    repro: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2', '--check', 'end'],
  },
  {
    name: 'brk-shrink-no-zap',
    story:
      'LegoOS HEAD brk: M shrinks the heap with do_munmap but P never releases its PTEs (legoos-facts §7.5): after a shrink and a regrow the program reads its old data instead of zeros.',
    path: 'src/processor/syscalls.ts replay: the zap of the shrunk brk range is skipped on P',
    symptom: 'pages past the new break stay mapped on P; regrown heap pages hold old data instead of zeros',
    detector: 'data oracle (munmap-brk scenario); the rmap stays consistent, so the rmap checks stay silent',
    signature: {
      kind: 'oracle',
      facts: ['got=writable|readonly', 'want=unmapped'],
      describe: 'a page past the break that M unmapped is still mapped on P',
    },
    repro: ['script', 'traces/munmap-brk.jsonl'],
  },
  {
    name: 'cpuhp-missing',
    story:
      'LegoOS 2018-02-05: secondary CPUs skipped part of their bring-up callbacks (before d4230768 "boot: add cpu_online_callback() to init per-cpu things"), so smpcfd_prepare_cpu never allocated their cfd_data csd array. A multi-target IPI they send takes per_cpu_ptr(NULL, target): the target\'s own call_single_queue head. llist_add links that head into itself, dropping the csds other CPUs had queued there, and the reversal relinks csds that were already taken; kernel/smp.c\'s csd_unlock warns, and a CPU waits forever for an ack that will not come.',
    path: 'src/processor/cpu.ts CPUHP_STEPS: smpcfd:prepare is skipped on secondary CPUs (cfd_data.csd stays NULL); the IPI code of src/processor/tlb.ts is the same on every kernel',
    symptom: 'csd_unlock warnings (a csd unlocked twice), then a CPU waiting forever for its IPI ack (soft lockup)',
    detector: "the soft-lockup watchdog (exit 3, the stuck CPU waiting for csd) and csd_unlock's WARN_ON",
    signature: {
      kind: 'soft-lockup',
      facts: ['wait=csd'],
      describe: 'a CPU stuck waiting for the ack of a call-function IPI (csd_lock_wait)',
    },
    // three threads on three CPUs: a shootdown has two targets, so it goes through cfd_data (one
    // target takes smp_call_function_single's on-stack csd, which cfd_data does not touch)
    repro: ['mremap-stress', '--cpus', '3', '--iterations', '300', '--watchdog', '3'],
  },
  {
    name: 'shared-no-colour',
    story:
      "LegoOS M places every mapping with x86's arch_get_unmapped_area (managers/memory/vm/mmap.c: info.align_mask = 0, a MAP_FIXED address returned unchecked), which x86 can afford because its caches are physically indexed. The pcache is virtually indexed: two addresses of one shared page that index different sets are two lines, and a write through one is not seen through the other. sparc64 Linux, whose D-cache is virtually indexed, colours shared mappings in arch_get_unmapped_area (arch/sparc/kernel/sys_sparc_64.c, COLOR_ALIGN to SHMLBA) and refuses a MAP_FIXED shared address of the wrong colour with -EINVAL.",
    path: "src/memory/vm/vma.ts getUnmappedArea: a MAP_SHARED mapping is placed as x86 places it, without colouredUnmappedArea (M's shmColour 0, src/memory/server.ts); P's alias scan (src/processor/pcache/fault.ts shmFindAlias) is the same, and finds nothing in the other set",
    symptom:
      'a second view of a shared page (mremap(old, 0, new_len) of a shared mapping, or a MAP_FIXED one) indexes another pcache set: a write through one view reads as zeros or an older version through the other',
    detector:
      'data oracle (fork-stress names the alias it read through); shm-alias check (--check): a shared page cached in two lines',
    signature: {
      kind: 'oracle',
      facts: ['view=alias'],
      describe: 'a shared page written through one address holds something else when read through its alias',
    },
    repro: ['fork-stress', '--iterations', '3'],
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
  {
    name: 'fixed',
    bugs: [],
    rmapReportFormat: 'head',
    why: "splitkern's kernel: every path in its fixed form; mremap moves with the fast path and the two-phase slowpath (free after the flush)",
  },
  {
    name: 'legoos-head',
    bugs: ['mremap-unserialized', 'mremap-dest-overwrite', 'free-before-flush', 'brk-shrink-no-zap'],
    rmapReportFormat: 'head',
    why: 'LegoOS HEAD (1f4da865, 2020-09): the fast/slow mremap paths of ff47ee16 (2018-02-07) with the slowpath freeing the old line before the flush (§7.4 hazard 1), no P-side mm lock (§7.1), no destination check in move_ptes (hazard 4), no PTE release on brk shrink (§7.5)',
  },
  {
    name: 'legoos-2018-02-03',
    bugs: ['mremap-pte-before-rmap', 'mremap-unserialized', 'brk-shrink-no-zap'],
    rmapReportFormat: '2018-02',
    why: 'after 571f75e0 (2018-02-02, move_ptes hooked to pcache_move_pte: the PTE moved first, then the rmap, one path whatever the sets) and 933163e8 (02-03, lock order), before the fast/slow split of ff47ee16 (02-07); no P-side mm lock and no brk zap in any version',
  },
  {
    name: 'legoos-2018-02-01',
    bugs: ['mremap-no-pcache-move', 'mremap-unserialized', 'brk-shrink-no-zap'],
    rmapReportFormat: '2018-02',
    why: 'c9a9651a (2018-02-01) adds the "mismatched PTE and rmap" check, but move_ptes does not touch the pcache until 571f75e0 (02-02): the line stays in its old set and its rmap keeps the old slot',
  },
];

export { closest } from '../lib/text.ts';
