// The quiescent-point invariant checker (--check end|syscall). It runs inside stop_machine (every CPU
// and the sweep parked at a safe point, or idle), so no pcache operation is in progress and every
// transient state (a line being filled, an eviction between unmapping and freeing, a held lock) is
// gone: whatever disagrees now is corruption. The invariants are those of legoos-facts.md
// ("Emulator-relevant invariants"):
//
//   rmap-pte-mismatch       (1) every rmap's owner is live, walking its page table at rmap.address gives
//                               rmap.page_table, and that PTE maps this line      (report_bad_rmap text)
//   pte-without-rmap        (2) every mapped PTE of a live mm has its rmap (owner, VA, slot) on its line
//   line-mapped-twice       (2, 8) no line is mapped twice in one address space (two PTEs, or two rmaps
//                               of one owner on a line), unless it caches a shared page (its aliases)
//   shm-alias               no two lines cache the same shared page (one shm tag): a write through one
//                               alias would not be seen through the other; no free line keeps a tag
//   mapcount-mismatch       (3, 4) mapcount == |rmaps|, PC_valid <=> mapcount > 0, refcount == mapcount on
//                               the LRU; also a corrupt rmap list (cycle, freed or foreign rmap)
//   cow-writable            a line with several rmaps, one PTE of them write-protected for copy-on-
//                               write (_PAGE_COW), has no writable PTE (a write would reach the other
//                               process's view; the COW write-protection rule of fork)
//   set-index               (7) set(rmap.address) == set(line)
//   free-line-state         (5) a free line has flags 0, ref 0, mapcount 0, no rmaps ("Bad pcache state")
//   set-conservation        (6) free/LRU lists agree with their counters and links, nrFree + nrLru == ways,
//                               every line on exactly one list of its own set, no locked/reclaim/writeback
//                               flag left, set lock free
//   pset-eviction-leftover  (11) per-set eviction lists are empty
//   pgtable-corrupt         an upper-level entry or PGD pointing outside the allocated table pages (the
//                               tree cannot be walked below it)
//
// The checker only reads shared memory (Atomics.load where others write with Atomics), takes no lock
// and follows every link with a bound, so a corrupted structure is reported, never looped on.
import type { Kern } from '../kern.ts';
import {
  _PAGE_COW,
  _PAGE_PRESENT,
  _PAGE_RW,
  kCtlPgtableNext,
  kEvictEntries,
  kListFree,
  kListLru,
  kListNone,
  kMaxProcs,
  kMetaFlags,
  kMetaList,
  kMetaMapcount,
  kMetaNext,
  kMetaPrev,
  kMetaRef,
  kMetaRmapHead,
  kMetaShm,
  kMmPgd,
  kMmPid,
  kPtrsPerTable,
  kRmapFlags,
  kRmapNext,
  kRmapOwner,
  kRmapPageTable,
  kSetFreeHead,
  kSetLock,
  kSetLruHead,
  kSetLruTail,
  kSetNrEviction,
  kSetNrFree,
  kSetNrLru,
  PC_locked,
  PC_reclaim,
  PC_valid,
  PC_writeback,
  PCACHE_RMAP_used,
  type Shared,
} from '../../kernel/layout.ts';
import { dumpPcacheMeta } from './dump.ts';
import { pcFlagsString, rmapView } from './meta.ts';
import { reportBadRmap } from './rmap.ts';
import { fmtPtep, indexAt, pteLine, pteMapped } from '../pgtable.ts';
import { reportViolation, type ViolationDetails } from '../../kernel/report.ts';
import { hex } from '../../lib/text.ts';
import { kSetEvictPid } from '../../kernel/layout.ts';
import { walkPageTable } from '../pgtable.ts';
import { at } from '../../lib/at.ts';

export interface CheckResult {
  violations: number;
  checked: { lines: number; rmaps: number; ptes: number; sets: number };
}

export type InvariantKind =
  | 'rmap-pte-mismatch'
  | 'pte-without-rmap'
  | 'line-mapped-twice'
  | 'mapcount-mismatch'
  | 'cow-writable'
  | 'shm-alias'
  | 'set-index'
  | 'free-line-state'
  | 'set-conservation'
  | 'pset-eviction-leftover'
  | 'pgtable-corrupt';

/**
 * Detailed reports printed per kind and check; the rest are counted (and summarised in one line) so a
 * badly corrupted machine does not flood the kernel log ring, which the host may not drain meanwhile.
 */
