// evict_find_line_random (managers/processor/pcache/evict_random.c): the set's lines in a random
// order (a Fisher-Yates shuffle from this context's seeded generator, so --seed replays it), no
// second chance. Called under the set lock (evict.ts).
import type { Kern } from '../kern.ts';
import { at } from '../../lib/at.ts';

export const evictRandom = {
  order(k: Kern, cands: number[]): void {
    for (let i = cands.length - 1; i > 0; i--) {
      const j = Math.floor(k.random() * (i + 1));
      [cands[i], cands[j]] = [at(cands, j), at(cands, i)];
    }
  },
  secondChance(_k: Kern, _set: number, _line: number, _nrCands: number): boolean {
    return false;
  },
};
