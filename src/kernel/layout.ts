// The one layout module: every SharedArrayBuffer region and every offset into it is defined here.
// Nothing else computes raw indices into shared memory. Each group of words says who writes it and
// under which lock (xv6 style). All read-modify-writes of shared words use Atomics.
//
// Regions (one SharedArrayBuffer each, so a typed view never straddles two meanings):
//   ctl      global + per-context words (boot, shutdown, per-CPU state, IPI pending/doorbells)
//   pcdata   pcache line data, nrLines x 4 KiB                       (P)
//   pcmeta   per-line metadata (struct pcache_meta)                   (P)
//   pcset    per-set metadata (struct pcache_set) + eviction lists    (P)
//   rmap     rmap pool (struct pcache_rmap)                           (P)
//   pgtable  page-table pages pool + per-table-page PTE locks         (P)
//   mm       per-process P-side mm state (mmap_sem, cpumask, pgd)     (P)
//   tlb      per-CPU TLBs                                             (P)
//   percpu   per-CPU areas: call_single_queue, cfd_data, alloc_percpu chunk; on-stack csds (P)
//   csdInfo  per sending context: the flush_tlb_info its csds point at   (P)
//   victim   victim cache entries + data                              (P)
//   fabric   per-context mailboxes (request + reply)                  (fabric)
//   printk   kernel log ring                                           (all)
//   reports  violation counters + the violation record ring            (all -> host)
//   threads  user thread table                                        (P/host)
//   stats    per-context counters, written only by their owner       (all)
import { kMaxCpus, type MachineConfig } from './config.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';

// ---------------------------------------------------------------------------------------------
// Declarations. Every record-shaped region declares its words once, here: index (and count, for
// a word array), and the guard: who writes it, and under which lock or with which Atomics. The
// k-constants are derived from the declarations; test/layout.test.ts walks them (no overlaps,
// every word inside its stride, every word's guard written, the accessors' strides match).

/** One word (or `count` consecutive words) of a record. */
export interface WordDecl {
  readonly at: number;
  readonly count?: number;
  /** who writes it and under which lock (or which Atomics discipline) */
  readonly guard: string;
}
/** A record-shaped region: `stride` words per record. */
export interface RegionDecl {
  readonly name: string;
  readonly stride: number;
  readonly words: Readonly<Record<string, WordDecl>>;
}
const declared: RegionDecl[] = [];
/** Every region declared below, in declaration order (what test/layout.test.ts checks). */
export const DECLARED_REGIONS: readonly RegionDecl[] = declared;
function region<const W extends Readonly<Record<string, WordDecl>>>(
  name: string,
  stride: number,
  words: W,
): RegionDecl & { readonly words: W } {
  const r = { name, stride, words };
  declared.push(r);
  return r;
}
/** The word indices of a region, by name: what the k-constants are. */
function indices<const W extends Readonly<Record<string, WordDecl>>>(r: {
  readonly words: W;
}): {
  readonly [K in keyof W]: W[K]['at'];
} {
  const out: Record<string, number> = {};
  for (const [k, w] of Object.entries(r.words)) out[k] = w.at;
  return out as { readonly [K in keyof W]: W[K]['at'] };
}

// ---------------------------------------------------------------------------------------------
// Contexts: every thread of execution that sends fabric messages or owns a stats row.
// CPUs are 0..cpus-1, then the kernel threads of P, then M, S and the host.
export const kKthreadSweep = 0; // kevict_sweepd
export const kNrKthreads = 1;
export interface Contexts {
  cpus: number;
  sweep: number;
  memory: number;
  storage: number;
  host: number;
  total: number;
}
export function contextsFor(cpus: number): Contexts {
  return {
    cpus,
    sweep: cpus + kKthreadSweep,
    memory: cpus + kNrKthreads,
    storage: cpus + kNrKthreads + 1,
    host: cpus + kNrKthreads + 2,
    total: cpus + kNrKthreads + 3,
  };
}

// ---------------------------------------------------------------------------------------------
// ctl: global words (Int32). Written with Atomics by whoever the guard names.
export const kNrBarriers = 16;
export const CTL = region('ctl', 53, {
  kCtlCpuBootCounter: { at: 0, guard: 'CPU workers claim their id with Atomics.add (cpuhp)' },
  kCtlCpusOnline: { at: 1, guard: 'bitmask of online CPUs: each CPU Atomics.or-s its bit at the end of bring-up' },
  kCtlShutdown: { at: 2, guard: 'host only (Atomics.store): 1 stops M, S and the kthreads, 2 aborts waits' },
  kCtlNextTid: {
    at: 3,
    guard:
      "alloc_pid's cyclic cursor (Atomics.add); a tid is claimed by CAS of its kThreadState; a pid is its leader's tid",
  },
  kCtlRmapFreeLock: { at: 5, guard: "the rmap free list's spinlock (a leaf lock)" },
  kCtlRmapFreeHead: { at: 6, guard: 'rmap free list head: under kCtlRmapFreeLock' },
  kCtlPgtableNext: {
    at: 7,
    guard: 'bump allocator of page-table pages never used yet (Atomics.add); freed pages go to kCtlPgtableFreeHead',
  },
  kCtlVictimLock: { at: 8, guard: "the victim cache's spinlock (usable_victims_lock, a leaf lock)" },
  kCtlVictimGen: { at: 9, guard: 'address-space generation: Atomics.add under kCtlVictimLock by every unmap/move' },
  kCtlVictimClock: { at: 10, guard: 'FIFO replacement hand: under kCtlVictimLock' },
  kCtlHostDoorbell: { at: 11, guard: 'Atomics.add + notify by anyone that needs the host (spawn, panic)' },
  kCtlSpawnHead: { at: 12, guard: 'spawn ring producer index (Atomics.add by CPUs)' },
  kCtlSpawnTail: { at: 13, guard: 'spawn ring consumer index: host only' },
  kCtlPanic: { at: 14, guard: 'the first internal failure sets 1 (Atomics.store)' },
  kCtlStopMachine: { at: 15, guard: 'stop_machine owner + 1 (CAS from 0), 0 when none' },
  kCtlBarrierBase: {
    at: 16,
    count: 2 * kNrBarriers,
    guard: 'user barriers {count, generation}: Atomics by their threads',
  },
  kCtlLiveThreads: { at: 48, guard: 'user threads created and not yet exited (Atomics.add/sub)' },
  kCtlCpusBusy: {
    at: 49,
    guard: 'bitmask of CPUs running a task: the task that owns a CPU Atomics.or/and-s its bit (sched.ts)',
  },
  kCtlIbLock: {
    at: 50,
    guard: '--ib-serialize: one spinlock around every ibapi_send_reply (CONFIG_FIT_SEQUENTIAL_IBAPI)',
  },
  kCtlPgtableFreeLock: { at: 51, guard: "the free page-table pages' spinlock (a leaf lock)" },
  kCtlPgtableFreeHead: {
    at: 52,
    guard: 'kCtlPgtableFreeLock: the first free table page + 1 (0 = none); each links the next in its word 0',
  },
});
export const {
  kCtlCpuBootCounter,
  kCtlCpusOnline,
  kCtlShutdown,
  kCtlNextTid,
  kCtlRmapFreeLock,
  kCtlRmapFreeHead,
  kCtlPgtableNext,
  kCtlVictimLock,
  kCtlVictimGen,
  kCtlVictimClock,
  kCtlHostDoorbell,
  kCtlSpawnHead,
  kCtlSpawnTail,
  kCtlPanic,
  kCtlStopMachine,
  kCtlBarrierBase,
  kCtlLiveThreads,
  kCtlCpusBusy,
  kCtlIbLock,
  kCtlPgtableFreeLock,
  kCtlPgtableFreeHead,
} = indices(CTL);
export const kCtlGlobalWords = CTL.stride;
/** A user barrier (the barrier syscall), kNrBarriers of them laid over kCtlBarrierBase: sh.barrier. */
export const BARRIER = region('user barrier', 2, {
  kBarrierCount: { at: 0, guard: 'threads arrived in this generation: Atomics.add by each; the last one stores 0' },
  kBarrierGen: { at: 1, guard: 'generation: Atomics.add + notify by the last arrival; waiters sleep on it' },
});
export const { kBarrierCount, kBarrierGen } = indices(BARRIER);
export const kSpawnRing = 64; // spawn ring entries: {tid} (args in the thread table)