export const kCheckReportsPerKind = 16;

const kLeftover = PC_locked | PC_reclaim | PC_writeback;

interface LiveMm {
  slot: number;
  pid: number;
  pgd: number;
}

class QuiescentChecker {
  private readonly sh: Shared;
  private readonly nrLines: number;
  private readonly nrSets: number;
  private readonly ways: number;
  /** table pages handed out so far: valid table-page indices are [1, nrTables) */
  private readonly nrTables: number;
  private readonly caller: string;
  violations = 0;
  readonly checked = { lines: 0, rmaps: 0, ptes: 0, sets: 0 };
  private readonly perKind = new Map<string, number>();
  private readonly mms: LiveMm[] = [];
  private readonly slotOfPid = new Map<number, LiveMm>();
  /** rmaps of each line, in list order (bounded walk) */
  private readonly lineRmaps: number[][] = [];
  /** the list (kListFree/kListLru) a line was found on by walking its set's lists, kListNone if none */
  private readonly foundOn: Uint8Array;
  private readonly mappedTwice = new Set<string>();

  constructor(
    private readonly k: Kern,
    private readonly when: string,
  ) {
    this.sh = k.sh;
    this.nrLines = this.sh.geo.nrLines;
    this.nrSets = this.sh.geo.nrSets;
    this.ways = this.sh.geo.ways;
    this.nrTables = Math.min(this.sh.geo.nrTablePages, this.sh.ctl.load(kCtlPgtableNext));
    this.caller = `check_quiescent (${when})`;
    this.foundOn = new Uint8Array(this.nrLines);
  }

  private prefix(): string {
    return `splitkern check (${this.when}):`;
  }

  /** Gate every report: count it, print the first kCheckReportsPerKind of each kind. */
  private allow(kind: InvariantKind): boolean {
    this.violations++;
    const n = (this.perKind.get(kind) ?? 0) + 1;
    this.perKind.set(kind, n);
    return n <= kCheckReportsPerKind;
  }

  private report(kind: InvariantKind, d: ViolationDetails): void {
    if (this.allow(kind)) reportViolation(this.k, kind, { ...d, when: this.when });
  }

  private meta(line: number, field: number): number {
    return this.sh.meta.load(line, field);
  }

  run(): CheckResult {
    this.collectMms();
    this.collectRmaps();
    this.checkSets();
    this.checkLines();
    this.checkRmaps();
    this.checkShmAliases();
    for (const mm of this.mms) this.checkPageTable(mm);
    this.checkEvictionLists();
    for (const [kind, n] of this.perKind) {
      if (n > kCheckReportsPerKind)
        this.k.env.printk(
          'error',
          `${this.prefix()} ${n - kCheckReportsPerKind} more ${kind} violations not printed (${n} in all)`,
        );
    }
    return { violations: this.violations, checked: { ...this.checked } };
  }

  // ---- live processes -------------------------------------------------------------------------

  private collectMms(): void {
    const sh = this.sh;
    for (let slot = 0; slot < kMaxProcs; slot++) {
      const pid = sh.mm.load(slot, kMmPid);
      if (pid === 0) continue;
      const pgd = sh.mm.get(slot, kMmPgd);
      if (!this.tableOk(pgd)) {
        this.report('pgtable-corrupt', {
          pid,
          slot,
          pgd,
          text: `${this.prefix()} pid ${pid} (mm slot ${slot}): PGD table page ${pgd} is not an allocated table page (1..${this.nrTables - 1})`,
        });
        continue;
      }
      if (this.slotOfPid.has(pid)) {
        this.report('pgtable-corrupt', {
          pid,
          slot,
          text: `${this.prefix()} pid ${pid} owns two mm slots (${this.slotOfPid.get(pid)?.slot} and ${slot})`,
        });
        continue;
      }
      const mm = { slot, pid, pgd };
      this.mms.push(mm);
      this.slotOfPid.set(pid, mm);
    }
  }

  private tableOk(tp: number): boolean {
    return tp >= 1 && tp < this.nrTables;
  }

