// word_count: Phoenix's word_count-pthread (phoenix-2.0/tests/word_count/word_count-pthread.c) on the
// emulated machine.
//
//   argv = [path, --top N (default 10), --threads T (default 2)]
//
// The file is opened, its size taken with fstat and the whole file mmapped MAP_PRIVATE/PROT_READ.
// It is split into T chunks that end at whitespace (Phoenix's splitter; the last chunk takes the rest).
// T-1 threads are started with pthread_create('map', task) where `task` is the VA of a struct wc_task in
// emulated memory; the main thread maps the last chunk itself, then joins the others (a CPU runs one
// user thread and threads are not preempted, so main must not sit in join while holding work).
//
// Words: toupper each byte (C locale); a word starts at A-Z and continues while A-Z or '\''.
// Each thread keeps its (word, count) table in emulated memory: an array of
//   struct wc_count { char *word; u32 count; u32 hash; }          (16 bytes)
// starting at Phoenix's START_ARRAY_SIZE entries and doubled with realloc when full, plus an open-
// addressing index of u32 (entry + 1) slots, also grown with realloc. Big tables thus become mmapped
// chunks that grow by mremap. Words are copied (malloc'd, NUL-terminated, upper case) because the file
// mapping is read-only. Main merges the other tables into its own (freeing duplicate strings that other
// threads allocated), sorts with qsort (count desc, strcmp asc), prints the top N like Phoenix and
// reports the whole table read back from emulated memory. User space: no kernel lock; the only lock is
// libc's arena lock (taken inside malloc/realloc/free). A thread's table is written only by it until main
// joins it; only then does main read, merge and free it.
import { MAP_PRIVATE, O_RDONLY, PROT_READ } from '../../uapi/abi.ts';
import { UserSignal, type Program, type UserContext } from '../../uapi/program.ts';
import { Libc, SIGABRT } from '../libc.ts';
import { at } from '../../lib/at.ts';

const START_ARRAY_SIZE = 2000;
const START_INDEX_SIZE = 4096;

// struct wc_count
const ENTRY = 16;
const E_WORD = 0;
const E_COUNT = 8;
const E_HASH = 12;

// struct wc_task
const T_LIBC = 0; //      u64 libc arena state (for Libc.attach)
const T_DATA = 8; //      u64 chunk start
const T_LEN = 16; //      u64 chunk length
const T_NUM = 24; //      u32 thread number
const T_DONE = 28; //     u32 set to 1 when the table is complete
const T_ENTRIES = 32; //  u64 struct wc_count *
const T_USED = 40; //     u32
const T_CAP = 44; //      u32
const T_INDEX = 48; //    u64 u32 *
const T_INDEX_CAP = 56; // u32
const T_TOTAL = 64; //    u64 words seen
const TASK_SIZE = 72;

/** Out of memory deep inside the table code: abort(), as a C program's xmalloc would. */
const oom = (): never => {
  throw new UserSignal(SIGABRT, 0, 'word_count: out of memory');
};

const fnv1aStep = (h: number, b: number): number => Math.imul(h ^ b, 0x01000193) >>> 0;
const FNV_OFFSET = 0x811c9dc5;

/** A thread's word table; the fields live in its wc_task and are cached here while the owner works. */
class WordTable {
  entries = 0;
  used = 0;
  cap = 0;
  index = 0;
  indexCap = 0;
  total = 0;

  constructor(
    private readonly libc: Libc,
    readonly task: number,
  ) {}

  static create(libc: Libc, task: number): WordTable {
    const t = new WordTable(libc, task);
    t.cap = START_ARRAY_SIZE;
    t.entries = libc.malloc(t.cap * ENTRY);
    t.indexCap = START_INDEX_SIZE;
    t.index = libc.calloc(t.indexCap, 4);
    if (t.entries === 0 || t.index === 0) oom();
    return t;
  }