// Per-context words, one 64-byte line (16 words) each, after the global words and the spawn ring.
// A context's own words are written by it alone ("owner"), read by the watchdog and checkers.
export const CPU = region('per-cpu', 24, {
  kCpuDoorbell: { at: 0, guard: 'Atomics.add + notify by anyone with an event for this context (a reply, an IPI)' },
  kCpuState: { at: 2, guard: 'owner (Atomics.store): kCpuStateIdle/User/Kernel' },
  kCpuPid: { at: 3, guard: 'owner (Atomics.store): pid of the running user thread, 0 when idle' },
  kCpuTid: { at: 4, guard: 'owner (Atomics.store): tid of the running user thread' },
  kCpuLockWait: { at: 5, guard: 'owner (Atomics.store): id + 1 of the lock it is blocked on, 0 if none' },
  kCpuLockKind: { at: 6, guard: 'owner (Atomics.store): LOCK_KIND of kCpuLockWait' },
  kCpuKernelEnterMs: { at: 7, guard: 'owner (Atomics.store): ms since boot it entered the kernel, -1 if not' },
  kCpuParked: { at: 8, guard: 'owner (Atomics.store + notify): 1 while parked at a stop_machine safe point' },
  kCpuLockLastTaken: {
    at: 11,
    guard: 'owner (Atomics.store): id + 1 of the last lock taken; never cleared (watchdog)',
  },
  kCpuLockLastTakenKind: { at: 12, guard: 'owner (Atomics.store): LOCK_KIND of kCpuLockLastTaken' },
  // the scheduler (processor/sched.ts): "owner" is whoever runs on the CPU, its task or its idle context
  kCpuCurr: {
    at: 13,
    guard: 'the owner hands it over (Atomics.store + notify): tid of the task that owns the CPU, 0 = its idle context',
  },
  kCpuRqLock: { at: 14, guard: 'rq->lock itself (a leaf spinlock)' },
  kCpuRqHead: { at: 15, guard: 'rq->lock: first runnable tid, 0 if none (the chain runs through kThreadRqNext)' },
  kCpuRqTail: { at: 16, guard: 'rq->lock: last runnable tid' },
  kCpuRqLen: { at: 17, guard: 'rq->lock (Atomics.store; read lockless by wake-up placement): rq->nr_running' },
  kCpuActiveMm: {
    at: 18,
    guard:
      'owner (Atomics.store): cpu_tlbstate.active_mm, mm slot + 1 whose translations the TLB may hold, 0 = init_mm',
  },
  kCpuActivePid: { at: 19, guard: 'owner (Atomics.store, with kCpuActiveMm): the pid of that mm' },
  kCpuTlbState: { at: 20, guard: 'owner (Atomics.store): TLBSTATE_OK (1) or TLBSTATE_LAZY (2)' },
});
export const {
  kCpuDoorbell,
  kCpuState,
  kCpuPid,
  kCpuTid,
  kCpuLockWait,
  kCpuLockKind,
  kCpuKernelEnterMs,
  kCpuParked,
  kCpuLockLastTaken,
  kCpuLockLastTakenKind,
  kCpuCurr,
  kCpuRqLock,
  kCpuRqHead,
  kCpuRqTail,
  kCpuRqLen,
  kCpuActiveMm,
  kCpuActivePid,
  kCpuTlbState,
} = indices(CPU);
export const TLBSTATE_OK = 1;
export const TLBSTATE_LAZY = 2;
export const kPerCpuStride = CPU.stride;
export const kCpuStateIdle = 0;
export const kCpuStateUser = 1;
export const kCpuStateKernel = 2;

// ---------------------------------------------------------------------------------------------
// pcache metadata (struct pcache_meta), Int32 x kMetaStride per line. Line i: set i % nrSets,
// way i / nrSets. Writers: flags by Atomics bit ops; ref/mapcount by Atomics; rmapHead and LRU links
// under the line lock (rmap) / the set lock (LRU, free list).
export const META = region('pcmeta', 8, {
  kMetaFlags: { at: 0, guard: 'Atomics bit ops; bit PC_locked is the line lock (lock_pcache)' },
  kMetaRef: { at: 1, guard: 'Atomics (get_pcache / put_pcache, get_pcache_unless_zero by CAS)' },
  kMetaMapcount: { at: 2, guard: 'Atomics, changed under the line lock with the rmap list' },
  kMetaRmapHead: { at: 3, guard: 'line lock: first rmap index + 1, 0 = none' },
  kMetaPrev: { at: 4, guard: 'set lock: LRU / free-list link, line index + 1, 0 = none' },
  kMetaNext: { at: 5, guard: 'set lock: LRU / free-list link, line index + 1, 0 = none' },
  kMetaList: { at: 6, guard: 'set lock: which list the line is on (kListNone/Free/Lru)' },
  kMetaShm: {
    at: 7,
    guard:
      "set lock: the shared M page this line caches (M's shm tag), 0 = private; set by the fill before any PTE maps the line, cleared by __put_pcache, so stable while a PTE maps it",
  },
});
export const { kMetaFlags, kMetaRef, kMetaMapcount, kMetaRmapHead, kMetaPrev, kMetaNext, kMetaList, kMetaShm } =
  indices(META);
export const kMetaStride = META.stride;
export const kListNone = 0;
export const kListFree = 1;
export const kListLru = 2;

// enum pcache_meta_bits (include/processor/pcache_types.h)
export const PC_locked = 1 << 0;
export const PC_valid = 1 << 1;
export const PC_dirty = 1 << 2;
export const PC_reclaim = 1 << 3;
export const PC_writeback = 1 << 4;
export const PC_FLAG_NAMES: Array<[number, string]> = [
  [PC_locked, 'locked'],
  [PC_valid, 'valid'],
  [PC_dirty, 'dirty'],
  [PC_reclaim, 'reclaim'],
  [PC_writeback, 'writeback'],
];
/** PCACHE_FLAGS_CHECK_AT_FREE */
export const PCACHE_FLAGS_CHECK_AT_FREE = PC_locked | PC_valid | PC_dirty | PC_reclaim | PC_writeback;

// pcache set (struct pcache_set), then the set's eviction list (perset.c): kEvictEntries entries,
// a pid word here (0 = free) and a Float64 address in setEvictAddr.
export const kEvictEntries = 8;
export const SET = region('pcset', 16 + kEvictEntries, {
  kSetLock: { at: 0, guard: 'the set lock itself (lru_lock, a spinlock)' },
  kSetFreeHead: { at: 1, guard: 'set lock: free list head, line + 1' },
  kSetLruHead: { at: 2, guard: 'set lock: LRU head (newest), line + 1' },
  kSetLruTail: { at: 3, guard: 'set lock: LRU tail (oldest), line + 1' },
  kSetNrLru: { at: 4, guard: 'set lock (Atomics.add, so the checker reads a whole value)' },
  kSetNrFree: { at: 5, guard: 'set lock (Atomics.add, so the checker reads a whole value)' },
  kSetShmGen: {
    at: 6,
    guard:
      'set lock (Atomics.add + notify): bumped when a line caching a shared page leaves the set (its data in M); read by the fill before P2M_PCACHE_MISS',
  },
  kSetNrEviction: { at: 7, guard: 'set lock (Atomics.add + notify); read lockless by pset_find_eviction' },
  kSetNrVictims: { at: 12, guard: 'victim lock (kCtlVictimLock): victims tagged with this set' },
  kSetEvictPidBase: {
    at: 16,
    count: kEvictEntries,
    guard: "eviction entries' pids: Atomics, written under the set lock",
  },
});
export const {
  kSetLock,
  kSetFreeHead,
  kSetLruHead,
  kSetLruTail,
  kSetNrLru,
  kSetNrFree,
  kSetShmGen,
  kSetNrEviction,
  kSetNrVictims,
  kSetEvictPidBase,
} = indices(SET);
/** the pid word of eviction entry e */
export const kSetEvictPid = (e: number): number => kSetEvictPidBase + e;

// rmap (struct pcache_rmap), Int32 records + a Float64 address (rmapAddr). Fields under the line lock.
export const RMAP = region('rmap', 8, {
  kRmapFlags: { at: 0, guard: 'line lock: PCACHE_RMAP_*' },
  kRmapOwner: { at: 1, guard: 'line lock: owner pid (thread-group leader)' },
  kRmapPageTable: { at: 2, guard: 'line lock: the PTE slot (the "ptep")' },
  kRmapNext: { at: 3, guard: "line lock on a line's list; kCtlRmapFreeLock on the free list: next rmap + 1" },
  kRmapCaller: { at: 4, guard: 'line lock: enum rmap_caller' },
});
export const { kRmapFlags, kRmapOwner, kRmapPageTable, kRmapNext, kRmapCaller } = indices(RMAP);
export const PCACHE_RMAP_used = 1;
export const PCACHE_RMAP_reserved = 2;
export const RMAP_CALLER_NAMES = [
  'fill_page_remote',
  'zerofill',
  'victim_fill',
  'cow',
  'fork',
  'mremap_slowpath',
  'mremap_fastpath',
];
export const RMAP_FILL_PAGE_REMOTE = 0;
export const RMAP_VICTIM_FILL = 2;
export const RMAP_COW = 3;
export const RMAP_FORK = 4;
export const RMAP_MREMAP_SLOWPATH = 5;