  /** walkNoAlloc with bounds: -1 where a level is missing or points outside the table pool. */
  private walk(pgd: number, va: number): number {
    let tp = pgd;
    for (let level = 4; level >= 2; level--) {
      if (!this.tableOk(tp)) return -1;
      const e = this.sh.pgtable.load(tp * kPtrsPerTable + indexAt(va, level));
      if ((e & _PAGE_PRESENT) === 0) return -1;
      tp = e >>> 12;
    }
    return this.tableOk(tp) ? tp * kPtrsPerTable + indexAt(va, 1) : -1;
  }

  // ---- rmap lists (bounded) -------------------------------------------------------------------

  private collectRmaps(): void {
    const sh = this.sh;
    const nrRmaps = sh.geo.nrRmaps;
    const ownerLine = new Int32Array(nrRmaps).fill(-1);
    for (let line = 0; line < this.nrLines; line++) {
      const list: number[] = [];
      let bad = '';
      for (let e = this.meta(line, kMetaRmapHead); e !== 0; e = sh.rmap.get(e - 1, kRmapNext)) {
        const r = e - 1;
        if (r < 0 || r >= nrRmaps) {
          bad = `links to rmap index ${r}, outside the pool (${nrRmaps})`;
          break;
        }
        if (ownerLine[r] === line) {
          bad = `is cyclic (rmap ${r} appears twice)`;
          break;
        }
        if (at(ownerLine, r) >= 0) {
          bad = `shares rmap ${r} with line ${ownerLine[r]}`;
          break;
        }
        if ((sh.rmap.get(r, kRmapFlags) & PCACHE_RMAP_used) === 0) {
          bad = `holds rmap ${r}, which is not in use (flags ${hex(sh.rmap.get(r, kRmapFlags))})`;
          break;
        }
        ownerLine[r] = line;
        list.push(r);
      }
      if (bad) {
        this.report('mapcount-mismatch', {
          line,
          set: sh.setOfLine(line),
          text: `${this.prefix()} rmap list of pcache line ${line} (set ${sh.setOfLine(line)}) ${bad}`,
        });
      }
      this.lineRmaps.push(list);
      this.checked.rmaps += list.length;
    }
  }

  // ---- set conservation (6) -------------------------------------------------------------------

  private checkSets(): void {
    const sh = this.sh;
    const appearances = new Uint16Array(this.nrLines);
    const listSet = new Int32Array(this.nrLines).fill(-1);
    for (let set = 0; set < this.nrSets; set++) {
      this.checked.sets++;
      const sc = (text: string, extra: Record<string, number> = {}) =>
        this.report('set-conservation', { set, ...extra, text: `${this.prefix()} ${text}` });
      const lock = sh.set.load(set, kSetLock);
      if (lock !== 0) sc(`set ${set}: set lock (lru_lock) still held (word ${lock})`);
      const nrFree = sh.set.get(set, kSetNrFree);
      const nrLru = sh.set.get(set, kSetNrLru);

      const visit = (line: number, list: number, name: string): void => {
        appearances[line] = at(appearances, line) + 1;
        listSet[line] = set;
        if (list === kListFree || this.foundOn[line] === kListNone) this.foundOn[line] = list;
        if (sh.setOfLine(line) !== set)
          sc(`pcache line ${line} (set ${sh.setOfLine(line)}) is on the ${name} list of set ${set}`, { line });
        const tag = this.meta(line, kMetaList);
        if (tag !== list)
          sc(`pcache line ${line} (set ${set}) is on the ${name} list but its list tag is ${listName(tag)}`, { line });
      };

      // free list: singly linked through kMetaNext
      let nFree = 0;
      {
        const seen = new Set<number>();
        for (let e = sh.set.get(set, kSetFreeHead); e !== 0; e = this.meta(e - 1, kMetaNext)) {
          const line = e - 1;
          if (line < 0 || line >= this.nrLines) {
            sc(`set ${set}: free list links to line index ${line}, outside the pcache`);
            break;
          }
          if (seen.has(line)) {
            sc(`set ${set}: free list is cyclic at pcache line ${line}`, { line });
            break;
          }
          seen.add(line);
          nFree++;
          visit(line, kListFree, 'free');
        }
      }
      // LRU: doubly linked, head = newest, tail = oldest
      let nLru = 0;
      {
        const seen = new Set<number>();
        let prev = 0;
        for (let e = sh.set.get(set, kSetLruHead); e !== 0; e = this.meta(e - 1, kMetaNext)) {
          const line = e - 1;
          if (line < 0 || line >= this.nrLines) {
            sc(`set ${set}: LRU list links to line index ${line}, outside the pcache`);
            prev = -1;
            break;
          }
          if (seen.has(line)) {
            sc(`set ${set}: LRU list is cyclic at pcache line ${line}`, { line });
            prev = -1;
            break;
          }
          seen.add(line);
          const back = this.meta(line, kMetaPrev);
          if (back !== prev)
            sc(`set ${set}: LRU link broken: pcache line ${line}'s prev is ${back - 1}, expected ${prev - 1}`, {
              line,
            });
          nLru++;
          visit(line, kListLru, 'LRU');
          prev = e;
        }
        const tail = sh.set.get(set, kSetLruTail);
        if (prev >= 0 && tail !== prev)
          sc(`set ${set}: LRU tail is line ${tail - 1} but the list ends at line ${prev - 1}`);
      }
      if (nFree !== nrFree)
        sc(`set ${set}: nr_free ${nrFree} but the free list holds ${nFree} lines`, { nrFree, listed: nFree });
      if (nLru !== nrLru)
        sc(`set ${set}: nr_lru ${nrLru} but the LRU list holds ${nLru} lines`, { nrLru, listed: nLru });
      if (nrFree + nrLru !== this.ways)
        sc(`set ${set}: nr_free ${nrFree} + nr_lru ${nrLru} != ${this.ways} ways`, { nrFree, nrLru });
    }
    for (let line = 0; line < this.nrLines; line++) {
      const set = sh.setOfLine(line);
      const n = at(appearances, line);
      if (n === 0) {
        this.report('set-conservation', {
          line,
          set,
          text: `${this.prefix()} pcache line ${line} (set ${set}, tag ${listName(this.meta(line, kMetaList))}) is on no free or LRU list`,
        });
      } else if (n > 1) {
        this.report('set-conservation', {
          line,
          set,
          text: `${this.prefix()} pcache line ${line} (set ${set}) is on ${n} lists (last seen in set ${listSet[line]})`,
        });
      }
      const flags = this.meta(line, kMetaFlags);
      if (this.foundOn[line] !== kListFree && (flags & kLeftover) !== 0) {
        this.report('set-conservation', {
          line,
          set,
          text: `${this.prefix()} pcache line ${line} (set ${set}) still has flags (${pcFlagsString(flags & kLeftover)}) at a quiescent point`,
        });
      }
    }
  }

