// evict_find_line_lru (managers/processor/pcache/evict_lru.c): candidates from the LRU tail, and a
// second chance for a line whose PTE was referenced since the last scan (the sweep's aging, done
// inline): its accessed bits are cleared and it moves to the LRU head. Called under the set lock
// with the line locked and referenced (evict.ts); the PTE locks are only trylocked.
import type { Kern } from '../kern.ts';
import { lruAddHead, lruDel } from './meta.ts';
import { pcacheReferencedTrylock } from './rmap.ts';

export const evictLru = {
  order(_k: Kern, _cands: number[]): void {},
  secondChance(k: Kern, set: number, line: number, nrCands: number): boolean {
    if (nrCands <= 1 || !pcacheReferencedTrylock(k, line)) return false;
    lruDel(k.sh, set, line);
    lruAddHead(k.sh, set, line);
    return true;
  },
};