// ---------------------------------------------------------------------------------------------
// Page tables: a pool of 512-entry table pages (Int32 entries). Entry formats:
//   upper levels: (tablePage << 12) | _PAGE_PRESENT        (tablePage < 2^19)
//   PTE:          (line << 12) | flags                      (line < 2^19), see _PAGE_* below
// The "ptep" of slot s is logged as the kernel pointer kPtepBase + s*8.
// Writers: PTEs under the PTE-page lock (ptl[tablePage]); upper-level entries under mm->page_table_lock.
export const kPtrsPerTable = 512;
export const _PAGE_PRESENT = 1 << 0;
export const _PAGE_RW = 1 << 1;
export const _PAGE_USER = 1 << 2;
export const _PAGE_ACCESSED = 1 << 5;
export const _PAGE_DIRTY = 1 << 6;
export const _PAGE_PROTNONE = 1 << 8; // Linux reuses _PAGE_GLOBAL for PROT_NONE mappings
/**
 * Software bit (_PAGE_SOFTW1's slot): write-protected for copy-on-write, the mapping itself allows
 * writes. P has no VMAs (as in LegoOS), and splitkern's P honours mprotect, so a write fault on a
 * read-only PTE must learn from the PTE whether it is a COW break (pcache_do_wp_page) or SIGSEGV.
 */
export const _PAGE_COW = 1 << 9;
export const kPteFlagsMask = 0xfff;
export const PTE_FLAG_NAMES: Array<[number, string]> = [
  [_PAGE_PRESENT, 'present'],
  [_PAGE_RW, 'writable'],
  [_PAGE_USER, 'user'],
  [_PAGE_ACCESSED, 'accessed'],
  [_PAGE_DIRTY, 'dirty'],
  [_PAGE_PROTNONE, 'protnone'],
  [_PAGE_COW, 'cow'],
];
/** Physical frame numbers as LegoOS prints them: the pcache lives at memmap=...$4G. */
export const kPcachePhysStart = 0x100000000;
export const kPcachePfnBase = kPcachePhysStart / PAGE_SIZE;
export const kPtepBase = 0xffff880080000000;

// ---------------------------------------------------------------------------------------------
// mm (P side), Int32 records per process slot, and Float64 words (MM_F) for addresses.
export const kMaxProcs = 16;
export const MM = region('mm', 16, {
  kMmPid: { at: 0, guard: 'the slot claim: CAS from 0 by the CPU creating the process; 0 = free slot' },
  kMmPgd: { at: 1, guard: 'written once at mm_alloc (execve, fork), before the slot is used; read-only after' },
  kMmSem: { at: 2, guard: 'the P-side mmap_sem itself (rw-semaphore: bit 30 writer, bit 29 waiting, readers)' },
  kMmCpumask: { at: 3, guard: 'mm_cpumask: Atomics.or / and by the CPU switching in or out' },
  kMmPageTableLock: { at: 4, guard: 'mm->page_table_lock itself (upper-level page-table population)' },
  kMmUsers: { at: 5, guard: 'live threads (Atomics.add/sub)' },
  kMmKilled: { at: 6, guard: 'fatal signal pending: CAS from 0 by the first thread to die' },
  kMmSemOwner: { at: 7, guard: 'mmap_sem writer: cpu + 1 holding it for write (diagnostics)' },
  kMmShootdowns: {
    at: 8,
    guard: 'TLB shootdowns in flight on this mm (Atomics; the exit of the mm waits them out, task.ts teardown)',
  },
  kMmSiCode: { at: 9, guard: 'the kMmKilled CAS winner: si_code of the fatal signal (1 MAPERR, 2 ACCERR, 0 other)' },
  kMmPendingFlush: { at: 10, guard: 'PTE changes whose TLB flush has not completed yet (Atomics; stale-TLB detector)' },
  kMmAsChanges: {
    at: 11,
    guard:
      'address-space changes in progress on P, with or without mmap_sem (Atomics; > 1 only when one ran unserialised)',
  },
  kMmSleepers: {
    at: 12,
    guard:
      'threads in a sleep only another thread can end (FUTEX_WAIT with no timeout, join, barrier): Atomics; a futex waiter is counted under the hash-bucket lock that queues or unqueues it (processor/hang.ts)',
  },
});
export const {
  kMmPid,
  kMmPgd,
  kMmSem,
  kMmCpumask,
  kMmPageTableLock,
  kMmUsers,
  kMmKilled,
  kMmSemOwner,
  kMmShootdowns,
  kMmSiCode,
  kMmPendingFlush,
  kMmAsChanges,
  kMmSleepers,
} = indices(MM);
/** kMmSiCode of a process killed because it hung (every live thread asleep, nothing left to wake one) */
export const MM_SI_HUNG = 3;
export const MM_F = region('mm floats', 4, {
  kMmMovingStart: {
    at: 0,
    guard: 'mmap_sem writer (mremap on P): the old range being moved, -1 when none; read lockless by evictors',
  },
  kMmMovingEnd: { at: 1, guard: 'mmap_sem writer (mremap on P): end of the range being moved' },
  kMmFaultAddr: { at: 2, guard: 'the kMmKilled CAS winner: the first fatal fault address' },
});
export const { kMmMovingStart, kMmMovingEnd, kMmFaultAddr } = indices(MM_F);
export const RWSEM_WRITER = 1 << 30;
export const RWSEM_WRITER_WAITING = 1 << 29;
export const RWSEM_READER_MASK = (1 << 29) - 1;

// ---------------------------------------------------------------------------------------------
// TLB: per CPU, kTlbEntries direct-mapped entries. Float64 vpn tag (-1 invalid) + Int32 value:
// (line << 12) | pte flags at fill time. Only the owning CPU fills; others flush it only by IPI.
export const kTlbEntries = 64;

// ---------------------------------------------------------------------------------------------
// percpu: the per-CPU areas of P (kernel/smp.c's DEFINE_PER_CPU variables and the alloc_percpu chunk),
// Int32 words. A kernel pointer into this buffer is a word index; 0 is NULL. A percpu pointer is an
// offset `off` valid in every area: per_cpu_ptr(off, c) = percpuArea(c) + off. So per_cpu_ptr(NULL, c)
// is CPU c's area base, which holds its call_single_queue: a csd array that was never allocated
// aliases the target's queue head and the rest of its cacheline, as it would in Linux.
//   [0, kPercpuBase)   below every area: NULL and the chunk allocator word
//   area of CPU c      +kPcpuCallSingleQueue  struct llist_head .first (csd pointer; llist_add CAS by
//                                             senders, llist_del_all exchange by CPU c)
//                      +kPcpuCfdCsd           cfd_data.csd: percpu offset of CPU c's csd array, 0 until
//                                             smpcfd_prepare_cpu(c) allocates it (written once at bring-up)
//                      +kPcpuChunk            the dynamic chunk: alloc_percpu(call_single_data_t) carves
//                                             kCsdWords per call (one per CPU's cfd)
//   after the areas    one on-stack csd per context (smp_call_function_single's csd_stack)
// A csd (struct __call_single_data) is kCsdWords words; llist and flags are Atomics words: flags is
// the csd lock (the sender sets CSD_FLAG_LOCK with a CAS, the target's csd_unlock clears it), func
// and info are written by the lock holder before llist_add publishes the csd.
export const kPercpuBase = 16;
export const kPcpuChunkNext = 1; // next free offset of the dynamic chunk (Atomics.add)
/** a CPU's area (its DEFINE_PER_CPU variables and its part of the alloc_percpu chunk) */
export const kCsdWords = 4;
export const PCPU = region('percpu area', 32 + kCsdWords * kMaxCpus, {
  kPcpuCallSingleQueue: {
    at: 0,
    guard: 'call_single_queue (llist_head.first): llist_add CAS by senders, llist_del_all exchange by the CPU',
  },
  kPcpuCfdCsd: {
    at: 16,
    guard: "cfd_data.csd: percpu offset of the CPU's csd array, 0 until smpcfd_prepare_cpu (once)",
  },
  kPcpuChunk: {
    at: 32,
    count: kCsdWords * kMaxCpus,
    guard: 'the dynamic chunk: csds carved by alloc_percpu (kPcpuChunkNext); each csd as CSD below',
  },
});
export const { kPcpuCallSingleQueue, kPcpuCfdCsd, kPcpuChunk } = indices(PCPU);
export const kPercpuAreaWords = PCPU.stride;
/** struct __call_single_data */
export const CSD = region('csd', kCsdWords, {
  kCsdLlist: {
    at: 0,
    guard: "llist_node.next (csd pointer, 0 = end): Atomics; the sender before llist_add, the target's walk after",
  },
  kCsdFunc: {
    at: 1,
    guard: 'the csd lock holder (sender), before llist_add publishes it: kIpiFlushTlb, kIpiFlushTlbAll',
  },
  kCsdInfo: { at: 2, guard: 'the csd lock holder: sending context + 1 (its flush_tlb_info in csdInfo), 0 = NULL' },
  kCsdFlags: {
    at: 3,
    guard: "the csd lock: CSD_FLAG_LOCK set by the sender's CAS, cleared by the target's csd_unlock",
  },
});
export const { kCsdLlist, kCsdFunc, kCsdInfo, kCsdFlags } = indices(CSD);
export const kCsdStackStride = 16; // one cacheline per context's on-stack csd
// csdInfo: per sending context, struct flush_tlb_info {mm (pid), start, end} (Float64).
export const CSD_INFO = region('csd info', 4, {
  kCsdInfoPid: { at: 0, guard: 'its context, before it publishes a csd; read by targets until they csd_unlock' },
  kCsdInfoStart: { at: 1, guard: 'its context, before it publishes a csd; read by targets until they csd_unlock' },
  kCsdInfoEnd: { at: 2, guard: 'its context, before it publishes a csd; read by targets until they csd_unlock' },
});
export const { kCsdInfoPid, kCsdInfoStart, kCsdInfoEnd } = indices(CSD_INFO);
export const CSD_FLAG_LOCK = 0x01;
export const CSD_FLAG_SYNCHRONOUS = 0x02;
export const kIpiFlushTlb = 1;
export const kIpiFlushTlbAll = 2;

