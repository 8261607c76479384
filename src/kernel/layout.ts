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
// ctl: global words (Int32). Written with Atomics by whoever the comment names.
export const kCtlCpuBootCounter = 0; // CPU workers claim their id with Atomics.add (cpuhp)
export const kCtlCpusOnline = 1; // bitmask of online CPUs (set by each CPU at the end of bring-up)
export const kCtlShutdown = 2; // host sets 1 to stop M, S and kthreads
export const kCtlNextTid = 3; // tid allocator (Atomics.add)
// word 4 is unused (pids come from the tid allocator: a process's pid is its main thread's tid)
export const kCtlRmapFreeLock = 5; // guards the rmap free list
export const kCtlRmapFreeHead = 6; // rmap free list head (under kCtlRmapFreeLock)
export const kCtlPgtableNext = 7; // bump allocator of page-table pages (Atomics.add)
export const kCtlVictimLock = 8; // guards the whole victim cache (usable_victims_lock)
export const kCtlVictimGen = 9; // address-space generation, bumped (under kCtlVictimLock) by every unmap/move
export const kCtlVictimClock = 10; // FIFO replacement hand (under kCtlVictimLock)
export const kCtlHostDoorbell = 11; // host wakes on it (thread spawn requests, panics)
export const kCtlSpawnHead = 12; // spawn ring producer index (Atomics.add)
export const kCtlSpawnTail = 13; // spawn ring consumer index (host only)
export const kCtlPanic = 14; // first internal failure sets 1
export const kCtlStopMachine = 15; // stop_machine owner+1, 0 when none
export const kCtlBarrierBase = 16; // 16 user barriers x 2 words {count, generation}
export const kNrBarriers = 16;
export const kCtlLiveThreads = kCtlBarrierBase + 2 * kNrBarriers; // user threads created and not yet exited (Atomics)
export const kCtlCpusBusy = kCtlLiveThreads + 1; // bitmask of CPUs running a task (owner sets/clears)
// --ib-serialize: one lock around every ibapi_send_reply (CONFIG_FIT_SEQUENTIAL_IBAPI)
export const kCtlIbLock = kCtlCpusBusy + 1;
export const kCtlGlobalWords = kCtlIbLock + 1;
export const kSpawnRing = 64; // spawn ring entries: {tid} (args in the thread table)

// Per-CPU words, one 64-byte line (16 words) each, after the global words and the spawn ring.
export const kPerCpuStride = 16;
export const kCpuDoorbell = 0; // bumped + notified on any event for this context (reply, IPI)
export const kCpuState = 2; // kCpuStateIdle/User/Kernel (owner)
export const kCpuPid = 3; // pid of the running user thread, 0 when idle (owner)
export const kCpuTid = 4;
export const kCpuLockWait = 5; // id of the lock this CPU is blocked on + 1, 0 if none (owner)
export const kCpuLockKind = 6;
export const kCpuKernelEnterMs = 7; // (ms since boot) when the CPU entered the kernel, -1 if not (owner)
export const kCpuParked = 8; // stop_machine: 1 while parked at a safe point
// id + 1 of the last lock this CPU took (owner; never cleared: unlocks are not tracked; watchdog)
export const kCpuLockLastTaken = 11;
export const kCpuLockLastTakenKind = 12;
export const kCpuStateIdle = 0;
export const kCpuStateUser = 1;
export const kCpuStateKernel = 2;

// ---------------------------------------------------------------------------------------------
// pcache metadata (struct pcache_meta), Int32 x kMetaStride per line. Line i: set i % nrSets,
// way i / nrSets. Writers: flags by Atomics bit ops; ref/mapcount by Atomics; rmapHead and LRU links
// under the line lock (rmap) / the set lock (LRU, free list).
export const kMetaStride = 8;
export const kMetaFlags = 0;
export const kMetaRef = 1;
export const kMetaMapcount = 2;
export const kMetaRmapHead = 3; // rmap index + 1, 0 = empty
export const kMetaPrev = 4; // LRU / free list links: line index + 1, 0 = none (set lock)
export const kMetaNext = 5;
export const kMetaList = 6; // which list the line is on: kListNone/Free/Lru (set lock)
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

