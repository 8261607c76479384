// x86-64 4-level page tables of P (managers/processor/pgtable.c). The P page table is the pcache's tag
// store: a present PTE points at a pcache line. Table pages come from one pool; munmap never frees
// them (as LegoOS: "free_pgd_range ... never frees table pages"), the end of an mm frees its whole
// tree (freePgtables), so that processes created and ended by fork for ever do not drain the pool.
//
// Locks: a PTE is modified only under its PTE-page lock (split PTE locks, ptl[tablePage]), except the
// MMU's _PAGE_DIRTY CAS (as x86 sets A/D bits); upper-level entries are populated under
// mm->page_table_lock, which walk(alloc) takes itself (a leaf lock). Readers (the MMU's page walk, like
// hardware) read entries with Atomics.load and take no lock. allocTablePage pops the free list under
// its leaf lock (kCtlPgtableFreeLock), else bumps kCtlPgtableNext (Atomics.add), and zeroes the page
// before any entry points at it. Only that leaf lock is taken while mm->page_table_lock is held, so
// callers of walk and ptlLock* never hold it.
import type { Env } from '../kernel/env.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PRESENT,
  _PAGE_PROTNONE,
  _PAGE_RW,
  _PAGE_USER,
  kCtlPgtableFreeHead,
  kCtlPgtableFreeLock,
  kCtlPgtableNext,
  kMmPageTableLock,
  kMmPgd,
  kPcachePfnBase,
  kPtrsPerTable,
  PTE_FLAG_NAMES,
  type Shared,
} from '../kernel/layout.ts';
import { spinLock, spinTrylock, spinUnlock } from '../kernel/sync.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';

const L4 = 2 ** 39;
const L3 = 2 ** 30;
const L2 = 2 ** 21;

/** Hard limit: table pages in the pool (layout.geometryFor nrTablePages). */
export class PgtableExhausted extends Error {}

export function pteLine(pte: number): number {
  return pte >>> 12;
}
export function ptePresent(pte: number): boolean {
  return (pte & _PAGE_PRESENT) !== 0;
}
/** A PTE that maps a line: present, or PROT_NONE (not present to the MMU, line still mapped). */
export function pteMapped(pte: number): boolean {
  return (pte & (_PAGE_PRESENT | _PAGE_PROTNONE)) !== 0;
}
export function pteNone(pte: number): boolean {
  return pte === 0;
}
/** pcache_mk_pte: present|user|accessed, RW when the VMA is writable (M says so in the miss reply). */
export function mkPte(line: number, writable: boolean): number {
  return (line << 12) | _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | (writable ? _PAGE_RW : 0);
}
/** pfn as LegoOS prints it (pte_pfn): 0 for an empty PTE. */
export function ptePfn(pte: number): number {
  return pteMapped(pte) ? kPcachePfnBase + pteLine(pte) : 0;
}

export function pteFlagsString(pte: number): string {
  return PTE_FLAG_NAMES.filter(([b]) => pte & b)
    .map(([, n]) => n)
    .join('|');
}

/** ptep as a kernel pointer, as LegoOS logs it (%p): ffff8800800xxxxx */
export function fmtPtep(slot: number): string {
  if (slot < 0) return '(null)';
  return (0xffff880080000000n + BigInt(slot) * 8n).toString(16);
}

export function tableOfSlot(slot: number): number {
  return Math.floor(slot / kPtrsPerTable);
}

/**
 * Allocate a zeroed table page: a freed one (freePgtables) if any, else one never used yet. `env`
 * services IPIs while waiting for the free list's leaf lock; without it (boot, tests) the wait only spins.
 */
export function allocTablePage(sh: Shared, env?: Env): number {
  let tp = -1;
  if (sh.ctl.load(kCtlPgtableFreeHead) !== 0) {
    lockFreeTables(sh, env);
    const head = sh.ctl.get(kCtlPgtableFreeHead);
    if (head !== 0) {
      tp = head - 1;
      sh.ctl.set(kCtlPgtableFreeHead, sh.pgtable.a[tp * kPtrsPerTable] ?? 0);
    }
    spinUnlock(sh.ctl.a, kCtlPgtableFreeLock);
  }
  if (tp < 0) tp = sh.ctl.add(kCtlPgtableNext, 1);
  if (tp >= sh.geo.nrTablePages) {
    throw new PgtableExhausted(
      `page-table pool exhausted (${sh.geo.nrTablePages} table pages): the address space is too sparse for splitkern's limit`,
    );
  }
  sh.pgtable.a.fill(0, tp * kPtrsPerTable, (tp + 1) * kPtrsPerTable); // a fresh page no one else sees yet
  return tp;
}

function lockFreeTables(sh: Shared, env: Env | undefined): void {
  if (env) spinLock(env, sh.ctl.a, kCtlPgtableFreeLock);
  else while (!spinTrylock(sh.ctl.a, kCtlPgtableFreeLock));
}

/**
 * free_pgtables + pgd_free at the end of an mm: every table page of the tree under `pgd` goes back
 * to the pool. The caller guarantees no walker can reach the tree any more (the mm's slot is free,
 * no CPU has it loaded, and no rmap points into it).
 */