// ---------------------------------------------------------------------------------------------
// victim cache entries: Int32 records + a Float64 address (victimAddr) + 4 KiB data, all under the victim
// lock (kCtlVictimLock).
export const VICTIM = region('victim', 4, {
  kVictimPid: { at: 0, guard: 'victim lock: owner pid, 0 = free' },
  kVictimSet: { at: 1, guard: 'victim lock: the pcache set it was evicted from' },
  kVictimGen: { at: 2, guard: 'victim lock: address-space generation at insertion' },
  kVictimRw: { at: 3, guard: 'victim lock: 1 if the evicted PTE was writable' },
});
export const { kVictimPid, kVictimSet, kVictimGen, kVictimRw } = indices(VICTIM);

// ---------------------------------------------------------------------------------------------
// Thread table: an Int32 record per tid (tid 1 .. kMaxThreads-1); the entry argument is threadArgs[tid].
export const kMaxThreads = 256;
/** live user threads at once (threads-max): each is a task with its own worker; clone fails with EAGAIN past it */
export const kMaxTasks = 64;
export const THREAD = region('threads', 19, {
  kThreadState: {
    at: 0,
    guard:
      'CAS FREE -> CREATED by alloc_pid (processor/pid.ts); then Atomics.store + notify: RUNNING, EXITED (its CPU), FREE again by release_task',
  },
  kThreadPid: { at: 1, guard: 'clone, before the spawn ring publishes the tid; read-only after' },
  kThreadExit: { at: 2, guard: 'its CPU, before kThreadState becomes THREAD_EXITED: the exit value' },
  kThreadCpu: {
    at: 3,
    guard:
      "clone (the parent's CPU), then the task each time it gets a CPU: the CPU it last ran on (wake-up placement)",
  },
  kThreadEntry: { at: 5, guard: 'clone, before the spawn ring publishes the tid: index of its thread entry name' },
  kThreadSignal: { at: 6, guard: 'its CPU, before kThreadState becomes THREAD_EXITED: the fatal signal, 0 if none' },
  // the thread's futex_q while it sleeps in FUTEX_WAIT (processor/futex.ts)
  kThreadFutexNext: { at: 4, guard: "its futex hash bucket's lock: the next queued tid, 0 at the tail" },
  kThreadFutexMm: {
    at: 7,
    guard: "its futex hash bucket's lock (Atomics.store): key mm slot + 1 while queued, 0 once unqueued",
  },
  kThreadFutexTimed: { at: 8, guard: "its futex hash bucket's lock: 1 if the wait has a timeout" },
  // what the thread sleeps in, for the hang check (processor/hang.ts)
  kThreadSleep: {
    at: 9,
    guard: 'the thread itself (Atomics.store): SLEEP_NONE, SLEEP_FUTEX, SLEEP_JOIN or SLEEP_BARRIER',
  },
  kThreadSleepArg: { at: 10, guard: 'the thread itself, before kThreadSleep: the joined tid, or the barrier slot' },
  kThreadSleepGen: { at: 11, guard: 'the thread itself, before kThreadSleep: the barrier generation it waits to end' },
  // the scheduler (processor/sched.ts)
  kThreadRqNext: { at: 12, guard: 'the lock of the runqueue it is queued on: the next runnable tid, 0 at the tail' },
  kThreadOnCpu: {
    at: 13,
    guard:
      'CPU handover (Atomics.store + notify by the CPU owner that picks it; cleared by the task): CPU + 1, 0 off-CPU',
  },
  kThreadAffinity: {
    at: 14,
    guard: "clone (the parent's), then sched_setaffinity (Atomics.store): cpus_allowed as a CPU bitmask, 0 = all",
  },
  // processes (a leader's row: tid == pid)
  kThreadParent: {
    at: 15,
    guard:
      'fork, before the spawn ring publishes the tid: the parent pid (0: started by the host); Atomics.store of kParentInit by the exiting parent (reparent)',
  },
  kThreadChldGen: {
    at: 16,
    guard: "SIGCHLD: Atomics.add + notify by each exiting child of this leader; the leader's wait4 sleeps on it",
  },
  kThreadUsage: {
    at: 17,
    guard:
      'task_struct usage (Atomics.and): kUsageTask until the task has left its CPU, kUsageReap until reaped; the last clear frees the row',
  },
  kThreadExec: {
    at: 18,
    guard:
      "execve handshake (leader's row): Atomics.store of -n by the exec'ing leader before it tells the host of image n; the host stores n and notifies once it will start the process's new threads with the new program",
  },
});
/** kThreadUsage bits: the task itself (dropped after its last switch away) and whoever reaps it */
export const kUsageTask = 1;
export const kUsageReap = 2;
export const {
  kThreadState,
  kThreadPid,
  kThreadExit,
  kThreadCpu,
  kThreadEntry,
  kThreadSignal,
  kThreadFutexNext,
  kThreadFutexMm,
  kThreadFutexTimed,
  kThreadSleep,
  kThreadSleepArg,
  kThreadSleepGen,
  kThreadRqNext,
  kThreadOnCpu,
  kThreadAffinity,
  kThreadParent,
  kThreadChldGen,
  kThreadUsage,
  kThreadExec,
} = indices(THREAD);
/** kThreadParent of an orphan: reparented to init, which reaps it at its exit */
export const kParentInit = -1;
/** A thread's Float64 words (addresses): threadF, record = tid. */
export const THREAD_F = region('thread floats', 2, {
  kThreadFFutexAddr: { at: 0, guard: "its futex hash bucket's lock: the uaddr it sleeps on while queued" },
  kThreadFClearTid: {
    at: 1,
    guard: 'clone, before the spawn ring publishes the tid: CLONE_CHILD_CLEARTID address, 0 if none',
  },
});
export const { kThreadFFutexAddr, kThreadFClearTid } = indices(THREAD_F);

// ---------------------------------------------------------------------------------------------
// futex hash buckets (struct futex_hash_bucket): kFutexHashSize records.
export const kFutexHashSize = 256;
export const FUTEX_HB = region('futex hash bucket', 2, {
  kFhbLock: { at: 0, guard: 'hb->lock itself (a leaf spinlock)' },
  kFhbHead: { at: 1, guard: 'hb->lock: the first queued tid, 0 when empty (the chain runs through kThreadFutexNext)' },
});
export const { kFhbLock, kFhbHead } = indices(FUTEX_HB);
/** a free row (alloc_pid claims it by CAS to THREAD_CREATED); a reaped leader's row goes back to it */
export const THREAD_FREE = 0;
export const THREAD_CREATED = 1;
export const THREAD_RUNNING = 2;
export const THREAD_EXITED = 3;
/** a reaped leader (EXIT_DEAD: its parent's wait4 took its status), until its usage frees the row */
export const THREAD_DEAD = 4;

