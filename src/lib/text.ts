// Small text helpers every layer may use (pure: no state, no kernel knowledge): the one hex
// formatter, edit distance for "did you mean", and excerpts of bad tokens. It touches no shared memory
// and takes no lock; callers on any thread hold nothing.
import { at } from './at.ts';

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = at(d, 0);
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = at(d, j);
      d[j] = Math.min(at(d, j) + 1, at(d, j - 1) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return at(d, b.length);
}

/** The closest of `names` to `name` (case-insensitive), if it is close enough to be a likely typo. */
export function closest(name: string, names: Iterable<string>, slack = 3): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const dist = editDistance(name.toUpperCase(), n.toUpperCase());
    if (dist < bestD) {
      bestD = dist;
      best = n;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / slack)) ? best : undefined;
}

/** A token as an error quotes it: at most `max` characters, with the full length when cut. */
export function excerpt(text: string, max = 40): string {
  const t = text.replace(/\s+/g, ' ');
  return t.length <= max ? t : `${t.slice(0, max - 12)}…(${t.length} chars)`;
}

/**
 * The one hex formatter: `0x1f`, or `-0x1f` for a negative value (an -errno or a signed 64-bit
 * literal), as LegoOS's %#lx prints an address. Numbers up to 2^53 keep every digit: no 32-bit
 * operator touches the value.
 */
export const hex = (v: number): string => (v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`);

/** `%0*lx`: zero-padded hex without a prefix, as /proc/pid/maps prints addresses. */
export const hexPad = (v: number, width: number): string => v.toString(16).padStart(width, '0');
