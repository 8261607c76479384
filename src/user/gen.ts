// Deterministic input generators (host side, plain TypeScript): English-like Zipf text for word_count
// and a realistic dpkg status file for dpkg-status. Same seed => same bytes. It touches no shared memory
// and takes no lock; its only state is module-local caches (vocabulary, Zipf tables) of the thread that
// calls it, normally the host before boot.
import { at } from '../lib/at.ts';

/** mulberry32: a small, fast, seeded 32-bit PRNG. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded random source with the helpers the generators use. */
export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** [0, 1) */
  float(): number {
    return this.next();
  }
  /** integer in [0, n) */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** integer in [lo, hi] */
  range(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return at(xs, Math.floor(this.next() * xs.length));
  }
}

// ---- pseudo-English vocabulary -------------------------------------------------------------------

const ONSETS = [
  'b',
  'c',
  'd',
  'f',
  'g',
  'h',
  'j',
  'k',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'v',
  'w',
  'y',
  'z',
  'ch',
  'sh',
  'th',
  'st',
  'tr',
  'br',
  'pl',
  'gr',
  'qu',
  'fl',
  'cr',
  'sp',
  'wh',
  '',
] as const;
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'ou', 'io', 'y', 'ee', 'oo'] as const;
const CODAS = ['', '', 'n', 'r', 's', 't', 'l', 'm', 'nd', 'st', 'ck', 'ng', 'x', 'rd', 'th'] as const;

/** Real high-frequency words (with contractions) take the top ranks of the Zipf distribution. */
const COMMON = [
  'the',
  'of',
  'and',
  'to',
  'a',
  'in',
  'is',
  'it',
  'that',
  'was',
  'he',
  'for',
  'on',
  'are',
  'as',
  'with',
  'his',
  'they',
  'i',
  'at',
  'be',
  'this',
  'have',
  'from',
  'or',
  'one',
  'had',
  'by',
  'word',
  'but',
  'not',
  'what',
  'all',
  'were',
  'we',
  'when',
  'your',
  'can',
  'said',
  'there',
  'use',
  'an',
  'each',
  'which',
  'she',
  'do',
  'how',
  'their',
  'if',
  "don't",
  "it's",
  "i'm",
  "can't",
  "won't",
  "isn't",
  "o'clock",
  "they're",
  "we've",
  "you'll",
  "she'd",
  'will',
  'up',
  'other',
  'about',
  'out',
  'many',
  'then',
  'them',
  'these',
  'so',
];

export const VOCABULARY_SIZE = 4096;

function syllable(r: Rng): string {
  return r.pick(ONSETS) + r.pick(VOWELS) + r.pick(CODAS);
}

let vocabCache: string[] | undefined;
/** The fixed vocabulary (independent of any seed), most frequent first. */
export function vocabulary(): string[] {
  if (vocabCache) return vocabCache;
  const r = new Rng(0x5eed5eed);
  const seen = new Set<string>(COMMON);
  const words = [...COMMON];
  while (words.length < VOCABULARY_SIZE) {
    const n = r.chance(0.3) ? 1 : r.chance(0.6) ? 2 : 3;
    let w = '';
    for (let i = 0; i < n; i++) w += syllable(r);
    if (w.length < 2 || seen.has(w)) continue;
    seen.add(w);
    words.push(w);
  }
  vocabCache = words;
  return words;
}