// ---------------------------------------------------------------------------------------------
// printk ring: kPrintkSlots slots of kPrintkSlotBytes; slot header Int32 {seq+1, len}, then UTF-8.
export const kPrintkSlots = 8192;
export const kPrintkSlotBytes = 512;
export const PRINTK_HDR = region('printk header', 16, {
  kPrintkHead: { at: 0, guard: 'next sequence number: Atomics.add by writers' },
  kPrintkTail: { at: 1, guard: 'next sequence the host reads: host only (Atomics.store)' },
  kPrintkDropped: {
    at: 2,
    guard: 'messages overwritten before the host read them: Atomics.add by writers, Atomics.exchange by the host',
  },
});
export const { kPrintkHead, kPrintkTail, kPrintkDropped } = indices(PRINTK_HDR);
export const kPrintkHeaderWords = PRINTK_HDR.stride;
/** A printk slot: header words, then the UTF-8 text from byte kPrintkTextOff. */
export const PRINTK_SLOT = region('printk slot', kPrintkSlotBytes / 4, {
  kPrintkSlotSeq: { at: 0, guard: "seq + 1 when committed (the writer's last Atomics.store), 0 once the host read it" },
  kPrintkSlotLen: { at: 1, guard: 'the writer, before committing: text bytes' },
  kPrintkSlotLevel: { at: 2, guard: 'the writer, before committing: the log level' },
  kPrintkSlotText: { at: 3, count: kPrintkSlotBytes / 4 - 3, guard: 'the writer, before committing: the text' },
});
export const { kPrintkSlotSeq, kPrintkSlotLen, kPrintkSlotLevel, kPrintkSlotText } = indices(PRINTK_SLOT);
export const kPrintkTextOff = kPrintkSlotText * 4;

// ---------------------------------------------------------------------------------------------
// reports: the violation channel (src/kernel/report.ts). Int32 header of kReportHeaderWords, then
// kReportSlots slots of kReportSlotBytes: slot header Int32 {index + 1 when committed, 0 free; len},
// then one UTF-8 JSON record. A writer counts the violation first (its context's counter), then
// reserves a slot only while the ring has room (CAS on kRepHead against the host's kRepTail), else
// counts the record as dropped. So the counters are the truth, and records are never overwritten.
export const kReportSlots = 1024;
export const kReportSlotBytes = 2048;
export const REP_HDR = region('reports header', 8 + kMaxCpus + 16, {
  kRepHead: { at: 0, guard: 'next record index: CAS by writers, only while the ring has room' },
  kRepTail: { at: 1, guard: 'next record index the host reads: host only (Atomics.store); writers read it' },
  kRepDropped: { at: 2, guard: 'records that found the ring full: Atomics.add by writers' },
  kRepCountBase: {
    at: 8,
    count: kMaxCpus + 16,
    guard: 'per context: violations it reported (Atomics.add by that context)',
  },
});
export const { kRepHead, kRepTail, kRepDropped, kRepCountBase } = indices(REP_HDR);
export const kReportHeaderWords = REP_HDR.stride;
export const kReportSlotHeaderBytes = 8;
/** A report slot: header words, then one UTF-8 JSON record from byte kReportSlotHeaderBytes. */
export const REPORT_SLOT = region('report slot', kReportSlotBytes / 4, {
  kRepSlotIndex: { at: 0, guard: "index + 1 when committed (the writer's last Atomics.store), 0 free (the host)" },
  kRepSlotLen: { at: 1, guard: 'the writer that reserved the slot, before committing: record bytes' },
  kRepSlotRecord: { at: 2, count: kReportSlotBytes / 4 - 2, guard: 'the writer, before committing: the record' },
});
export const { kRepSlotIndex, kRepSlotLen, kRepSlotRecord } = indices(REPORT_SLOT);

// ---------------------------------------------------------------------------------------------
// Stats: per context a row of Float64 counters, written only by that context (no atomics needed),
// read by the host at the end. Indices are in src/kernel/stats.ts.
export const kStatsPerContext = 640;

// ---------------------------------------------------------------------------------------------
// Fabric mailboxes: per requesting context one mailbox (LegoOS: one outstanding RPC per CPU).
// A mailbox's header words: the requester writes the request words and posts (kMboxState = 1 by
// Atomics.store); the receiver reads them, writes the reply words and publishes (kMboxState = 2);
// the requester reads the reply after seeing 2. The state word's Atomics order every other word.
export const MBOX_HDR = region('mailbox header', 16, {
  kMboxState: {
    at: 0,
    guard: 'Atomics.store: 0 idle (requester), 1 request posted (requester), 2 reply ready (receiver)',
  },
  kMboxOpcode: { at: 1, guard: 'requester, before posting' },
  kMboxSrc: { at: 2, guard: 'requester, before posting: its context id' },
  kMboxDst: { at: 3, guard: 'requester, before posting: kNodeMemory/kNodeStorage' },
  kMboxReqLen: { at: 4, guard: 'requester, before posting: msgpack body bytes' },
  kMboxReplyLen: { at: 5, guard: 'receiver, before publishing the reply: msgpack body bytes' },
  kMboxPageIn: { at: 6, guard: 'requester, before posting: 1 if the request carries a 4 KiB page' },
  kMboxPageOut: { at: 7, guard: 'receiver, before publishing: 1 if the reply carries a 4 KiB page' },
  kMboxStatus: { at: 8, guard: 'receiver, before publishing: reply status (0 or -errno)' },
  kMboxAux: { at: 9, guard: 'requester (request flags) before posting; receiver (reply aux) before publishing' },
  kMboxPid: { at: 10, guard: "requester, before posting: the request's pid" },
  kMboxShm: {
    at: 11,
    guard: 'receiver (P2M_PCACHE_MISS reply) or requester (P2M_PCACHE_FLUSH): the shared page tag, 0 = private page',
  },
});
export const {
  kMboxState,
  kMboxOpcode,
  kMboxSrc,
  kMboxDst,
  kMboxReqLen,
  kMboxReplyLen,
  kMboxPageIn,
  kMboxPageOut,
  kMboxStatus,
  kMboxAux,
  kMboxPid,
  kMboxShm,
} = indices(MBOX_HDR);
export const kMboxHeaderWords = MBOX_HDR.stride;
export const MBOX_F = region('mailbox floats', 4, {
  kMboxVaddr: { at: 0, guard: "requester, before posting: the hot-path request's user address" },
});
export const { kMboxVaddr } = indices(MBOX_F);
export const kMboxFloatWords = MBOX_F.stride;
export const kMboxPayloadBytes = 256 * 1024;
export const kMboxBytes = kMboxHeaderWords * 4 + kMboxFloatWords * 8 + PAGE_SIZE + kMboxPayloadBytes;
export const kMboxFloatOff = kMboxHeaderWords * 4;
export const kMboxPageOff = kMboxFloatOff + kMboxFloatWords * 8;
export const kMboxPayloadOff = kMboxPageOff + PAGE_SIZE;
// Receiver words (per receiving node): pending bitmask words + doorbell.
export const kNodeMemory = 0;
export const kNodeStorage = 1;
export const kNrNodes = 2;
export const kRecvPendingWords = 2;
export const RECV = region('recv', 16, {
  kRecvDoorbell: { at: 0, guard: 'Atomics.add + notify by a sender when the receiver sleeps' },
  kRecvSleeping: { at: 1, guard: 'the receiver (Atomics.store): 1 while it sleeps on the doorbell, so senders notify' },
  kRecvPendingBase: {
    at: 2,
    count: kRecvPendingWords,
    guard: 'bitmask of contexts with a posted request: Atomics.or by senders, exchange by the receiver',
  },
});
export const { kRecvDoorbell, kRecvSleeping, kRecvPendingBase } = indices(RECV);

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// ctlsched: the controlled scheduler (src/kernel/ctlsched.ts, --sched random|pct:D|replay). In a
// controlled mode exactly one schedulable thread ("sthread": M, S, kevict_sweepd, a CPU's idle
// context, a task) runs at a time: the one holding the turn. Everything below is written by the turn
// holder (or by the host while nobody holds it: before the first turn, after the end), so plain
// values would do; they are Atomics so that the waiters' loads are well defined.
export const ST_MEMORY = 0;
export const ST_STORAGE = 1;
export const ST_SWEEP = 2;
export const stCpu = (cpu: number): number => 3 + cpu;
export const stTask = (tid: number): number => 3 + kMaxCpus + tid;
/** the host's id in an event word (it makes the first decision, and is never chosen) */
export const ST_HOST = 511;
export const kMaxSthreads = 3 + kMaxCpus + kMaxThreads;
export const kCsLogEntries = 1 << 20;
export const kCsPctMaxChanges = 16;
export const CS = region('ctlsched', 32 + kCsPctMaxChanges, {
  kCsMode: {
    at: 0,
    guard: 'CS_FREE/GATHER/RUN: the host (Atomics.store + notify); CS_ENDED/CS_HALTED: the turn holder',
  },
  kCsTurn: { at: 1, guard: 'the turn holder (Atomics.store) as it hands the turn on: the sthread that runs, -1 none' },
  kCsStep: { at: 2, guard: 'the turn holder (Atomics.store): decisions made so far' },
  kCsParked: { at: 3, guard: 'Atomics.add by each system sthread that parks in the gather' },
  kCsNLive: { at: 4, guard: 'the turn holder, or the host before the first turn: entries of the live list' },
  kCsLiveTasks: { at: 5, guard: 'the turn holder, or the host before the first turn: admitted tasks not exited' },
  kCsRng: { at: 6, count: 4, guard: 'the turn holder: the decision PRNG state (sfc32)' },
  kCsHalt: { at: 10, guard: 'the turn holder, once, as it sets CS_HALTED: CS_HALT_* why' },
  kCsHaltArg: { at: 11, count: 4, guard: 'the turn holder, with kCsHalt: the halt details' },
  kCsLogHead: { at: 15, guard: 'the turn holder (Atomics.store): events written to the log ring' },
  kCsLogTail: { at: 16, guard: 'the host (Atomics.store + notify): events it has read from the ring' },
  kCsReplayLen: { at: 17, guard: 'the host, before the first turn: decisions in the replay schedule' },
  kCsReplayPos: { at: 18, guard: 'the turn holder: the next replay decision' },
  kCsSwitches: { at: 19, guard: 'the turn holder: decisions that moved the turn to another sthread' },
  kCsHash: { at: 20, guard: 'the turn holder: FNV-1a of the event words so far' },
  kCsJumps: { at: 21, guard: 'the turn holder: times every sthread was blocked and the clock jumped' },
  kCsPctDepth: { at: 22, guard: 'the host, before the first turn: PCT depth D (0 when not PCT)' },
  kCsPctChangeBase: {
    at: 32,
    count: kCsPctMaxChanges,
    guard: 'the host, before the first turn: the steps of the PCT priority change points, ascending',
  },
});
export const {
  kCsMode,
  kCsTurn,
  kCsStep,
  kCsParked,
  kCsNLive,
  kCsLiveTasks,
  kCsRng,
  kCsHalt,
  kCsHaltArg,
  kCsLogHead,
  kCsLogTail,
  kCsReplayLen,
  kCsReplayPos,
  kCsSwitches,
  kCsHash,
  kCsJumps,
  kCsPctDepth,
  kCsPctChangeBase,
} = indices(CS);
export const CS_FREE = 0;
export const CS_GATHER = 1;
export const CS_RUN = 2;
export const CS_ENDED = 3;
export const CS_HALTED = 4;
export const CS_HALT_DEADLOCK = 1;
export const CS_HALT_WATCHDOG = 2;
export const CS_HALT_DIVERGED = 3;
export const CS_THREAD = region('ctlsched thread', 12, {
  kStState: { at: 0, guard: 'the turn holder (its own, or admit/exit of another), or the host before the first turn' },
  kStBuf: { at: 1, guard: 'the sthread itself as it blocks: the buffer id of the word it waits on, -1 none' },
  kStIdx: { at: 2, guard: 'the sthread itself as it blocks: the Int32 index of that word in its buffer' },
  kStVal: { at: 3, guard: 'the sthread itself as it blocks: it is blocked while the word holds this value' },
  kStBuf2: { at: 4, guard: 'the sthread itself as it blocks: a CPU context also wakes on its doorbell (-1 none)' },
  kStIdx2: { at: 5, guard: 'the sthread itself as it blocks: the doorbell index' },
  kStVal2: { at: 6, guard: 'the sthread itself as it blocks: the doorbell value it saw' },
  kStPrio: { at: 7, guard: 'the turn holder (admission, PCT change points): the PCT priority' },
  kStGo: {
    at: 8,
    guard: 'the turn holder sets 1 (Atomics.store + notify) to hand this sthread the turn; it clears it',
  },
  kStPoint: { at: 9, guard: 'the sthread itself: the schedule point it last stopped at' },
});
export const { kStState, kStBuf, kStIdx, kStVal, kStBuf2, kStIdx2, kStVal2, kStPrio, kStGo, kStPoint } =
  indices(CS_THREAD);
