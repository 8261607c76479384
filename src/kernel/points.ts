// The schedule points: every place where the kernel may give another context the turn (Env.sched and
// the waits of Env.wait). Named after the kernel path they sit in, so that a recorded schedule and a
// shrunk race story read like the code ("cpu0 mremap:pte_moved_before_rmap"). A point's number is its
// index here: it is what a schedule file stores, so the list only grows at its end (a schedule names
// the list it was recorded with: SCHED_POINTS_VERSION). Constants only: no shared memory, no lock.

export const SCHED_POINTS = [
  // the race windows of the kernel paths (Env.sched)
  'mremap:line_locked',
  'mremap:pte_moved_before_rmap',
  'mremap:flushed',
  'zap:pte_cleared',
  'tlb:leave_mm',
  'tlb:flush_tlb_mm_range',
  'switch_mm:cpumask',
  'smp:llist_add',
  'smp:llist_del_all',
  'futex:queued',
  'futex:wake',
  'fault:allocated',
  'fault:pte_set',
  'cow:line_locked',
  'evict:entries_added',
  'evict:pte_cleared',
  'fabric:send',
  'fabric:reply',
  // user mode at page granularity, the timer tick, a kernel thread's unit of work
  'mmu:tick',
  'mmu:new_page',
  'sweep:set',
  // a task's life
  'task:start',
  'task:exit',
  'host:start',
  // waits (Env.wait): the context blocks until the word it watches changes, or its timeout
  'wait:spinlock',
  'wait:pcache_lock',
  'wait:mmap_sem_read',
  'wait:mmap_sem_write',
  'wait:until',
  'wait:reply',
  'wait:request',
  'wait:idle',
  'wait:cpu_taken',
  'wait:runqueue',
  'wait:sleep',
  'wait:stop_machine',
  'wait:parked',
  'wait:pcache_alloc',
  'wait:eviction',
  'wait:shm_gen',
  'wait:sweep_nap',
  'wait:stuck',
] as const;
export type SchedPoint = (typeof SCHED_POINTS)[number];
export const SCHED_POINTS_VERSION = 1;

const ids = new Map<string, number>(SCHED_POINTS.map((p, i) => [p, i]));
/** a point's number in a schedule file */
export function pointId(p: SchedPoint): number {
  return ids.get(p) ?? -1;
}
export function pointName(id: number): string {
  return SCHED_POINTS[id] ?? `point#${id}`;
}