  static load(libc: Libc, task: number): WordTable {
    const m = libc.mmu;
    const t = new WordTable(libc, task);
    t.entries = m.load64(task + T_ENTRIES);
    t.used = m.load32(task + T_USED);
    t.cap = m.load32(task + T_CAP);
    t.index = m.load64(task + T_INDEX);
    t.indexCap = m.load32(task + T_INDEX_CAP);
    t.total = m.load64(task + T_TOTAL);
    return t;
  }

  flush(): void {
    const m = this.libc.mmu;
    m.store64(this.task + T_ENTRIES, this.entries);
    m.store32(this.task + T_USED, this.used);
    m.store32(this.task + T_CAP, this.cap);
    m.store64(this.task + T_INDEX, this.index);
    m.store32(this.task + T_INDEX_CAP, this.indexCap);
    m.store64(this.task + T_TOTAL, this.total);
  }

  /**
   * Adds `count` occurrences of word[0..len). When the word is new, its entry points at `wordVa` if
   * given (ownership moves to this table), else at a fresh malloc'd copy. Returns true if it was new.
   */
  add(word: Uint8Array, len: number, hash: number, count: number, wordVa = 0): boolean {
    const m = this.libc.mmu;
    const mask = this.indexCap - 1;
    let slot = hash & mask;
    for (;;) {
      const v = m.load32(this.index + slot * 4);
      if (v === 0) break;
      const e = this.entries + (v - 1) * ENTRY;
      if (m.load32(e + E_HASH) === hash && this.libc.strcmpBytes(m.load64(e + E_WORD), word, len) === 0) {
        m.store32(e + E_COUNT, m.load32(e + E_COUNT) + count);
        return false;
      }
      slot = (slot + 1) & mask;
    }
    let w = wordVa;
    if (w === 0) {
      w = this.libc.malloc(len + 1);
      if (w === 0) oom();
      m.write(w, word, 0, len);
      m.store8(w + len, 0);
    }
    if (this.used === this.cap) {
      const ncap = this.cap * 2;
      const ne = this.libc.realloc(this.entries, ncap * ENTRY);
      if (ne === 0) oom();
      this.entries = ne;
      this.cap = ncap;
    }
    const e = this.entries + this.used * ENTRY;
    m.store64(e + E_WORD, w);
    m.store32(e + E_COUNT, count);
    m.store32(e + E_HASH, hash);
    m.store32(this.index + slot * 4, this.used + 1);
    this.used++;
    if (this.used * 2 > this.indexCap) this.rehash(this.indexCap * 2);
    return true;
  }

  /** Grows the index with realloc and rebuilds it from the entries' hashes (bulk read + bulk write). */
  private rehash(ncap: number): void {
    const libc = this.libc;
    const ni = libc.realloc(this.index, ncap * 4);
    if (ni === 0) oom();
    const ents = new Uint8Array(this.used * ENTRY);
    libc.mmu.read(this.entries, ents);
    const ev = new DataView(ents.buffer);
    const slots = new Uint8Array(ncap * 4);
    const sv = new DataView(slots.buffer);
    const mask = ncap - 1;
    for (let i = 0; i < this.used; i++) {
      let s = ev.getUint32(i * ENTRY + E_HASH, true) & mask;
      while (sv.getUint32(s * 4, true) !== 0) s = (s + 1) & mask;
      sv.setUint32(s * 4, i + 1, true);
    }
    libc.mmu.write(ni, slots);
    this.index = ni;
    this.indexCap = ncap;
  }
}