export const ST_ABSENT = 0;
export const ST_READY = 1;
export const ST_BLOCKED = 2;
/** kCsLive's entries start after the global words; the log ring and the replay schedule are their own buffers */
export const kCsLiveBase = CS.stride;

export interface Geometry {
  nrLines: number;
  nrSets: number;
  ways: number;
  /** pcache_set_mask as a number: bits [12, 12 + log2(nrSets)) */
  setMask: number;
  nrRmaps: number;
  nrTablePages: number;
  victims: number;
  ctx: Contexts;
  /** a controlled scheduler runs: allocate its event ring */
  schedLog: boolean;
  /** decisions of the schedule being replayed (0 when not replaying) */
  replayEvents: number;
}

export function geometryFor(
  cfg: Pick<MachineConfig, 'pcacheBytes' | 'ways' | 'victim' | 'cpus'> & { sched?: MachineConfig['sched'] },
  replayEvents = 0,
): Geometry {
  const nrLines = Math.floor(cfg.pcacheBytes / PAGE_SIZE);
  const nrSets = nrLines / cfg.ways;
  return {
    nrLines,
    nrSets,
    ways: cfg.ways,
    setMask: (nrSets - 1) * PAGE_SIZE,
    nrRmaps: nrLines * 2,
    nrTablePages: 16384,
    victims: cfg.victim,
    ctx: contextsFor(cfg.cpus),
    schedLog: (cfg.sched?.mode ?? 'free') !== 'free',
    replayEvents,
  };
}

/** The buffers themselves: structured-cloned to every worker (SharedArrayBuffers are shared, not copied). */
export interface SharedBuffers {
  geo: Geometry;
  ctl: SharedArrayBuffer;
  pcdata: SharedArrayBuffer;
  pcmeta: SharedArrayBuffer;
  pcset: SharedArrayBuffer;
  pcsetEvictAddr: SharedArrayBuffer;
  rmap: SharedArrayBuffer;
  rmapAddr: SharedArrayBuffer;
  pgtable: SharedArrayBuffer;
  ptl: SharedArrayBuffer;
  mm: SharedArrayBuffer;
  mmF: SharedArrayBuffer;
  tlbVpn: SharedArrayBuffer;
  tlbVal: SharedArrayBuffer;
  percpu: SharedArrayBuffer;
  csdInfo: SharedArrayBuffer;
  victim: SharedArrayBuffer;
  victimAddr: SharedArrayBuffer;
  victimData: SharedArrayBuffer;
  fabric: SharedArrayBuffer;
  recv: SharedArrayBuffer;
  printk: SharedArrayBuffer;
  reports: SharedArrayBuffer;
  threads: SharedArrayBuffer;
  threadArgs: SharedArrayBuffer;
  threadF: SharedArrayBuffer;
  futexHb: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  /** ctlsched: global words, then the live list (sthread ids, admission order) */
  cs: SharedArrayBuffer;
  /** ctlsched: per-sthread records (kSt*) */
  csThreads: SharedArrayBuffer;
  /** ctlsched: the logical clock (µs, word 0), then each sthread's deadline (µs, Infinity none) */
  csTime: SharedArrayBuffer;
  /** ctlsched: the event ring the host drains into the recorded schedule */
  csLog: SharedArrayBuffer;
  /** ctlsched: the schedule being replayed (--sched replay), one event word per decision */
  csReplay: SharedArrayBuffer;
}

export function ctlWords(geo: Geometry): number {
  return kCtlGlobalWords + kSpawnRing + geo.ctx.total * kPerCpuStride;
}
export const perCpuBase = (ctx: number): number => kCtlGlobalWords + kSpawnRing + ctx * kPerCpuStride;
export const spawnRingBase = kCtlGlobalWords;
export function percpuWords(geo: Geometry): number {
  return kPercpuBase + geo.ctx.cpus * kPercpuAreaWords + geo.ctx.total * kCsdStackStride;
}

