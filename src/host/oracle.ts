// Independent oracles for the workloads: plain TypeScript over Buffers, never the emulator.
// Pure functions on host-side buffers (the input and what the run returned): no state, no shared memory,
// no lock; called on the host thread after a run.
import { at as elem } from '../lib/at.ts';
import type { PthreadStressReport } from '../user/programs/pthread_stress.ts';

// ---- word_count ----------------------------------------------------------------------------------

/**
 * Phoenix word_count's tokenisation: each byte is upper-cased (C-locale toupper: only a-z); a word
 * starts at a letter A-Z and continues while the byte is A-Z or an apostrophe. Every other byte
 * (digits, punctuation, whitespace, bytes >= 0x80) ends a word.
 */
export function countWords(buf: Uint8Array): Map<string, number> {
  const counts = new Map<string, number>();
  const n = buf.length;
  let i = 0;
  while (i < n) {
    const c = buf[i] ?? 0;
    const isLetter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!isLetter) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < n) {
      const d = buf[j] ?? 0;
      if ((d >= 0x41 && d <= 0x5a) || (d >= 0x61 && d <= 0x7a) || d === 0x27) j++;
      else break;
    }
    let w = '';
    for (let k = i; k < j; k++) {
      const d = buf[k] ?? 0;
      w += String.fromCharCode(d >= 0x61 && d <= 0x7a ? d - 0x20 : d);
    }
    counts.set(w, (counts.get(w) ?? 0) + 1);
    i = j;
  }
  return counts;
}

/** Byte-wise strcmp of two latin1 strings (one char per byte). */
export function byteCompare(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Count descending, ties by byte-wise strcmp ascending. */
export function sortCounts(map: Map<string, number>): Array<[string, number]> {
  return [...map.entries()].sort((x, y) => (x[1] !== y[1] ? y[1] - x[1] : byteCompare(x[0], y[0])));
}

export type WordCounts = Map<string, number> | ReadonlyArray<readonly [string, number]>;

export interface CompareResult {
  ok: boolean;
  /** one line: the first difference found */
  firstDifference?: string;
}

/**
 * Compares word counts. Differences are looked for in this order: a word whose count differs or that
 * is missing (walking `expected` in sorted order), an extra word, a duplicated word in `actual`, and
 * finally (when both are arrays) the order of the table.
 */
export function compareWordCounts(expected: WordCounts, actual: WordCounts): CompareResult {
  const exp = expected instanceof Map ? expected : new Map(expected.map(([w, c]) => [w, c] as [string, number]));
  let act: Map<string, number>;
  if (actual instanceof Map) act = actual;
  else {
    act = new Map();
    for (let i = 0; i < actual.length; i++) {
      const [w, c] = elem(actual, i);
      if (act.has(w)) {
        return {
          ok: false,
          firstDifference: `word ${JSON.stringify(w)} appears twice in actual (index ${i}, counts ${act.get(w)} and ${c})`,
        };
      }
      act.set(w, c);
    }
  }
  if (!(expected instanceof Map)) {
    const seen = new Set<string>();
    for (const [w] of expected) {
      if (seen.has(w)) return { ok: false, firstDifference: `word ${JSON.stringify(w)} appears twice in expected` };
      seen.add(w);
    }
  }
  for (const [w, c] of sortCounts(exp)) {
    const a = act.get(w);
    if (a === undefined)
      return { ok: false, firstDifference: `missing word ${JSON.stringify(w)} (expected count ${c})` };
    if (a !== c) return { ok: false, firstDifference: `word ${JSON.stringify(w)}: expected count ${c}, actual ${a}` };
  }
  const extra = [...act.entries()].filter(([w]) => !exp.has(w));
  if (extra.length > 0) {
    const [w, c] = elem(sortCounts(new Map(extra)), 0);
    return {
      ok: false,
      firstDifference: `extra word ${JSON.stringify(w)} (actual count ${c}, not in expected; ${extra.length} extra in all)`,
    };
  }
  if (!(expected instanceof Map) && !(actual instanceof Map)) {
    for (let i = 0; i < expected.length; i++) {
      if (elem(expected, i)[0] !== elem(actual, i)[0]) {
        return {
          ok: false,
          firstDifference: `order differs at index ${i}: expected ${JSON.stringify(elem(expected, i)[0])} (${elem(expected, i)[1]}), actual ${JSON.stringify(elem(actual, i)[0])} (${elem(actual, i)[1]})`,
        };
      }
    }
  }
  return { ok: true };
}

// ---- dpkg status ---------------------------------------------------------------------------------

const isBlankLine = (buf: Uint8Array, s: number, e: number): boolean => {
  for (let i = s; i < e; i++) {
    const c = buf[i] ?? 0;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
};

/**
 * Start offsets of the records of a status file, records partitioning the file: record 0 starts at
 * 0, record i > 0 at the first line of stanza i; a record owns its stanza and the blank lines after it.
 */
export function splitDpkgRecords(buf: Uint8Array): number[] {
  const offsets: number[] = [];
  if (buf.length === 0) return offsets;
  offsets.push(0);
  let inStanza = false;
  let seenStanza = false;
  let pos = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl < 0 ? buf.length : nl + 1;
    if (isBlankLine(buf, pos, end)) inStanza = false;
    else {
      if (!inStanza && seenStanza) offsets.push(pos);
      inStanza = true;
      seenStanza = true;
    }
    pos = end;
  }
  return offsets;
}

/** The Package: field of the record starting at `start` (up to `end`), or undefined. */
export function packageNameAt(buf: Uint8Array, start: number, end: number): string | undefined {
  let pos = start;
  while (pos < end) {
    const nl = buf.indexOf(0x0a, pos);
    const e = nl < 0 || nl >= end ? end : nl;
    const line = Buffer.from(buf.buffer, buf.byteOffset + pos, e - pos).toString('utf8');
    const m = /^Package:\s*(\S+)/.exec(line);
    if (m) return m[1];
    pos = e + 1;
  }
  return undefined;
}

export interface ByteCompareResult {
  ok: boolean;
  /** first differing offset (or the length of the shorter buffer) */
  offset?: number;
  expectedByte?: number;
  actualByte?: number;
  /** where the difference is, and where the bytes the output shows there come from */
  detail?: string;
}

const recordOf = (offsets: number[], at: number): number => {
  let lo = 0;
  let hi = offsets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (elem(offsets, mid) <= at) lo = mid;
    else hi = mid - 1;
  }
  return lo;
};

