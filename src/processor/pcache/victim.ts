// The victim cache (managers/processor/pcache/victim.c), simplified: entries hold (pid, page)
// copies of lines whose data M already has (written back before insertion), so dropping or
// replacing one is always safe. One lock guards the whole cache (kCtlVictimLock, LegoOS's
// usable_victims_lock, a leaf lock) and each set's kSetNrVictims. An address-space generation
// (kCtlVictimGen), bumped under that lock by every unmap/move, keeps an eviction that started
// before an munmap from inserting a now-stale copy.
import {
  kCtlVictimClock,
  kCtlVictimGen,
  kCtlVictimLock,
  kSetNrVictims,
  kVictimGen,
  kVictimPid,
  kVictimRw,
  kVictimSet,
  type Shared,
} from '../../kernel/layout.ts';
import { S } from '../../kernel/stats.ts';
import { spinLock, spinUnlock } from '../../kernel/sync.ts';
import { PAGE_SIZE } from '../../uapi/abi.ts';
import type { Kern } from '../kern.ts';

export function victimInsert(
  k: Kern,
  set: number,
  pid: number,
  address: number,
  data: Uint8Array,
  gen: number,
  writable: boolean,
): void {
  const sh = k.sh;
  spinLock(k.env, sh.ctl.a, kCtlVictimLock);
  if (sh.ctl.load(kCtlVictimGen) !== gen) {
    spinUnlock(sh.ctl.a, kCtlVictimLock);
    return;
  }
  k.env.stat(S.nr_victim_prepare_insert);
  let v = -1;
  for (let i = 0; i < sh.geo.victims; i++)
    if (sh.victim.get(i, kVictimPid) === 0) {
      v = i;
      break;
    }
  if (v < 0) {
    // FIFO replacement (find_victim_to_evict); every entry is already flushed.
    v = sh.ctl.get(kCtlVictimClock) % sh.geo.victims;
    sh.ctl.set(kCtlVictimClock, v + 1);
    victimDrop(sh, v);
    k.env.stat(S.nr_victim_eviction_triggered);
    k.env.stat(S.nr_victim_eviction_succeed);
  }
  sh.victim.set(v, kVictimPid, pid);
  sh.victim.set(v, kVictimSet, set);
  sh.victim.set(v, kVictimGen, gen);
  sh.victim.set(v, kVictimRw, writable ? 1 : 0);
  sh.victimAddr.set(v, address);
  sh.victimData.set(data, v * PAGE_SIZE);
  sh.set.add(set, kSetNrVictims, 1);
  k.env.stat(S.nr_victim_finish_insert);
  spinUnlock(sh.ctl.a, kCtlVictimLock);
}

function victimDrop(sh: Shared, v: number): void {
  const set = sh.victim.get(v, kVictimSet);
  sh.set.sub(set, kSetNrVictims, 1);
  sh.victim.set(v, kVictimPid, 0);
}

/**
 * victim_try_fill_pcache: on a miss, look for (pid, page) in the victim cache; on a hit copy it into
 * `line` and drop the entry (LegoOS drops a victim after its refill). Returns -1 on a miss, else
 * 1 if the page was mapped writable when evicted, 0 if read-only (mprotect invalidates entries).
 */
export function victimTryFill(k: Kern, pid: number, va: number, line: number): number {
  const sh = k.sh;
  if (sh.geo.victims === 0) return -1;
  const set = sh.setOfAddr(va);
  if (sh.set.load(set, kSetNrVictims) === 0) return -1;
  const page = va - (va % PAGE_SIZE);
  k.env.stat(S.nr_victim_lookup);
  spinLock(k.env, sh.ctl.a, kCtlVictimLock);
  for (let v = 0; v < sh.geo.victims; v++) {
    if (sh.victim.get(v, kVictimPid) === pid && sh.victimAddr.get(v) === page) {
      sh.pcdata.set(sh.victimData.subarray(v * PAGE_SIZE, (v + 1) * PAGE_SIZE), sh.lineOffset(line));
      const rw = sh.victim.get(v, kVictimRw);
      victimDrop(sh, v);
      spinUnlock(sh.ctl.a, kCtlVictimLock);
      k.env.stat(S.nr_victim_hit);
      return rw;
    }
  }
  spinUnlock(sh.ctl.a, kCtlVictimLock);
  return -1;
}

/** Drop victim entries of pid in [start, end) and bump the generation (munmap/mremap/brk shrink). */
export function victimInvalidateRange(k: Kern, pid: number, start: number, end: number): void {
  const sh = k.sh;
  spinLock(k.env, sh.ctl.a, kCtlVictimLock);
  sh.ctl.add(kCtlVictimGen, 1);
  for (let v = 0; v < sh.geo.victims; v++) {
    if (sh.victim.get(v, kVictimPid) === pid && sh.victimAddr.get(v) >= start && sh.victimAddr.get(v) < end) {
      victimDrop(sh, v);
      k.env.stat(S.nr_victim_invalidate);
    }
  }
  spinUnlock(sh.ctl.a, kCtlVictimLock);
}