export function freePgtables(env: Env, pgd: number): number {
  const sh = env.sh;
  const pages: number[] = [];
  const collect = (tp: number, level: number): void => {
    pages.push(tp);
    if (level === 1) return;
    for (let i = 0; i < kPtrsPerTable; i++) {
      const e = sh.pgtable.load(tp * kPtrsPerTable + i);
      if (e & _PAGE_PRESENT) collect(e >>> 12, level - 1);
    }
  };
  collect(pgd, 4);
  spinLock(env, sh.ctl.a, kCtlPgtableFreeLock);
  for (const tp of pages) {
    sh.pgtable.store(tp * kPtrsPerTable, sh.ctl.get(kCtlPgtableFreeHead));
    sh.ctl.set(kCtlPgtableFreeHead, tp + 1);
  }
  spinUnlock(sh.ctl.a, kCtlPgtableFreeLock);
  return pages.length;
}

export function indexAt(va: number, level: number): number {
  const span = level === 4 ? L4 : level === 3 ? L3 : level === 2 ? L2 : PAGE_SIZE;
  return Math.floor(va / span) % kPtrsPerTable;
}

/**
 * Walk mm's page table to the PTE slot of `va`. With `alloc`, missing levels are allocated under
 * mm->page_table_lock (pud_alloc/pmd_alloc/pte_alloc); without it, returns -1 for a missing level.
 */
export function walk(env: Env, mmSlot: number, va: number, alloc: boolean): number {
  const sh = env.sh;
  if (!alloc) return walkNoAlloc(sh, sh.mm.get(mmSlot, kMmPgd), va);
  let tp = sh.mm.get(mmSlot, kMmPgd);
  for (let level = 4; level >= 2; level--) {
    const i = tp * kPtrsPerTable + indexAt(va, level);
    let e = sh.pgtable.load(i);
    if ((e & _PAGE_PRESENT) === 0) {
      const lockIdx = sh.mm.idx(mmSlot, kMmPageTableLock);
      spinLock(env, sh.mm.a, lockIdx);
      e = sh.pgtable.load(i);
      if ((e & _PAGE_PRESENT) === 0) {
        try {
          const ntp = allocTablePage(sh, env);
          e = (ntp << 12) | _PAGE_PRESENT;
          sh.pgtable.store(i, e);
        } finally {
          spinUnlock(sh.mm.a, lockIdx);
        }
      } else spinUnlock(sh.mm.a, lockIdx);
    }
    tp = e >>> 12;
  }
  return tp * kPtrsPerTable + indexAt(va, 1);
}

/** Lockless walk used by the MMU (hardware page walker) and checkers. */
export function walkNoAlloc(sh: Shared, pgd: number, va: number): number {
  let tp = pgd;
  for (let level = 4; level >= 2; level--) {
    const e = sh.pgtable.load(tp * kPtrsPerTable + indexAt(va, level));
    if ((e & _PAGE_PRESENT) === 0) return -1;
    tp = e >>> 12;
  }
  return tp * kPtrsPerTable + indexAt(va, 1);
}

/** What walkPageTable calls: each mapped PTE, and each upper-level entry that cannot be walked. */
export interface PageTableVisitor {
  /** may `tablePage` be walked (an allocated table page)? */
  tableOk(tablePage: number): boolean;
  /** a present entry at `level` (4 = PGD) for `va` that points at a table page tableOk refuses */
  bad(level: number, va: number, entry: number): void;
  /** a mapped PTE at `slot` for the page at `va` */
  pte(slot: number, pte: number, va: number): void;
}

/**
 * walk_page_range over a whole address space, for checkers in a stopped world: every present
 * entry, top down, by Atomics loads; an entry pointing outside the table pages is reported and not
 * followed, so a corrupted tree is never walked into.
 */
export function walkPageTable(sh: Shared, pgd: number, v: PageTableVisitor): void {
  const down = (tp: number, level: number, base: number): void => {
    const span = level === 4 ? L4 : level === 3 ? L3 : level === 2 ? L2 : PAGE_SIZE;
    for (let i = 0; i < kPtrsPerTable; i++) {
      const slot = tp * kPtrsPerTable + i;
      const e = sh.pgtable.load(slot);
      const va = base + i * span;
      if (level === 1) {
        if (pteMapped(e)) v.pte(slot, e, va);
        continue;
      }
      if ((e & _PAGE_PRESENT) === 0) continue;
      if (!v.tableOk(e >>> 12)) v.bad(level, va, e);
      else down(e >>> 12, level - 1, va);
    }
  };
  down(pgd, 4, 0);
}

// PTE-page locks (pte_lockptr): one per table page.
export function ptlLock(env: Env, slot: number): void {
  const tp = tableOfSlot(slot);
  spinLock(env, env.sh.ptl.a, tp, tp);
}
/** spin_trylock of the PTE page's lock (rmap_get_pte_trylock) */
export function ptlTrylock(env: Env, slot: number): boolean {
  const tp = tableOfSlot(slot);
  return spinTrylock(env.sh.ptl.a, tp);
}
export function ptlUnlock(env: Env, slot: number): void {
  spinUnlock(env.sh.ptl.a, tableOfSlot(slot));
}
/** Lock the PTE pages of two slots in a fixed global order (lower table page first), once if shared. */
export function ptlLockPair(env: Env, a: number, b: number): void {
  const ta = tableOfSlot(a),
    tb = tableOfSlot(b);
  if (ta === tb) {
    ptlLock(env, a);
    return;
  }
  if (ta < tb) {
    ptlLock(env, a);
    ptlLock(env, b);
  } else {
    ptlLock(env, b);
    ptlLock(env, a);
  }
}
export function ptlUnlockPair(env: Env, a: number, b: number): void {
  const ta = tableOfSlot(a),
    tb = tableOfSlot(b);
  ptlUnlock(env, a);
  if (ta !== tb) ptlUnlock(env, b);
}

export { _PAGE_DIRTY, _PAGE_RW, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_ACCESSED };