/** wordcount_map: tokenise a chunk of the mapped file into the task's table. */
function mapChunk(libc: Libc, task: number): void {
  const m = libc.mmu;
  const data = m.load64(task + T_DATA);
  const len = m.load64(task + T_LEN);
  const table = WordTable.create(libc, task);
  const BLOCK = 64 * 1024;
  const blk = new Uint8Array(BLOCK);
  let word = new Uint8Array(64);
  let wlen = 0;
  let hash = FNV_OFFSET;
  let inWord = false;
  let total = 0;
  for (let off = 0; off < len; off += BLOCK) {
    const k = Math.min(BLOCK, len - off);
    m.read(data + off, blk, 0, k);
    for (let i = 0; i < k; i++) {
      let c = blk[i] ?? 0;
      if (c >= 0x61 && c <= 0x7a) c -= 0x20;
      const letter = c >= 0x41 && c <= 0x5a;
      if (inWord) {
        if (letter || c === 0x27) {
          if (wlen === word.length) {
            const w2 = new Uint8Array(word.length * 2);
            w2.set(word);
            word = w2;
          }
          word[wlen++] = c;
          hash = fnv1aStep(hash, c);
        } else {
          table.add(word, wlen, hash, 1);
          total++;
          inWord = false;
        }
      } else if (letter) {
        inWord = true;
        word[0] = c;
        wlen = 1;
        hash = fnv1aStep(FNV_OFFSET, c);
      }
    }
  }
  if (inWord) {
    table.add(word, wlen, hash, 1);
    total++;
  }
  table.total = total;
  table.flush();
  m.store32(task + T_DONE, 1);
}

/** Merges task `src`'s table into `dst`; frees src's arrays and its strings that dst already had. */
function mergeInto(libc: Libc, dst: WordTable, src: WordTable): void {
  const m = libc.mmu;
  const ents = new Uint8Array(src.used * ENTRY);
  if (src.used > 0) m.read(src.entries, ents);
  const ev = new DataView(ents.buffer);
  for (let i = 0; i < src.used; i++) {
    const w = ev.getUint32(i * ENTRY + E_WORD, true) + ev.getUint32(i * ENTRY + E_WORD + 4, true) * 2 ** 32;
    const count = ev.getUint32(i * ENTRY + E_COUNT, true);
    const hash = ev.getUint32(i * ENTRY + E_HASH, true);
    const bytes = libc.cstringBytes(w);
    if (!dst.add(bytes, bytes.length, hash, count, w)) libc.free(w);
  }
  dst.total += src.total;
  libc.free(src.entries);
  libc.free(src.index);
  src.entries = 0;
  src.index = 0;
  src.used = 0;
  src.flush();
}

interface Options {
  path: string;
  top: number;
  threads: number;
}

function parseArgs(argv: string[]): Options | string {
  if (argv.length < 1 || at(argv, 0).startsWith('--')) return 'missing input path';
  const o: Options = { path: at(argv, 0), top: 10, threads: 2 };
  for (let i = 1; i < argv.length; i++) {
    const a = at(argv, i);
    let name = a;
    let val: string | undefined;
    const eq = a.indexOf('=');
    if (eq > 0) {
      name = a.slice(0, eq);
      val = a.slice(eq + 1);
    } else val = argv[++i];
    const n = Number(val);
    if (val === undefined || !Number.isInteger(n) || n <= 0) return `bad value for ${name}: ${String(val)}`;
    if (name === '--top') o.top = n;
    else if (name === '--threads') o.threads = n;
    else return `unknown option ${name}`;
  }
  return o;
}

const isSplitSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;

