// Counter names. pcache counters use LegoOS's names (managers/processor/pcache/stat.c, print order);
// the rest are splitkern's. Each context owns a row (layout.ts kStatsPerContext); only it writes.
// Names and indices only: this file touches no shared memory and takes no lock (the row is bumped
// plainly by its owner through Env.stat, and read by the host: src/host/summary.ts).
import type { BugFlag } from './config.ts';

export const PCACHE_EVENTS = [
  'nr_pgfault',
  'nr_pgfault_code',
  'nr_clflush',
  'nr_clflush_clean_skipped',
  'nr_clflush_fail',
  'nr_pgfault_wp',
  'nr_pgfault_wp_cow',
  'nr_pgfault_wp_reuse',
  'nr_pgfault_due_to_concurrent_eviction',
  'nr_pcache_fill_from_memory',
  'nr_pcache_fill_from_victim',
  'nr_pcache_eviction_triggered',
  'nr_pcache_eviction_eagain_freeable',
  'nr_pcache_eviction_eagain_concurrent',
  'nr_pcache_eviction_failure_find',
  'nr_pcache_eviction_failure_evict',
  'nr_pcache_eviction_succeed',
  'nr_pset_list_lookup',
  'nr_pset_list_hit',
  'nr_victim_lookup',
  'nr_victim_hit',
  'nr_victim_eviction_triggered',
  'nr_victim_eviction_succeed',
  'nr_victim_prepare_insert',
  'nr_victim_finish_insert',
  'nr_victim_invalidate',
  'nr_sweep_run',
  'nr_sweep_nr_pset',
  'nr_sweep_nr_moved_pcm',
  'nr_mremap_pset_same',
  'nr_mremap_pset_diff',
  'nr_pcache_rmap_alloc',
  'nr_pcache_rmap_free',
] as const;

export const OTHER_EVENTS = [
  'tlb_fill',
  'tlb_flush_local',
  'tlb_flush_all_local',
  'tlb_shootdown',
  'ipi_sent',
  'ipi_received',
  'syscall',
  'syscall_error',
  'segfault',
  'mremap_move_pages',
  'zap_pages',
  'spurious_fault',
  'futex_wait',
  'futex_wake',
  'futex_timedout',
  // the scheduler (processor/sched.ts), counted on the CPU where it happens
  'nr_switches',
  'nr_preempt',
  'nr_yield',
  'nr_migrations',
  'nr_lazy_tlb',
  'nr_leave_mm',
  // processes (processor/fork.ts)
  'nr_fork',
  'nr_fork_ptes',
  'nr_fork_rmap_fallback',
  // shared pages (pcache/fault.ts alias scan; write-back of a zapped dirty shared mapping, mm.ts)
  'nr_pcache_fill_shm_alias',
  'nr_pcache_fill_shm_retry',
  'nr_shm_zap_flush',
  'nr_shm_evict',
] as const;

/**
 * Executions of each bug flag's broken branch (`nr_bug_<flag>`, dashes as underscores): counted where
 * the broken form actually does its damage, so a reproduction also proves that the broken path ran.
 */
export const BUG_EVENTS = [
  'nr_bug_mremap_no_pcache_move',
  'nr_bug_mremap_pte_before_rmap',
  'nr_bug_mremap_unserialized',
  'nr_bug_mremap_dest_overwrite',
  'nr_bug_free_before_flush',
  'nr_bug_tlb_shootdown_skip',
  'nr_bug_brk_shrink_no_zap',
  'nr_bug_cpuhp_missing',
  'nr_bug_shared_no_colour',
] as const;
export const bugStatName = (flag: BugFlag): (typeof BUG_EVENTS)[number] =>
  `nr_bug_${flag.replace(/-/g, '_')}` as (typeof BUG_EVENTS)[number];

export type StatName = (typeof PCACHE_EVENTS)[number] | (typeof OTHER_EVENTS)[number] | (typeof BUG_EVENTS)[number];

const ALL: readonly string[] = [...PCACHE_EVENTS, ...OTHER_EVENTS, ...BUG_EVENTS];
export const S: Record<StatName, number> = Object.fromEntries(ALL.map((n, i) => [n, i])) as Record<StatName, number>;

// Fabric per-opcode counters: a block per opcode slot: count, bytes out, bytes in, latency sum (µs),
// then a log2 latency histogram in µs (bucket b counts latencies in [2^(b-1), 2^b) µs).
export const kFabricBase = 96;
export const kFabricOpcodes = 20;
export const kFabricHistBuckets = 16;
export const kFabricSlot = 4 + kFabricHistBuckets;
export const FAB_COUNT = 0;
export const FAB_BYTES_OUT = 1;
export const FAB_BYTES_IN = 2;
export const FAB_LAT_SUM = 3;
export const FAB_HIST = 4;
// Syscall counters: per syscall number slot count (kSyscallBase + slot).
export const kSyscallBase = kFabricBase + kFabricOpcodes * kFabricSlot; // 496
export const SYSCALL_NAMES = [
  'mmap',
  'munmap',
  'mprotect',
  'mremap',
  'brk',
  'open',
  'read',
  'write',
  'close',
  'fstat',
  'lseek',
  'clone',
  'join',
  'exit',
  'barrier',
  'getpid',
  'futex',
  'sched_yield',
  'sched_setaffinity',
  'sched_getaffinity',
  'fork',
  'wait4',
  'execve',
  'clock_gettime',
] as const;