/** A deterministic rare word for a tail index (proper names, jargon: the long tail of real text). */
function tailWord(idx: number): string {
  let x = idx;
  let w = '';
  const syl = 3 + (x % 2);
  x = Math.floor(x / 2);
  for (let i = 0; i < syl; i++) {
    w += at(ONSETS, x % ONSETS.length) + at(VOWELS, Math.floor(x / ONSETS.length) % VOWELS.length);
    x = Math.floor(x / (ONSETS.length * VOWELS.length)) + i * 7919 + idx;
    x = (Math.imul(x, 2654435761) >>> 0) % 1000003;
  }
  return w;
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');

interface EncodedWord {
  lower: Uint8Array;
  cap: Uint8Array;
  upper: Uint8Array;
}

let encodedCache: EncodedWord[] | undefined;
function encodedVocabulary(): EncodedWord[] {
  if (encodedCache) return encodedCache;
  encodedCache = vocabulary().map((w) => ({
    lower: enc(w),
    cap: enc(at(w, 0).toUpperCase() + w.slice(1)),
    upper: enc(w.toUpperCase()),
  }));
  return encodedCache;
}

let zipfCdf: Float64Array | undefined;
function cdf(): Float64Array {
  if (zipfCdf) return zipfCdf;
  const c = new Float64Array(VOCABULARY_SIZE);
  let sum = 0;
  for (let r = 0; r < VOCABULARY_SIZE; r++) {
    sum += 1 / (r + 1); // Zipf, s = 1
    c[r] = sum;
  }
  for (let r = 0; r < VOCABULARY_SIZE; r++) c[r] = at(c, r) / sum;
  zipfCdf = c;
  return c;
}

const GUIDE = 1 << 16;
let guideTable: Uint16Array | undefined;
/** guide[j] = first rank whose cumulative probability reaches j / GUIDE (a guide table for sampling). */
function guide(c: Float64Array): Uint16Array {
  if (guideTable) return guideTable;
  const g = new Uint16Array(GUIDE);
  let r = 0;
  for (let j = 0; j < GUIDE; j++) {
    while (r < c.length - 1 && at(c, r) < j / GUIDE) r++;
    g[j] = r;
  }
  guideTable = g;
  return g;
}

function zipfRank(c: Float64Array, g: Uint16Array, u: number): number {
  let r = at(g, Math.floor(u * GUIDE));
  while (r < c.length - 1 && at(c, r) < u) r++;
  return r;
}

const TAIL_WORDS = 1 << 21;

/**
 * English-like text of exactly `bytes` bytes: Zipf(s=1) words over a fixed vocabulary plus a long
 * tail of rare words (so the number of distinct words keeps growing with the size, as in real text),
 * sentences with capitals, occasional ALL-CAPS and mIxEd case, punctuation, quotes, contractions and
 * possessives, hyphenation, digits, a few non-ASCII (UTF-8) words, tabs, CRLF and blank lines.
 */
export function genZipfText(seed: number, bytes: number): Buffer {
  const r = new Rng(seed);
  const words = encodedVocabulary();
  const c = cdf();
  const gt = guide(c);
  const out = Buffer.allocUnsafe(bytes + 256);
  let n = 0;
  let col = 0;
  let sentenceStart = true;
  const put = (b: Uint8Array): void => {
    const k = b.length;
    for (let i = 0; i < k; i++) out[n + i] = at(b, i);
    n += k;
    col += k;
  };
  const putc = (ch: number): void => {
    out[n++] = ch;
    col++;
  };
  const tailCache = new Map<number, EncodedWord>();
  const extras = ['café', 'naïve', 'über', 'résumé'].map((w) => Buffer.from(w, 'utf8'));
  while (n < bytes) {
    // the word
    let w: EncodedWord;
    const u = r.float();
    if (u < 0.035) {
      const idx = r.int(TAIL_WORDS);
      let t = tailCache.get(idx);
      if (!t) {
        const s = tailWord(idx);
        t = { lower: enc(s), cap: enc(at(s, 0).toUpperCase() + s.slice(1)), upper: enc(s.toUpperCase()) };
        if (tailCache.size < 100_000) tailCache.set(idx, t);
      }
      w = t;
    } else {
      w = at(words, zipfRank(c, gt, r.float()));
    }
    const q = r.float();
    if (q < 0.004) {
      put(at(extras, r.int(extras.length)));
    } else if (q < 0.012) {
      // a number, or letters glued to digits ("abc123def")
      const num = String(r.int(100000));
      if (r.chance(0.3)) {
        put(w.lower);
        put(enc(num));
        put(at(words, r.int(200)).lower);
      } else put(enc(num));
    } else if (q < 0.016) {
      put(enc("'")); // leading apostrophe: "'tis"
      put(w.lower);
    } else if (q < 0.03) {
      put(w.upper);
    } else if (q < 0.035) {
      // mIxEd case
      const b = Uint8Array.from(w.lower);
      for (let i = 0; i < b.length; i += 2) if (at(b, i) >= 97 && at(b, i) <= 122) b[i] = at(b, i) - 32;
      put(b);
    } else {
      put(sentenceStart ? w.cap : w.lower);
    }
    sentenceStart = false;
    // what follows the word
    const f = r.float();
    if (f < 0.02) {
      put(enc("'s"));
    } else if (f < 0.025) {
      putc(0x27); // trailing apostrophe: "dogs'"
    }
    const g = r.float();
    if (g < 0.015) {
      putc(0x2d); // hyphenated compound: no space
      continue;
    } else if (g < 0.085) {
      putc(r.pick([0x2e, 0x2e, 0x2e, 0x21, 0x3f])); // . . . ! ?
      sentenceStart = true;
    } else if (g < 0.16) {
      putc(r.pick([0x2c, 0x2c, 0x2c, 0x3b, 0x3a])); // , ; :
    } else if (g < 0.17) {
      put(enc(r.pick(['"', ')', '(', ' --', '"'])));
    }
    // separator
    if (col > 60 + r.int(20)) {
      const s = r.float();
      if (s < 0.03) put(enc('\n\n'));
      else if (s < 0.05) put(enc('\r\n'));
      else putc(0x0a);
      col = 0;
    } else if (r.chance(0.01)) putc(0x09);
    else putc(0x20);
  }
  return out.subarray(0, bytes);
}

// ---- dpkg status -------------------------------------------------------------------------------

const SECTIONS = [
  'libs',
  'admin',
  'utils',
  'net',
  'devel',
  'python',
  'perl',
  'x11',
  'gnome',
  'kde',
  'text',
  'fonts',
  'sound',
  'video',
  'editors',
  'shells',
  'interpreters',
  'misc',
  'doc',
  'web',
  'mail',
  'database',
  'libdevel',
  'kernel',
  'science',
  'graphics',
  'localization',
] as const;
const MAINTAINERS = [
  'Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>',
  'Debian QA Group <packages@qa.debian.org>',
  'Matthias Klose <doko@debian.org>',
  'Jérémy Bobbio <lunar@debian.org>',
  'Guillem Jover <guillem@debian.org>',
  'Debian Python Team <team+python@tracker.debian.org>',
  'Debian X Strike Force <debian-x@lists.debian.org>',
  'Ondřej Surý <ondrej@debian.org>',
  'Josué Ortega <josue@debian.org>',
  'Debian Perl Group <pkg-perl-maintainers@lists.alioth.debian.org>',
  'GNOME Maintainers <pkg-gnome-maintainers@lists.alioth.debian.org>',
  'Håkon Løvdal <hlovdal@example.org>',
] as const;
const PRIORITIES = ['optional', 'optional', 'optional', 'important', 'required', 'standard', 'extra'] as const;

function dpkgName(r: Rng): string {
  const base = syllable(r) + (r.chance(0.5) ? syllable(r) : '');
  const k = r.float();
  if (k < 0.3) return `lib${base}${r.range(0, 9)}${r.chance(0.2) ? 'v5' : ''}`;
  if (k < 0.4) return `lib${base}-dev`;
  if (k < 0.5) return `python3-${base}`;
  if (k < 0.55) return `fonts-${base}`;
  if (k < 0.6) return `${base}-common`;
  if (k < 0.65) return `${base}-data`;
  if (k < 0.68) return `gir1.2-${base}-1.0`;
  if (k < 0.7) return `lib${base}-perl`;
  return base;
}

function version(r: Rng): string {
  const epoch = r.chance(0.1) ? `${r.range(1, 3)}:` : '';
  const up = `${r.range(0, 12)}.${r.range(0, 40)}${r.chance(0.5) ? '.' + r.range(0, 30) : ''}`;
  const suffix = r.chance(0.2) ? `+dfsg${r.chance(0.5) ? '1' : ''}` : r.chance(0.1) ? `~rc${r.range(1, 4)}` : '';
  const rev = r.chance(0.9) ? `-${r.range(1, 9)}${r.chance(0.4) ? `ubuntu${r.range(1, 5)}` : ''}` : '';
  return epoch + up + suffix + rev;
}

function depList(r: Rng, names: string[], max: number): string {
  const n = r.range(1, max);
  const deps: string[] = [];
  for (let i = 0; i < n && names.length > 0; i++) {
    const d = at(names, r.int(names.length));
    const v = r.float();
    let dep = v < 0.4 ? `${d} (>= ${version(r)})` : v < 0.45 ? `${d} (= ${version(r)})` : d;
    if (r.chance(0.1) && names.length > 1) dep += ` | ${at(names, r.int(names.length))}`;
    deps.push(dep);
  }
  return deps.join(', ');
}

function sentence(r: Rng, words: number): string {
  const v = vocabulary();
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(at(v, Math.min(v.length - 1, Math.floor(Math.exp(r.float() * 8)))));
  return out.join(' ');
}

function md5hex(r: Rng): string {
  let s = '';
  for (let i = 0; i < 4; i++) s += (r.int(2 ** 32) >>> 0).toString(16).padStart(8, '0');
  return s;
}

/**
 * A realistic /var/lib/dpkg/status of `packages` stanzas (fields in dpkg's order, multi-line
 * Descriptions with " ." paragraph separators, Conffiles lists, UTF-8 maintainer names). A few packages
 * carry a very large Conffiles list (100-400 KiB of text), so their record buffers outgrow the mmap
 * threshold: one such package is always present when packages >= 30.
 */
export function genDpkgStatus(seed: number, packages: number): Buffer {
  const r = new Rng(seed ^ 0x0dbc5eed);
  const names: string[] = [];
  const seen = new Set<string>();
  const parts: string[] = [];
  const bigAt = packages >= 30 ? Math.floor(packages / 3) : -1;
  for (let i = 0; i < packages; i++) {
    let name = dpkgName(r);
    while (seen.has(name)) name += r.chance(0.5) ? `${r.range(0, 9)}` : '-bin';
    seen.add(name);
    const L: string[] = [];
    L.push(`Package: ${name}`);
    const st = r.float();
    L.push(
      `Status: ${st < 0.93 ? 'install ok installed' : st < 0.97 ? 'deinstall ok config-files' : 'hold ok installed'}`,
    );
    L.push(`Priority: ${r.pick(PRIORITIES)}`);
    L.push(`Section: ${r.pick(SECTIONS)}`);
    L.push(`Installed-Size: ${r.range(8, 200000)}`);
    L.push(`Maintainer: ${r.pick(MAINTAINERS)}`);
    L.push(`Architecture: ${r.chance(0.7) ? 'amd64' : 'all'}`);
    if (r.chance(0.3)) L.push(`Multi-Arch: ${r.pick(['same', 'foreign', 'allowed'])}`);
    if (r.chance(0.35))
      L.push(`Source: ${name.replace(/^lib|-dev$|-common$|-data$/g, '')}${r.chance(0.2) ? ` (${version(r)})` : ''}`);
    L.push(`Version: ${version(r)}`);
    if (names.length > 0) {
      if (r.chance(0.1)) L.push(`Replaces: ${depList(r, names, 2)}`);
      if (r.chance(0.1)) L.push(`Provides: ${depList(r, names, 2)}`);
      if (r.chance(0.8)) L.push(`Depends: ${depList(r, names, 8)}`);
      if (r.chance(0.1)) L.push(`Pre-Depends: ${depList(r, names, 2)}`);
      if (r.chance(0.3)) L.push(`Recommends: ${depList(r, names, 4)}`);
      if (r.chance(0.2)) L.push(`Suggests: ${depList(r, names, 4)}`);
      if (r.chance(0.08)) L.push(`Breaks: ${depList(r, names, 3)}`);
      if (r.chance(0.05)) L.push(`Conflicts: ${depList(r, names, 2)}`);
    }
    const big = i === bigAt || r.chance(1 / 400);
    if (big || r.chance(0.15)) {
      L.push('Conffiles:');
      const n = big ? r.range(1500, 5000) : r.range(1, 12);
      const dir = `/etc/${name}`;
      for (let k = 0; k < n; k++) {
        const sub = big ? `/${syllable(r)}.d/${syllable(r)}${k}` : `/${syllable(r)}`;
        L.push(` ${dir}${sub}.conf ${md5hex(r)}${r.chance(0.02) ? ' obsolete' : ''}`);
      }
    }
    L.push(`Description: ${sentence(r, r.range(3, 8))}`);
    const paras = r.range(1, 3);
    for (let p = 0; p < paras; p++) {
      if (p > 0) L.push(' .');
      const lines = r.range(1, 5);
      for (let k = 0; k < lines; k++) L.push(` ${sentence(r, r.range(6, 12))}`);
      if (r.chance(0.1)) L.push(`  * ${sentence(r, 4)}`);
    }
    if (r.chance(0.5)) L.push(`Homepage: https://www.${name.replace(/[^a-z0-9]/g, '')}.org/`);
    if (r.chance(0.3)) L.push(`Original-Maintainer: ${r.pick(MAINTAINERS)}`);
    parts.push(L.join('\n') + '\n\n');
    names.push(name);
  }
  return Buffer.from(parts.join(''), 'utf8');
}
