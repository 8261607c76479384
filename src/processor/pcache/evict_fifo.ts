// evict_find_line_fifo (managers/processor/pcache/evict_fifo.c): allocation order, no second
// chance. With nothing moving lines on the LRU but allocation, its tail is the oldest allocation.
import type { Kern } from '../kern.ts';

export const evictFifo = {
  order(_k: Kern, _cands: number[]): void {},
  secondChance(_k: Kern, _set: number, _line: number, _nrCands: number): boolean {
    return false;
  },
};