// pcache set (struct pcache_set), Int32 x kSetStride. Words under the set lock (lru_lock) unless noted.
export const kSetStride = 16;
export const kSetLock = 0;
export const kSetFreeHead = 1; // line + 1
export const kSetLruHead = 2; // newest
export const kSetLruTail = 3; // oldest
export const kSetNrLru = 4;
export const kSetNrFree = 5;
export const kSetFlags = 6; // PCACHE_SET_evicting
export const kSetNrEviction = 7; // nr_eviction_entries (eviction list lock = set lock)
// words 8-11 are unused (LegoOS's per-set event counters are not kept: the machine's counters,
// src/kernel/stats.ts, count the same events)
export const kSetNrVictims = 12; // victims tagged with this set (victim lock)
// Per-set eviction list (perset.c): kEvictEntries entries {pid} + Float64 {address}; pid 0 = free.
export const kEvictEntries = 8;
/** the pid word of eviction entry e, after the set's kSetStride words (Atomics; written under the set lock) */
export const kSetEvictPid = (e: number): number => kSetStride + e;

// rmap (struct pcache_rmap), Int32 x kRmapStride + Float64 address. Fields under the line lock.
export const kRmapStride = 8;
export const kRmapFlags = 0; // PCACHE_RMAP_*
export const kRmapOwner = 1; // owner pid (thread-group leader)
export const kRmapPageTable = 2; // PTE slot index (the "ptep")
export const kRmapNext = 3; // rmap index + 1
export const kRmapCaller = 4; // enum rmap_caller
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
export const kPteFlagsMask = 0xfff;
export const PTE_FLAG_NAMES: Array<[number, string]> = [
  [_PAGE_PRESENT, 'present'],
  [_PAGE_RW, 'writable'],
  [_PAGE_USER, 'user'],
  [_PAGE_ACCESSED, 'accessed'],
  [_PAGE_DIRTY, 'dirty'],
  [_PAGE_PROTNONE, 'protnone'],
];
/** Physical frame numbers as LegoOS prints them: the pcache lives at memmap=...$4G. */
export const kPcachePhysStart = 0x100000000;
export const kPcachePfnBase = kPcachePhysStart / PAGE_SIZE;
export const kPtepBase = 0xffff880080000000;

// ---------------------------------------------------------------------------------------------
// mm (P side), Int32 x kMmStride per process slot. Float64 side array for the moving range.
export const kMaxProcs = 16;
export const kMmStride = 16;
export const kMmPid = 0; // 0 = free slot (host/CPU creating the process, Atomics.compareExchange)
export const kMmPgd = 1; // table page of the PGD
export const kMmSem = 2; // P-side mmap_sem: bit 30 writer, bit 29 writer waiting, low bits readers
export const kMmCpumask = 3; // mm_cpumask (Atomics.or / and by the switching CPU)
export const kMmPageTableLock = 4; // mm->page_table_lock (upper-level population)
export const kMmUsers = 5; // live threads
export const kMmKilled = 6; // fatal signal pending: signo
export const kMmSemOwner = 7; // cpu+1 holding the write lock (diagnostics)
export const kMmSiCode = 9; // si_code of the first fatal signal: 1 SEGV_MAPERR, 2 SEGV_ACCERR, 0 other
export const kMmPendingFlush = 10; // PTE changes whose TLB flush has not completed yet (stale-TLB detector; Atomics)
// address-space changes of this mm in progress on P, with or without mmap_sem (Atomics; > 1 only
// when one ran unserialised)
export const kMmAsChanges = 11;
export const kMmShootdowns = 8; // TLB shootdowns in flight on this mm (Atomics; see switchMmOut)
export const kMmFloatStride = 4;
export const kMmMovingStart = 0; // mremap in progress on P: old range (Float64), -1 when none
export const kMmMovingEnd = 1;
export const kMmFaultAddr = 2; // first fatal fault address (Float64)
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
export const kPcpuCallSingleQueue = 0;
export const kPcpuCfdCsd = 16;
export const kPcpuChunk = 32;
export const kCsdWords = 4;
export const kCsdLlist = 0; // llist_node.next: csd pointer, 0 = end
export const kCsdFunc = 1; // kIpiFlushTlb, kIpiFlushTlbAll
export const kCsdInfo = 2; // sending context + 1 (its flush_tlb_info in csdInfo), 0 = NULL
export const kCsdFlags = 3; // CSD_FLAG_LOCK | CSD_FLAG_SYNCHRONOUS
export const kPercpuAreaWords = kPcpuChunk + kCsdWords * kMaxCpus; // room for one csd array per CPU
export const kCsdStackStride = 16; // one cacheline per context's on-stack csd
// csdInfo: per sending context, Float64 x kCsdInfoStride: struct flush_tlb_info {mm (pid), start, end}.
// Written by that context before it publishes a csd, read by targets until they csd_unlock.
export const kCsdInfoStride = 4;
export const kCsdInfoPid = 0;
export const kCsdInfoStart = 1;
export const kCsdInfoEnd = 2;
export const CSD_FLAG_LOCK = 0x01;
export const CSD_FLAG_SYNCHRONOUS = 0x02;
export const kIpiFlushTlb = 1;
export const kIpiFlushTlbAll = 2;

