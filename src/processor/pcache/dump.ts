// dump_pcache_meta, dump_pcache_rmap and dump_pte (managers/processor/pcache/debug.c): the text
// blocks report_bad_rmap and the checkers print. They only read (Atomics.load where others write),
// so a caller may hold any lock or none; what they print is as consistent as the caller's locks.
import { kMetaMapcount, kMetaRef, RMAP_CALLER_NAMES, type Shared } from '../../kernel/layout.ts';
import { fmtPtep, pteFlagsString, ptePfn } from '../pgtable.ts';

import { pcFlagsString, pcacheFlags, rmapView } from './meta.ts';

export function dumpRmap(sh: Shared, r: number, why: string): string {
  const v = rmapView(sh, r);
  return `rmap:${r} flags:0x${v.flags.toString(16)} owner-tgid:${v.owner} user_va:0x${v.address.toString(16)} ptep:${fmtPtep(v.pageTable)} caller: ${RMAP_CALLER_NAMES[v.caller] ?? v.caller}\npcache_rmap dumped because: ${why}`;
}

export function dumpPcacheMeta(sh: Shared, line: number, why: string): string {
  const f = pcacheFlags(sh, line);
  return `pcache:${line} mapcount:${sh.meta.load(line, kMetaMapcount)} refcount:${sh.meta.load(line, kMetaRef)} flags:(${pcFlagsString(f)}) pfn: 0x${sh.linePfn(line).toString(16)}\npcache dumped because: ${why}`;
}

export function dumpPte(pte: number): string {
  return `pte (0x${(pte >>> 0).toString(16)}) pfn:0x${ptePfn(pte).toString(16)} flags:(${pteFlagsString(pte)})`;
}