  // ---- per line: free-line state (5), mapcount/valid/refcount (3, 4) ---------------------------

  private checkLines(): void {
    const sh = this.sh;
    for (let line = 0; line < this.nrLines; line++) {
      this.checked.lines++;
      const set = sh.setOfLine(line);
      const flags = this.meta(line, kMetaFlags);
      const ref = this.meta(line, kMetaRef);
      const mapcount = this.meta(line, kMetaMapcount);
      if (this.foundOn[line] === kListFree) {
        const why: string[] = [];
        if (mapcount !== 0) why.push('nonzero mapcount');
        if (ref !== 0) why.push('nonzero _refcount');
        if (flags !== 0) why.push('PCACHE_FLAGS_CHECK_AT_FREE flag(s) set');
        if (this.meta(line, kMetaRmapHead) !== 0) why.push('nonempty rmap list');
        if (this.meta(line, kMetaShm) !== 0) why.push('shared-page tag left');
        if (why.length) {
          const comm = this.k.comm || this.k.env.name;
          this.report('free-line-state', {
            line,
            set,
            ref,
            mapcount,
            flags,
            text: `BUG: Bad pcache state in process [${comm}][pid:${this.k.pid} tgid: ${this.k.pid}]\n${dumpPcacheMeta(sh, line, why.join(', '))}`,
          });
        }
        continue;
      }
      const nr = at(this.lineRmaps, line).length;
      const mc = (text: string) =>
        this.report('mapcount-mismatch', {
          line,
          set,
          ref,
          mapcount,
          rmaps: nr,
          text: `${this.prefix()} pcache line ${line} (set ${set}): ${text}`,
        });
      if (mapcount !== nr) mc(`mapcount ${mapcount} but ${nr} rmap${nr === 1 ? '' : 's'}`);
      const valid = (flags & PC_valid) !== 0;
      if (valid !== mapcount > 0)
        mc(valid ? `PC_valid set with mapcount ${mapcount}` : `PC_valid clear with mapcount ${mapcount}`);
      if (this.foundOn[line] === kListLru && ref !== mapcount) mc(`refcount ${ref} != mapcount ${mapcount} on the LRU`);
    }
  }