// ---------------------------------------------------------------------------------------------
// victim cache entries: Int32 x kVictimStride + Float64 address + 4 KiB data.
export const kVictimStride = 4;
export const kVictimPid = 0; // 0 = free (victim lock)
export const kVictimSet = 1;
export const kVictimGen = 2; // address-space generation at insertion
export const kVictimRw = 3; // 1 if the evicted PTE was writable

// ---------------------------------------------------------------------------------------------
// Thread table: Int32 x kThreadStride per tid (tid 1.. kMaxThreads-1).
export const kMaxThreads = 256;
export const kThreadStride = 8;
export const kThreadState = 0; // 0 free, 1 created, 2 running, 3 exited
export const kThreadPid = 1;
export const kThreadExit = 2; // exit value
export const kThreadCpu = 3;
export const kThreadArg = 4; // entry arg (low 32 bits); see Float64 arg
export const kThreadEntry = 5; // index into the program's thread entry names
export const kThreadSignal = 6; // fatal signal that ended it, 0 if none
export const THREAD_FREE = 0;
export const THREAD_CREATED = 1;
export const THREAD_RUNNING = 2;
export const THREAD_EXITED = 3;

// ---------------------------------------------------------------------------------------------
// printk ring: kPrintkSlots slots of kPrintkSlotBytes; slot header Int32 {seq+1, len}, then UTF-8.
export const kPrintkSlots = 8192;
export const kPrintkSlotBytes = 512;
export const kPrintkHead = 0; // next sequence number (Atomics.add by writers)
export const kPrintkTail = 1; // next sequence the host will read (host only)
export const kPrintkDropped = 2; // messages overwritten before the host read them
export const kPrintkHeaderWords = 16;

// ---------------------------------------------------------------------------------------------
// reports: the violation channel (src/kernel/report.ts). Int32 header of kReportHeaderWords, then
// kReportSlots slots of kReportSlotBytes: slot header Int32 {index + 1 when committed, 0 free; len},
// then one UTF-8 JSON record. A writer counts the violation first (its context's counter), then
// reserves a slot only while the ring has room (CAS on kRepHead against the host's kRepTail), else
// counts the record as dropped. So the counters are the truth, and records are never overwritten.
export const kReportSlots = 1024;
export const kReportSlotBytes = 2048;
export const kReportSlotHeaderBytes = 8;
export const kRepHead = 0; // next record index (CAS by writers)
export const kRepTail = 1; // next record index the host reads (host writes; writers read)
export const kRepDropped = 2; // records that found the ring full (Atomics.add by writers)
export const kRepCountBase = 8; // + context: violations that context reported (Atomics.add)
export const kReportHeaderWords = kRepCountBase + kMaxCpus + 16;

// ---------------------------------------------------------------------------------------------
// Stats: per context a row of Float64 counters, written only by that context (no atomics needed),
// read by the host at the end. Indices are in src/kernel/stats.ts.
export const kStatsPerContext = 640;

