// The per-set eviction list (managers/processor/pcache/perset.c): while a dirty evicted line is on
// its way to M, a fault on (tgid, page) must not fetch the stale copy from M; it waits while an
// entry exists. Entries (kEvictEntries per set: pid word + Float64 address) are added and removed
// under the set lock; pset_find_eviction reads them lockless (the pid word by Atomics, written last
// on add and first on remove).
import { kEvictEntries, kSetNrEviction, type Shared } from '../../kernel/layout.ts';
import { PAGE_SIZE } from '../../uapi/abi.ts';
import type { Kern } from '../kern.ts';

import { lockSet, unlockSet } from './meta.ts';
import { kSetEvictPid } from '../../kernel/layout.ts';

export function psetAddEviction(k: Kern, set: number, pid: number, address: number): number {
  const sh = k.sh;
  for (;;) {
    lockSet(k, set);
    for (let e = 0; e < kEvictEntries; e++) {
      if (sh.set.get(set, kSetEvictPid(e)) === 0) {
        sh.setEvictAddr.set(set, e, address);
        sh.set.store(set, kSetEvictPid(e), pid);
        sh.set.add(set, kSetNrEviction, 1);
        unlockSet(k, set);
        return e;
      }
    }
    unlockSet(k, set);
    k.env.irq();
    k.env.wait(sh.set.a, sh.set.idx(set, kSetNrEviction), kEvictEntries, 0.2, 'wait:eviction');
  }
}

export function psetRemoveEviction(k: Kern, set: number, e: number): void {
  const sh = k.sh;
  lockSet(k, set);
  sh.set.store(set, kSetEvictPid(e), 0);
  sh.set.sub(set, kSetNrEviction, 1);
  unlockSet(k, set);
  sh.set.notify(set, kSetEvictPid(e));
  sh.set.notify(set, kSetNrEviction);
}

/** pset_find_eviction: is (pid, page of va) being written back? Lockless quick check first. */
export function psetFindEviction(sh: Shared, set: number, pid: number, va: number): number {
  if (sh.set.load(set, kSetNrEviction) === 0) return -1;
  const page = va - (va % PAGE_SIZE);
  for (let e = 0; e < kEvictEntries; e++) {
    if (sh.set.load(set, kSetEvictPid(e)) === pid && sh.setEvictAddr.get(set, e) === page) return e;
  }
  return -1;
}
