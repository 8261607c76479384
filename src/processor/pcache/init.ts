// pcache_early_init (managers/processor/pcache/init.c): run once by the host, before any worker
// starts, so it takes no lock: every line goes on its set's free list, every rmap on the pool's.
import { kCtlRmapFreeHead, kRmapNext, kSetFreeHead, kSetNrFree, type Shared } from '../../kernel/layout.ts';

import { pushFree } from './meta.ts';

export function pcacheEarlyInit(sh: Shared): void {
  const { nrSets, nrLines } = sh.geo;
  for (let s = 0; s < nrSets; s++) {
    sh.set.set(s, kSetFreeHead, 0);
    sh.set.set(s, kSetNrFree, 0);
  }
  // Push every line on its set's free list (LIFO), highest way first so way 0 is handed out first.
  for (let line = nrLines - 1; line >= 0; line--) pushFree(sh, sh.setOfLine(line), line);
  // rmap pool free list
  for (let r = sh.geo.nrRmaps - 1; r >= 0; r--) {
    sh.rmap.set(r, kRmapNext, sh.ctl.get(kCtlRmapFreeHead));
    sh.ctl.set(kCtlRmapFreeHead, r + 1);
  }
}