/**
 * Byte-exact comparison. On a mismatch, `detail` names the record the offset belongs to and, if the
 * 32 bytes the actual output shows at that offset occur in the expected buffer, the record holding them
 * -- the dpkg-database-corruption picture of one entry's bytes appearing in another. When those 32
 * bytes occur in several places the needle is lengthened to disambiguate.
 */
export function compareBytes(expected: Uint8Array, actual: Uint8Array, recordOffsets?: number[]): ByteCompareResult {
  const n = Math.min(expected.length, actual.length);
  let off = -1;
  // fast path: compare 4 KiB blocks, then find the byte
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.length);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  const CH = 4096;
  for (let s = 0; s < n && off < 0; s += CH) {
    const k = Math.min(CH, n - s);
    if (e.compare(a, s, s + k, s, s + k) !== 0) {
      for (let i = s; i < s + k; i++) {
        if (e[i] !== a[i]) {
          off = i;
          break;
        }
      }
    }
  }
  if (off < 0) {
    if (expected.length === actual.length) return { ok: true };
    off = n;
  }
  const offsets = recordOffsets ?? splitDpkgRecords(expected);
  const describe = (at: number): string => {
    if (offsets.length === 0) return `offset ${at}`;
    const r = recordOf(offsets, at);
    const end = r + 1 < offsets.length ? elem(offsets, r + 1) : expected.length;
    const name = packageNameAt(expected, elem(offsets, r), end);
    return `record ${r}${name ? ` (Package: ${name})` : ''} +${at - elem(offsets, r)}`;
  };
  const res: ByteCompareResult = { ok: false, offset: off };
  if (off < expected.length) res.expectedByte = expected[off];
  if (off < actual.length) res.actualByte = actual[off];
  let detail: string;
  if (off >= actual.length)
    detail = `actual output is short: ${actual.length} bytes, expected ${expected.length}; ends inside ${describe(off)}`;
  else if (off >= expected.length)
    detail = `actual output is long: ${actual.length} bytes, expected ${expected.length}`;
  else
    detail = `first difference at offset ${off}, in ${describe(off)}: expected 0x${elem(expected, off).toString(16).padStart(2, '0')}, actual 0x${elem(actual, off).toString(16).padStart(2, '0')}`;
  if (off < actual.length) {
    let len = Math.min(32, actual.length - off);
    const needle = a.subarray(off, off + len);
    let at = e.indexOf(needle);
    if (len >= 8 && at >= 0) {
      let again = e.indexOf(needle, at + 1);
      // lengthen the needle while it is ambiguous
      while (again >= 0 && len < 4096 && off + len < actual.length) {
        const longer = Math.min(len * 2, actual.length - off, 4096);
        const nd = a.subarray(off, off + longer);
        const at2 = e.indexOf(nd);
        if (at2 < 0) break;
        len = longer;
        at = at2;
        again = e.indexOf(nd, at + 1);
      }
      detail += `; the actual bytes there (${len} bytes) are input bytes of ${describe(at)} (input offset ${at})`;
      if (again >= 0) detail += ', among other places';
    } else if (len >= 8) {
      detail += '; the actual bytes there occur nowhere in the input';
    }
  }
  res.detail = detail;
  return res;
}

// ---- pthread-stress --------------------------------------------------------------------------------

/**
 * pthread-stress's result against what its parameters imply, by closed forms computed here: the
 * counter is threads × iterations, and with two threads or more the consumers took each of 1..K once
 * (count K, sum K(K+1)/2, sum of squares K(K+1)(2K+1)/6: a lost or doubled item changes a sum).
 */
export function comparePthreadStress(
  o: { threads: number; iterations: number; items: number },
  rep: PthreadStressReport,
): { ok: boolean; summary: string } {
  const k = o.threads >= 2 ? o.items : 0;
  const want = {
    counter: o.threads * o.iterations,
    consumed: k,
    sum: (k * (k + 1)) / 2,
    sumSquares: (k * (k + 1) * (2 * k + 1)) / 6,
  };
  for (const f of ['counter', 'consumed', 'sum', 'sumSquares'] as const) {
    if (rep[f] !== want[f])
      return { ok: false, summary: `MISMATCH: ${f} is ${rep[f]}, expected ${want[f]} (computed from the parameters)` };
  }
  return {
    ok: true,
    summary: `counter ${rep.counter} = ${o.threads} thread${o.threads === 1 ? '' : 's'} × ${o.iterations}${k ? `, each of the ${k} items consumed once (count and sums match)` : ''}`,
  };
}