  // ---- rmap -> PTE (1), set index (7), one mapping per address space (8) ----------------------

  private checkRmaps(): void {
    const sh = this.sh;
    for (let line = 0; line < this.nrLines; line++) {
      const rmaps = at(this.lineRmaps, line);
      const set = sh.setOfLine(line);
      const owners = new Set<number>();
      const shm = this.meta(line, kMetaShm);
      let cow = 0;
      const writable: string[] = [];
      for (const r of rmaps) {
        const v = rmapView(sh, r);
        if (sh.setOfAddr(v.address) !== set) {
          this.report('set-index', {
            line,
            set,
            pid: v.owner,
            addr: v.address,
            addrSet: sh.setOfAddr(v.address),
            text: `${this.prefix()} rmap ${r} of pcache line ${line} (set ${set}): pid ${v.owner} address ${hex(v.address)} indexes set ${sh.setOfAddr(v.address)}`,
          });
        }
        if (owners.has(v.owner) && shm === 0)
          this.lineMappedTwice(
            line,
            v.owner,
            `has two rmaps of pid ${v.owner} (second: address ${hex(v.address)}, ptep ${fmtPtep(v.pageTable)})`,
            v.address,
          );
        owners.add(v.owner);
        const mm = this.slotOfPid.get(v.owner);
        const ptep = mm ? this.walk(mm.pgd, v.address) : -1;
        const pte = ptep >= 0 ? sh.pgtable.load(ptep) : 0;
        if (ptep === v.pageTable && pteMapped(pte) && pteLine(pte) === line) {
          if (pte & _PAGE_COW) cow++;
          if (pte & _PAGE_RW) writable.push(`pid ${v.owner} at ${hex(v.address)}`);
          continue;
        }
        if (this.allow('rmap-pte-mismatch'))
          reportBadRmap(
            this.k,
            line,
            r,
            ptep,
            pte,
            mm ? this.caller : `${this.caller}, owner pid ${v.owner} has no mm`,
          );
      }
      if (rmaps.length > 1 && cow > 0 && writable.length > 0) {
        this.report('cow-writable', {
          line,
          set,
          mapcount: rmaps.length,
          text: `${this.prefix()} pcache line ${line} (set ${set}) is shared by ${rmaps.length} mappings, ${cow} of them copy-on-write, and writable by ${writable.join(', ')}`,
        });
      }
    }
  }

  /** shm-alias: one line per shared page (free lines are checked by free-line-state). */
  private checkShmAliases(): void {
    const sh = this.sh;
    const byTag = new Map<number, number>();
    const where = (line: number): string =>
      at(this.lineRmaps, line)
        .map((r) => `pid ${sh.rmap.get(r, kRmapOwner)} at ${hex(sh.rmapAddr.get(r))}`)
        .join(', ') || 'no mapping';
    for (let line = 0; line < this.nrLines; line++) {
      const tag = this.meta(line, kMetaShm);
      if (tag === 0 || this.foundOn[line] === kListFree) continue;
      const first = byTag.get(tag);
      if (first === undefined) {
        byTag.set(tag, line);
        continue;
      }
      const [s1, s2] = [sh.setOfLine(first), sh.setOfLine(line)];
      this.report('shm-alias', {
        line,
        set: s2,
        facts: [`sets=${s1 === s2 ? 'same' : 'differ'}`],
        text: `${this.prefix()} shared page ${tag} is cached twice: pcache line ${first} (set ${s1}; ${where(first)}) and line ${line} (set ${s2}; ${where(line)}): a write through one alias is not seen through the other`,
      });
    }
  }

  private lineMappedTwice(line: number, pid: number, what: string, addr: number): void {
    const key = `${line}:${pid}`;
    if (this.mappedTwice.has(key)) return;
    this.mappedTwice.add(key);
    this.report('line-mapped-twice', {
      line,
      set: this.sh.setOfLine(line),
      pid,
      addr,
      text: `${this.prefix()} pcache line ${line} (set ${this.sh.setOfLine(line)}) ${what}`,
    });
  }

  // ---- PTE -> rmap (2) ------------------------------------------------------------------------