export function allocateShared(geo: Geometry): SharedBuffers {
  const sab = (bytes: number) => new SharedArrayBuffer(Math.max(8, bytes));
  const nCtx = geo.ctx.total;
  return {
    geo,
    ctl: sab(ctlWords(geo) * 4),
    pcdata: sab(geo.nrLines * PAGE_SIZE),
    pcmeta: sab(geo.nrLines * META.stride * 4),
    pcset: sab(geo.nrSets * SET.stride * 4),
    pcsetEvictAddr: sab(geo.nrSets * kEvictEntries * 8),
    rmap: sab(geo.nrRmaps * RMAP.stride * 4),
    rmapAddr: sab(geo.nrRmaps * 8),
    pgtable: sab(geo.nrTablePages * kPtrsPerTable * 4),
    ptl: sab(geo.nrTablePages * 4),
    mm: sab(kMaxProcs * MM.stride * 4),
    mmF: sab(kMaxProcs * MM_F.stride * 8),
    tlbVpn: sab(geo.ctx.cpus * kTlbEntries * 8),
    tlbVal: sab(geo.ctx.cpus * kTlbEntries * 4),
    percpu: sab(percpuWords(geo) * 4),
    csdInfo: sab(nCtx * CSD_INFO.stride * 8),
    victim: sab(geo.victims * VICTIM.stride * 4),
    victimAddr: sab(geo.victims * 8),
    victimData: sab(geo.victims * PAGE_SIZE),
    fabric: sab(nCtx * kMboxBytes),
    recv: sab(kNrNodes * RECV.stride * 4),
    printk: sab(kPrintkHeaderWords * 4 + kPrintkSlots * kPrintkSlotBytes),
    reports: sab(kReportHeaderWords * 4 + kReportSlots * kReportSlotBytes),
    threads: sab(kMaxThreads * THREAD.stride * 4),
    threadArgs: sab(kMaxThreads * 8),
    threadF: sab(kMaxThreads * THREAD_F.stride * 8),
    futexHb: sab(kFutexHashSize * FUTEX_HB.stride * 4),
    stats: sab(nCtx * kStatsPerContext * 8),
    cs: sab((kCsLiveBase + kMaxSthreads) * 4),
    csThreads: sab(kMaxSthreads * CS_THREAD.stride * 4),
    csTime: sab((1 + kMaxSthreads) * 8),
    csLog: sab(geo.schedLog ? kCsLogEntries * 4 : 0),
    csReplay: sab(geo.replayEvents * 4),
  };
}

// ---------------------------------------------------------------------------------------------
// Accessors: the only way kernel code reaches a shared word. A region of records (Rec32, RecF64)
// is addressed by (record, word), a flat region (Vec32, VecF64) by its word index; each computes
// the raw index itself, so no caller does. get/set are plain accesses, for a word whose guard the
// caller holds (or that only the caller writes: see its declaration above); everything else is an
// Atomics operation. A read beyond the region is a RangeError, never an `undefined` turned NaN.
// `a` and idx() hand the raw array and index to the lock primitives of sync.ts and to Env.wait, through
// which every kernel wait goes (the host's own event loop uses waitAsync).

const outOfRange = (what: string, i: number): RangeError => new RangeError(`${what}: word ${i} is outside the region`);

/** Int32 records: word w of record i is a[i * stride + w]. */
export class Rec32 {
  constructor(
    readonly a: Int32Array,
    readonly stride: number,
    readonly what: string,
  ) {}
  idx(i: number, w: number): number {
    return i * this.stride + w;
  }
  /** record i as its own typed view, for a hot path that works on one record (a CPU's TLB) */
  row(i: number): Int32Array {
    return this.a.subarray(i * this.stride, (i + 1) * this.stride);
  }
  get(i: number, w: number): number {
    const v = this.a[i * this.stride + w];
    if (v === undefined) throw outOfRange(this.what, i * this.stride + w);
    return v;
  }
  set(i: number, w: number, v: number): void {
    this.a[i * this.stride + w] = v;
  }
  load(i: number, w: number): number {
    return Atomics.load(this.a, i * this.stride + w);
  }
  store(i: number, w: number, v: number): number {
    return Atomics.store(this.a, i * this.stride + w, v);
  }
  add(i: number, w: number, v: number): number {
    return Atomics.add(this.a, i * this.stride + w, v);
  }
  sub(i: number, w: number, v: number): number {
    return Atomics.sub(this.a, i * this.stride + w, v);
  }
  or(i: number, w: number, v: number): number {
    return Atomics.or(this.a, i * this.stride + w, v);
  }
  and(i: number, w: number, v: number): number {
    return Atomics.and(this.a, i * this.stride + w, v);
  }
  xchg(i: number, w: number, v: number): number {
    return Atomics.exchange(this.a, i * this.stride + w, v);
  }
  cas(i: number, w: number, expected: number, replacement: number): number {
    return Atomics.compareExchange(this.a, i * this.stride + w, expected, replacement);
  }
  notify(i: number, w: number, count?: number): number {
    return Atomics.notify(this.a, i * this.stride + w, count);
  }
}

/** Float64 records: no Atomics exist for them, so each word has one writer or a lock (see its declaration). */
export class RecF64 {
  constructor(
    readonly a: Float64Array,
    readonly stride: number,
    readonly what: string,
  ) {}
  /** record i as its own typed view, for a hot path that works on one record (a CPU's TLB) */
  row(i: number): Float64Array {
    return this.a.subarray(i * this.stride, (i + 1) * this.stride);
  }
  get(i: number, w: number): number {
    const v = this.a[i * this.stride + w];
    if (v === undefined) throw outOfRange(this.what, i * this.stride + w);
    return v;
  }
  set(i: number, w: number, v: number): void {
    this.a[i * this.stride + w] = v;
  }
  /** add to a word only this context writes (a statistics counter): plain, not atomic */
  bump(i: number, w: number, v: number): void {
    const j = i * this.stride + w;
    const old = this.a[j];
    if (old === undefined) throw outOfRange(this.what, j);
    this.a[j] = old + v;
  }
}

/** A flat Int32 region addressed by word index (global words, PTEs, PTE locks, percpu pointers). */
export class Vec32 {
  constructor(
    readonly a: Int32Array,
    readonly what: string,
  ) {}
  get(i: number): number {
    const v = this.a[i];
    if (v === undefined) throw outOfRange(this.what, i);
    return v;
  }
  set(i: number, v: number): void {
    this.a[i] = v;
  }
  load(i: number): number {
    return Atomics.load(this.a, i);
  }
  store(i: number, v: number): number {
    return Atomics.store(this.a, i, v);
  }
  add(i: number, v: number): number {
    return Atomics.add(this.a, i, v);
  }
  sub(i: number, v: number): number {
    return Atomics.sub(this.a, i, v);
  }
  or(i: number, v: number): number {
    return Atomics.or(this.a, i, v);
  }
  and(i: number, v: number): number {
    return Atomics.and(this.a, i, v);
  }
  xchg(i: number, v: number): number {
    return Atomics.exchange(this.a, i, v);
  }
  cas(i: number, expected: number, replacement: number): number {
    return Atomics.compareExchange(this.a, i, expected, replacement);
  }
  notify(i: number, count?: number): number {
    return Atomics.notify(this.a, i, count);
  }
  waitAsync(i: number, value: number, timeoutMs?: number): ReturnType<typeof Atomics.waitAsync> {
    return Atomics.waitAsync(this.a, i, value, timeoutMs);
  }
}

/** A flat Float64 region (rmap and victim addresses, thread arguments): one writer or a lock per word. */
export class VecF64 {
  constructor(
    readonly a: Float64Array,
    readonly what: string,
  ) {}
  get(i: number): number {
    const v = this.a[i];
    if (v === undefined) throw outOfRange(this.what, i);
    return v;
  }
  set(i: number, v: number): void {
    this.a[i] = v;
  }
}