function main(u: UserContext, argv: string[]): number {
  const libc = Libc.init(u);
  const m = u.mmu;
  const opts = parseArgs(argv);
  if (typeof opts === 'string') {
    libc.dprintf(2, 'word_count: %s\nUSAGE: word_count <filename> [--top N] [--threads T]\n', opts);
    return 2;
  }
  libc.printf('Wordcount: Running...\n');

  const fd = u.sys.open(opts.path, O_RDONLY);
  if (fd < 0) {
    libc.dprintf(2, 'word_count: open %s failed: %d\n', opts.path, fd);
    return 1;
  }
  const size = libc.fileSize(fd);
  if (size < 0) {
    libc.dprintf(2, 'word_count: fstat failed: %d\n', size);
    return 1;
  }
  let fdata = 0;
  if (size > 0) {
    fdata = u.sys.mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (fdata < 0) {
      libc.dprintf(2, 'word_count: mmap failed: %d\n', fdata);
      return 1;
    }
  }

  // wordcount_splitter: T tasks ending at whitespace
  const T = opts.threads;
  const tasks = libc.malloc(T * 8);
  const req = Math.floor(size / T);
  let pos = 0;
  for (let i = 0; i < T; i++) {
    const task = libc.calloc(1, TASK_SIZE);
    if (task === 0 || tasks === 0) {
      libc.dprintf(2, 'word_count: out of memory\n');
      return 1;
    }
    m.store64(tasks + i * 8, task);
    let end = size;
    if (i < T - 1) {
      end = Math.min(size, pos + req);
      while (end < size && !isSplitSpace(m.load8(fdata + end))) end++;
    }
    m.store64(task + T_LIBC, libc.stateVa);
    m.store64(task + T_DATA, fdata + pos);
    m.store64(task + T_LEN, end - pos);
    m.store32(task + T_NUM, i);
    pos = end;
  }
  const threads: number[] = [];
  for (let i = 0; i < T - 1; i++) {
    const pt = libc.pthreadCreate('map', m.load64(tasks + i * 8));
    if (pt < 0) {
      libc.dprintf(2, 'word_count: clone failed: %d\n', pt);
      return 1;
    }
    threads.push(pt);
  }
  const mine = m.load64(tasks + (T - 1) * 8);
  mapChunk(libc, mine);
  for (const pt of threads) {
    const tid = libc.pthreadTid(pt);
    const r = libc.pthreadJoin(pt);
    if (r !== 0) {
      libc.dprintf(2, 'word_count: thread %d returned %d\n', tid, r);
      return 1;
    }
  }

  // merge into main's table
  const table = WordTable.load(libc, mine);
  for (let i = 0; i < T - 1; i++) {
    const task = m.load64(tasks + i * 8);
    if (m.load32(task + T_DONE) !== 1) {
      libc.dprintf(2, 'word_count: thread %d did not finish its table\n', i);
      return 1;
    }
    mergeInto(libc, table, WordTable.load(libc, task));
  }
  libc.free(table.index);
  table.index = 0;
  table.indexCap = 0;
  table.flush();

  // sort: count descending, then strcmp ascending
  libc.qsort(table.entries, table.used, ENTRY, (a, b) => {
    const ca = m.load32(a + E_COUNT);
    const cb = m.load32(b + E_COUNT);
    if (ca !== cb) return cb - ca;
    return libc.strcmp(m.load64(a + E_WORD), m.load64(b + E_WORD));
  });

  const dn = Math.min(opts.top, table.used);
  libc.printf('Wordcount: Results (TOP %d of %lu):\n', dn, table.used);
  for (let i = 0; i < dn; i++) {
    const e = table.entries + i * ENTRY;
    libc.printf('%15s - %d\n', m.load64(e + E_WORD), m.load32(e + E_COUNT));
  }

  // read the whole table back for the report, and free it
  const ents = new Uint8Array(table.used * ENTRY);
  if (table.used > 0) m.read(table.entries, ents);
  const ev = new DataView(ents.buffer);
  const words: Array<[string, number]> = [];
  let totalWords = 0;
  for (let i = 0; i < table.used; i++) {
    const w = ev.getUint32(i * ENTRY + E_WORD, true) + ev.getUint32(i * ENTRY + E_WORD + 4, true) * 2 ** 32;
    const c = ev.getUint32(i * ENTRY + E_COUNT, true);
    words.push([libc.cstring(w), c]);
    totalWords += c;
    libc.free(w);
  }
  // scanned: words the map threads tokenised (equals totalWords unless counts were lost)
  u.report({ kind: 'word_count', words, totalWords, uniqueWords: table.used, scanned: table.total });

  libc.free(table.entries);
  for (let i = 0; i < T; i++) libc.free(m.load64(tasks + i * 8));
  libc.free(tasks);
  if (fdata !== 0) u.sys.munmap(fdata, size);
  u.sys.close(fd);
  libc.release();
  return 0;
}

function mapThread(u: UserContext, task: number): number {
  const libc = Libc.attach(u, u.mmu.load64(task + T_LIBC));
  mapChunk(libc, task);
  libc.release();
  return 0;
}

export const wordCount: Program = {
  name: 'word_count',
  main,
  threads: { map: mapThread },
};