// ---------------------------------------------------------------------------------------------
// Fabric mailboxes: per requesting context one mailbox (LegoOS: one outstanding RPC per CPU).
export const kMboxHeaderWords = 16;
export const kMboxState = 0; // 0 idle, 1 request posted, 2 reply ready (requester/receiver)
export const kMboxOpcode = 1;
export const kMboxSrc = 2; // context id of the sender
export const kMboxDst = 3; // receiving component: kNodeMemory/kNodeStorage
export const kMboxReqLen = 4; // msgpack payload bytes
export const kMboxReplyLen = 5;
export const kMboxPageIn = 6; // 1 if the request carries a 4 KiB page
export const kMboxPageOut = 7; // 1 if the reply carries a 4 KiB page
export const kMboxStatus = 8; // hot-path reply status (negative errno or 0)
export const kMboxAux = 9; // hot-path reply aux (e.g. VMA prot for a miss)
export const kMboxPid = 10; // hot-path request pid
export const kMboxFloatWords = 4; // Float64: [0] vaddr of hot-path requests, [1] send time (ms)
export const kMboxPayloadBytes = 256 * 1024;
export const kMboxBytes = kMboxHeaderWords * 4 + kMboxFloatWords * 8 + PAGE_SIZE + kMboxPayloadBytes;
export const kMboxFloatOff = kMboxHeaderWords * 4;
export const kMboxPageOff = kMboxFloatOff + kMboxFloatWords * 8;
export const kMboxPayloadOff = kMboxPageOff + PAGE_SIZE;
// Receiver words (per receiving node): pending bitmask words + doorbell.
export const kNodeMemory = 0;
export const kNodeStorage = 1;
export const kNrNodes = 2;
export const kRecvStride = 16;
export const kRecvDoorbell = 0;
export const kRecvSleeping = 1; // receiver sleeps on the doorbell: senders must notify
export const kRecvPendingBase = 2; // bitmask words of contexts with a posted request (bit = context)
export const kRecvPendingWords = 2;

// ---------------------------------------------------------------------------------------------
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
}

export function geometryFor(cfg: Pick<MachineConfig, 'pcacheBytes' | 'ways' | 'victim' | 'cpus'>): Geometry {
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
  stats: SharedArrayBuffer;
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
    pcmeta: sab(geo.nrLines * kMetaStride * 4),
    pcset: sab(geo.nrSets * (kSetStride + kEvictEntries) * 4),
    pcsetEvictAddr: sab(geo.nrSets * kEvictEntries * 8),
    rmap: sab(geo.nrRmaps * kRmapStride * 4),
    rmapAddr: sab(geo.nrRmaps * 8),
    pgtable: sab(geo.nrTablePages * kPtrsPerTable * 4),
    ptl: sab(geo.nrTablePages * 4),
    mm: sab(kMaxProcs * kMmStride * 4),
    mmF: sab(kMaxProcs * kMmFloatStride * 8),
    tlbVpn: sab(geo.ctx.cpus * kTlbEntries * 8),
    tlbVal: sab(geo.ctx.cpus * kTlbEntries * 4),
    percpu: sab(percpuWords(geo) * 4),
    csdInfo: sab(nCtx * kCsdInfoStride * 8),
    victim: sab(geo.victims * kVictimStride * 4),
    victimAddr: sab(geo.victims * 8),
    victimData: sab(geo.victims * PAGE_SIZE),
    fabric: sab(nCtx * kMboxBytes),
    recv: sab(kNrNodes * kRecvStride * 4),
    printk: sab(kPrintkHeaderWords * 4 + kPrintkSlots * kPrintkSlotBytes),
    reports: sab(kReportHeaderWords * 4 + kReportSlots * kReportSlotBytes),
    threads: sab(kMaxThreads * kThreadStride * 4),
    threadArgs: sab(kMaxThreads * 8),
    stats: sab(nCtx * kStatsPerContext * 8),
  };
}

// ---------------------------------------------------------------------------------------------
// Accessors: the only way kernel code reaches a shared word. A region of records (Rec32, RecF64)
// is addressed by (record, word), a flat region (Vec32, VecF64) by its word index; each computes
// the raw index itself, so no caller does. get/set are plain accesses, for a word whose guard the
// caller holds (or that only the caller writes: see its declaration above); everything else is an
// Atomics operation. A read beyond the region is a RangeError, never an `undefined` turned NaN.
// `a` and idx() hand the raw array and index to the lock primitives of sync.ts and to Atomics.wait.

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
  wait(i: number, w: number, value: number, timeoutMs?: number): 'ok' | 'not-equal' | 'timed-out' {
    return Atomics.wait(this.a, i * this.stride + w, value, timeoutMs);
  }
  waitAsync(i: number, w: number, value: number, timeoutMs?: number): ReturnType<typeof Atomics.waitAsync> {
    return Atomics.waitAsync(this.a, i * this.stride + w, value, timeoutMs);
  }
}