/** Typed views over SharedBuffers, as accessors; every worker builds one. */
export class Shared {
  readonly geo: Geometry;
  /** ctl's global words (kCtl*), by word index */
  readonly ctl: Vec32;
  /** the user barriers (kBarrier*), laid over ctl's kCtlBarrierBase words: record = barrier id */
  readonly barrier: Rec32;
  /** the spawn ring (kSpawnRing entries after the global words) */
  readonly spawn: Vec32;
  /** ctl's per-context rows (kCpu*): record = context */
  readonly cpu: Rec32;
  readonly pcdata: Uint8Array;
  readonly pcdata32: Int32Array;
  readonly pcdataView: DataView;
  /** struct pcache_meta per line (kMeta*) */
  readonly meta: Rec32;
  /** struct pcache_set per set (kSet*), then its eviction list's pid words (kSetEvictPid(e)) */
  readonly set: Rec32;
  /** the eviction lists' addresses: record = set, word = entry */
  readonly setEvictAddr: RecF64;
  /** struct pcache_rmap per rmap (kRmap*) */
  readonly rmap: Rec32;
  /** an rmap's user address, by rmap index (line lock) */
  readonly rmapAddr: VecF64;
  /** page-table entries, by slot (the "ptep") */
  readonly pgtable: Vec32;
  /** the split PTE locks, by table page */
  readonly ptl: Vec32;
  /** P-side mm per process slot (kMm*) */
  readonly mm: Rec32;
  /** the mm's Float64 words (kMmMovingStart/End, kMmFaultAddr) */
  readonly mmF: RecF64;
  /** TLB tags (vpn, -1 invalid): record = CPU, word = entry */
  readonly tlbVpn: RecF64;
  /** TLB values: record = CPU, word = entry */
  readonly tlbVal: Rec32;
  /** the per-CPU areas and on-stack csds, by kernel pointer (word index; 0 is NULL) */
  readonly percpu: Vec32;
  /**
   * a csd (struct __call_single_data, kCsd*) by its kernel pointer into percpu, as C reaches
   * `csd->flags`: records of stride 1 over the percpu words, so record p is the struct at pointer p and
   * csd.load(p, kCsdFlags) is p->flags. Whether p points at a csd is the caller's business, as in C.
   */
  readonly csd: Rec32;
  /** struct flush_tlb_info per sending context (kCsdInfo*) */
  readonly csdInfo: RecF64;
  /** victim cache entries (kVictim*) */
  readonly victim: Rec32;
  /** a victim's user address, by entry */
  readonly victimAddr: VecF64;
  readonly victimData: Uint8Array;
  readonly fabric: SharedArrayBuffer;
  /** receiver words per node (kRecv*) */
  readonly recv: Rec32;
  readonly printk: SharedArrayBuffer;
  /** the printk ring's header (kPrintk*) */
  readonly printkHdr: Vec32;
  /** the printk ring's slots: record = slot */
  readonly printkSlots: Rec32;
  /** the printk ring's bytes (slot s at s * kPrintkSlotBytes) */
  readonly printkBytes: Uint8Array;
  /** the reports header (kRep*: counters, head, tail) */
  readonly repHdr: Vec32;
  /** the report records' bytes */
  readonly repBytes: Uint8Array;
  /** the report ring's slots: record = slot */
  readonly repSlots: Rec32;
  /** the thread table (kThread*), record = tid */
  readonly threads: Rec32;
  /** a thread's entry argument, by tid */
  readonly threadArgs: VecF64;
  /** a thread's Float64 words (kThreadF*), record = tid */
  readonly threadF: RecF64;
  /** the futex hash buckets (kFhb*), record = bucket */
  readonly futexHb: Rec32;
  /** per-context counter rows (src/kernel/stats.ts): record = context, one writer each */
  readonly stats: RecF64;
  /** ctlsched's global words (kCs*) and, from kCsLiveBase, its live list */
  readonly cs: Vec32;
  /** ctlsched's sthread records (kSt*), record = sthread id */
  readonly csThreads: Rec32;
  /** ctlsched's clock (word 0, µs) and deadlines (word 1 + sthread): written by the turn holder */
  readonly csTime: VecF64;
  readonly csLog: Int32Array;
  readonly csReplay: Int32Array;
  /**
   * Every shared buffer as one Int32 view, in SharedBuffers' order, and each buffer's id: how a
   * blocked sthread names the word it waits on so that another worker can read it (ctlsched).
   */
  readonly waitViews: Int32Array[] = [];
  readonly waitIds = new Map<ArrayBufferLike, number>();

  constructor(readonly bufs: SharedBuffers) {
    this.geo = bufs.geo;
    this.ctl = new Vec32(new Int32Array(bufs.ctl, 0, kCtlGlobalWords), 'ctl');
    this.barrier = new Rec32(
      new Int32Array(bufs.ctl, kCtlBarrierBase * 4, kNrBarriers * BARRIER.stride),
      BARRIER.stride,
      'user barriers',
    );
    this.spawn = new Vec32(new Int32Array(bufs.ctl, spawnRingBase * 4, kSpawnRing), 'spawn ring');
    this.cpu = new Rec32(
      new Int32Array(bufs.ctl, perCpuBase(0) * 4, bufs.geo.ctx.total * kPerCpuStride),
      kPerCpuStride,
      'per-cpu',
    );
    this.pcdata = new Uint8Array(bufs.pcdata);
    this.pcdata32 = new Int32Array(bufs.pcdata);
    this.pcdataView = new DataView(bufs.pcdata);
    this.meta = new Rec32(new Int32Array(bufs.pcmeta), META.stride, 'pcmeta');
    this.set = new Rec32(new Int32Array(bufs.pcset), SET.stride, 'pcset');
    this.setEvictAddr = new RecF64(new Float64Array(bufs.pcsetEvictAddr), kEvictEntries, 'pcset eviction addresses');
    this.rmap = new Rec32(new Int32Array(bufs.rmap), RMAP.stride, 'rmap');
    this.rmapAddr = new VecF64(new Float64Array(bufs.rmapAddr), 'rmap addresses');
    this.pgtable = new Vec32(new Int32Array(bufs.pgtable), 'pgtable');
    this.ptl = new Vec32(new Int32Array(bufs.ptl), 'ptl');
    this.mm = new Rec32(new Int32Array(bufs.mm), MM.stride, 'mm');
    this.mmF = new RecF64(new Float64Array(bufs.mmF), MM_F.stride, 'mm floats');
    this.tlbVpn = new RecF64(new Float64Array(bufs.tlbVpn), kTlbEntries, 'tlb tags');
    this.tlbVal = new Rec32(new Int32Array(bufs.tlbVal), kTlbEntries, 'tlb values');
    this.percpu = new Vec32(new Int32Array(bufs.percpu), 'percpu');
    this.csd = new Rec32(this.percpu.a, 1, 'csd');
    this.csdInfo = new RecF64(new Float64Array(bufs.csdInfo), CSD_INFO.stride, 'csd info');
    this.victim = new Rec32(new Int32Array(bufs.victim), VICTIM.stride, 'victim');
    this.victimAddr = new VecF64(new Float64Array(bufs.victimAddr), 'victim addresses');
    this.victimData = new Uint8Array(bufs.victimData);
    this.fabric = bufs.fabric;
    this.recv = new Rec32(new Int32Array(bufs.recv), RECV.stride, 'recv');
    this.printk = bufs.printk;
    this.printkHdr = new Vec32(new Int32Array(bufs.printk, 0, kPrintkHeaderWords), 'printk header');
    this.printkBytes = new Uint8Array(bufs.printk, kPrintkHeaderWords * 4, kPrintkSlots * kPrintkSlotBytes);
    this.printkSlots = new Rec32(
      new Int32Array(bufs.printk, kPrintkHeaderWords * 4, (kPrintkSlots * kPrintkSlotBytes) / 4),
      PRINTK_SLOT.stride,
      'printk slots',
    );
    this.repHdr = new Vec32(new Int32Array(bufs.reports, 0, kReportHeaderWords), 'reports header');
    this.repBytes = new Uint8Array(bufs.reports, kReportHeaderWords * 4);
    this.repSlots = new Rec32(
      new Int32Array(bufs.reports, kReportHeaderWords * 4, (kReportSlots * kReportSlotBytes) / 4),
      REPORT_SLOT.stride,
      'report slots',
    );
    this.threads = new Rec32(new Int32Array(bufs.threads), THREAD.stride, 'threads');
    this.threadArgs = new VecF64(new Float64Array(bufs.threadArgs), 'thread args');
    this.threadF = new RecF64(new Float64Array(bufs.threadF), THREAD_F.stride, 'thread floats');
    this.futexHb = new Rec32(new Int32Array(bufs.futexHb), FUTEX_HB.stride, 'futex hash buckets');
    this.stats = new RecF64(new Float64Array(bufs.stats), kStatsPerContext, 'stats');
    this.cs = new Vec32(new Int32Array(bufs.cs), 'ctlsched');
    this.csThreads = new Rec32(new Int32Array(bufs.csThreads), CS_THREAD.stride, 'ctlsched threads');
    this.csTime = new VecF64(new Float64Array(bufs.csTime), 'ctlsched clock');
    this.csLog = new Int32Array(bufs.csLog);
    this.csReplay = new Int32Array(bufs.csReplay);
    for (const [key, b] of Object.entries(bufs)) {
      if (key === 'geo' || !(b instanceof SharedArrayBuffer)) continue;
      this.waitIds.set(b, this.waitViews.length);
      this.waitViews.push(new Int32Array(b, 0, Math.floor(b.byteLength / 4)));
    }
  }

  // --- pointers and offsets that are not a record's word ---
  /** the base word of CPU c's percpu area */
  percpuArea(cpu: number): number {
    return kPercpuBase + cpu * kPercpuAreaWords;
  }
  /** per_cpu_ptr(off, cpu): a percpu offset made a pointer into CPU cpu's area */
  perCpuPtr(off: number, cpu: number): number {
    return this.percpuArea(cpu) + off;
  }
  /** the on-stack csd of a context (smp_call_function_single's csd_stack) */
  csdStackPtr(ctx: number): number {
    return kPercpuBase + this.geo.ctx.cpus * kPercpuAreaWords + ctx * kCsdStackStride;
  }
  lineOffset(line: number): number {
    return line * PAGE_SIZE;
  }
  setOfLine(line: number): number {
    return line % this.geo.nrSets;
  }
  /** user_vaddr_to_set_index: (uva & pcache_set_mask) >> 12, without 32-bit operators on the address */
  setOfAddr(va: number): number {
    return Math.floor(va / PAGE_SIZE) % this.geo.nrSets;
  }
  linePfn(line: number): number {
    return kPcachePfnBase + line;
  }
}