  private checkPageTable(mm: LiveMm): void {
    const sh = this.sh;
    const mapped = new Map<number, number>(); // line -> VA of its first PTE in this mm
    const corrupt = (level: number, va: number, e: number) =>
      this.report('pgtable-corrupt', {
        pid: mm.pid,
        addr: va,
        text: `${this.prefix()} pid ${mm.pid}: level-${level} entry for ${hex(va)} (${hex(e >>> 0)}) points at table page ${e >>> 12}, not an allocated table page`,
      });
    walkPageTable(sh, mm.pgd, {
      tableOk: (tp) => this.tableOk(tp),
      bad: corrupt,
      pte: (slot, pte, va) => {
        this.checked.ptes++;
        this.checkPte(mm, slot, pte, va, mapped);
      },
    });
  }

  private checkPte(mm: LiveMm, slot: number, pte: number, va: number, mapped: Map<number, number>): void {
    const sh = this.sh;
    const line = pteLine(pte);
    const legoos = `pte: ${fmtPtep(slot)} ptent: ${hex(pte >>> 0)} address: ${hex(va)}`;
    if (line >= this.nrLines) {
      this.report('pte-without-rmap', {
        pid: mm.pid,
        addr: va,
        ptep: slot,
        pte: pte >>> 0,
        text: `${this.prefix()} pid ${mm.pid}: PTE of ${hex(va)} maps pfn ${hex(sh.linePfn(line))}, outside the pcache (${this.nrLines} lines)\n${legoos}`,
      });
      return;
    }
    const set = sh.setOfLine(line);
    let found = false;
    for (const r of at(this.lineRmaps, line)) {
      if (
        sh.rmap.get(r, kRmapOwner) === mm.pid &&
        sh.rmapAddr.get(r) === va &&
        sh.rmap.get(r, kRmapPageTable) === slot
      ) {
        found = true;
        break;
      }
    }
    if (!found) {
      this.report('pte-without-rmap', {
        line,
        set,
        pid: mm.pid,
        addr: va,
        ptep: slot,
        text: `${this.prefix()} pid ${mm.pid}: PTE of ${hex(va)} (ptep ${fmtPtep(slot)}) maps pcache line ${line} (set ${set}) but the line has no rmap (pid ${mm.pid}, ${hex(va)}, that ptep)\n${legoos}`,
      });
    }
    const first = mapped.get(line);
    if (first === undefined) mapped.set(line, va);
    else if (this.meta(line, kMetaShm) === 0)
      this.lineMappedTwice(line, mm.pid, `is mapped twice by pid ${mm.pid}: at ${hex(first)} and ${hex(va)}`, va);
  }

  // ---- per-set eviction lists (11) ------------------------------------------------------------

  private checkEvictionLists(): void {
    const sh = this.sh;
    for (let set = 0; set < this.nrSets; set++) {
      const nr = sh.set.load(set, kSetNrEviction);
      const entries: Array<{ pid: number; addr: number }> = [];
      for (let e = 0; e < kEvictEntries; e++) {
        const pid = sh.set.load(set, kSetEvictPid(e));
        if (pid !== 0) entries.push({ pid, addr: sh.setEvictAddr.get(set, e) });
      }
      if (nr === 0 && entries.length === 0) continue;
      // (at most 4 listed: the record must fit one kernel-log slot)
      const list =
        entries
          .slice(0, 4)
          .map((x) => `(pid ${x.pid}, ${hex(x.addr)})`)
          .join(' ') + (entries.length > 4 ? ` (+${entries.length - 4} more)` : '');
      this.report('pset-eviction-leftover', {
        set,
        nrEviction: nr,
        entries: entries.length,
        pid: entries[0]?.pid,
        addr: entries[0]?.addr,
        text: `${this.prefix()} set ${set}: eviction list not empty at a quiescent point: nr_eviction_entries ${nr}, entries ${list || 'none'}`,
      });
    }
  }
}

function listName(tag: number): string {
  return tag === kListFree ? 'free' : tag === kListLru ? 'LRU' : tag === kListNone ? 'none' : `?${tag}`;
}

/**
 * Check every invariant that holds at a quiescent point. `k` is a Kern of the checking context (host).
 * Live processes = mm slots with kMmPid != 0. Reports each violation with reportViolation(k, kind, ...)
 * using LegoOS's text formats.
 */
export function checkQuiescent(k: Kern, when: string): CheckResult {
  return new QuiescentChecker(k, when).run();
}