/** Float64 records: no Atomics exist for them, so each word has one writer or a lock (see its declaration). */
export class RecF64 {
  constructor(
    readonly a: Float64Array,
    readonly stride: number,
    readonly what: string,
  ) {}
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
    this.a[i * this.stride + w] = this.get(i, w) + v;
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
  wait(i: number, value: number, timeoutMs?: number): 'ok' | 'not-equal' | 'timed-out' {
    return Atomics.wait(this.a, i, value, timeoutMs);
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
  /** the reports header (kRep*: counters, head, tail) */
  readonly repHdr: Vec32;
  /** the report records' bytes */
  readonly repBytes: Uint8Array;
  /** the thread table (kThread*), record = tid */
  readonly threads: Rec32;
  /** a thread's entry argument, by tid */
  readonly threadArgs: VecF64;
  /** per-context counter rows (src/kernel/stats.ts): record = context, one writer each */
  readonly stats: RecF64;

  constructor(readonly bufs: SharedBuffers) {
    this.geo = bufs.geo;
    this.ctl = new Vec32(new Int32Array(bufs.ctl, 0, kCtlGlobalWords), 'ctl');
    this.spawn = new Vec32(new Int32Array(bufs.ctl, spawnRingBase * 4, kSpawnRing), 'spawn ring');
    this.cpu = new Rec32(
      new Int32Array(bufs.ctl, perCpuBase(0) * 4, bufs.geo.ctx.total * kPerCpuStride),
      kPerCpuStride,
      'per-cpu',
    );
    this.pcdata = new Uint8Array(bufs.pcdata);
    this.pcdata32 = new Int32Array(bufs.pcdata);
    this.pcdataView = new DataView(bufs.pcdata);
    this.meta = new Rec32(new Int32Array(bufs.pcmeta), kMetaStride, 'pcmeta');
    this.set = new Rec32(new Int32Array(bufs.pcset), kSetStride + kEvictEntries, 'pcset');
    this.setEvictAddr = new RecF64(new Float64Array(bufs.pcsetEvictAddr), kEvictEntries, 'pcset eviction addresses');
    this.rmap = new Rec32(new Int32Array(bufs.rmap), kRmapStride, 'rmap');
    this.rmapAddr = new VecF64(new Float64Array(bufs.rmapAddr), 'rmap addresses');
    this.pgtable = new Vec32(new Int32Array(bufs.pgtable), 'pgtable');
    this.ptl = new Vec32(new Int32Array(bufs.ptl), 'ptl');
    this.mm = new Rec32(new Int32Array(bufs.mm), kMmStride, 'mm');
    this.mmF = new RecF64(new Float64Array(bufs.mmF), kMmFloatStride, 'mm floats');
    this.tlbVpn = new RecF64(new Float64Array(bufs.tlbVpn), kTlbEntries, 'tlb tags');
    this.tlbVal = new Rec32(new Int32Array(bufs.tlbVal), kTlbEntries, 'tlb values');
    this.percpu = new Vec32(new Int32Array(bufs.percpu), 'percpu');
    this.csdInfo = new RecF64(new Float64Array(bufs.csdInfo), kCsdInfoStride, 'csd info');
    this.victim = new Rec32(new Int32Array(bufs.victim), kVictimStride, 'victim');
    this.victimAddr = new VecF64(new Float64Array(bufs.victimAddr), 'victim addresses');
    this.victimData = new Uint8Array(bufs.victimData);
    this.fabric = bufs.fabric;
    this.recv = new Rec32(new Int32Array(bufs.recv), kRecvStride, 'recv');
    this.printk = bufs.printk;
    this.repHdr = new Vec32(new Int32Array(bufs.reports, 0, kReportHeaderWords), 'reports header');
    this.repBytes = new Uint8Array(bufs.reports, kReportHeaderWords * 4);
    this.threads = new Rec32(new Int32Array(bufs.threads), kThreadStride, 'threads');
    this.threadArgs = new VecF64(new Float64Array(bufs.threadArgs), 'thread args');
    this.stats = new RecF64(new Float64Array(bufs.stats), kStatsPerContext, 'stats');
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
  /** the byte offset of a report slot in repBytes */
  reportSlotByte(index: number): number {
    return (index % kReportSlots) * kReportSlotBytes;
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
