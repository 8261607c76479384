// dpkg-status: dpkg's status-database rewrite on the emulated machine.
//
//   argv = [inPath, outPath]
//
// Reads the status file (open + fstat + read into a malloc'd buffer, as dpkg's parsedb does), parses
// it line by line into records -- stanzas of "Field: value" lines, continuation lines starting with a
// space or tab, separated by blank lines -- and keeps each record's exact text in a dpkg-style varbuf:
//   struct varbuf { char *buf; u64 used; u64 size; }  grown by realloc to (size + need) * 2
// so a big record's buffer crosses the mmap threshold and then grows by mremap. Records partition the
// input: record 0 starts at offset 0, record i > 0 at the first line of stanza i, and a record owns the
// blank lines that follow its stanza. The record pointers are kept in an array that is also grown with
// realloc. Then every record is written back through the kernel (open(outPath, O_WRONLY|O_CREAT|O_TRUNC)
// + write), reproducing the input byte for byte.
//
// Report: { kind: 'dpkg-status', records, bytes, recordOffsets, fields, packages }.
// One thread, user space: it takes no kernel lock; libc's malloc takes the arena lock itself.
import { O_CREAT, O_TRUNC, O_WRONLY } from '../../uapi/abi.ts';
import { UserSignal, type Program, type UserContext } from '../../uapi/program.ts';
import { Libc, SIGABRT } from '../libc.ts';

// struct record (a varbuf plus where the record came from)
const R_BUF = 0;
const R_USED = 8;
const R_SIZE = 16;
const R_OFFSET = 24;
const R_FIELDS = 32; // u32 number of "Field:" lines
const RECORD_SIZE = 40;

const VARBUF_START = 128;
const RECORDS_START = 16;

const oom = (): never => {
  throw new UserSignal(SIGABRT, 0, 'dpkg-status: out of memory');
};

/** A record being filled: the varbuf fields are kept here and stored into the struct when done. */
class Record {
  buf: number;
  used = 0;
  size = VARBUF_START;
  fields = 0;

  constructor(
    private readonly libc: Libc,
    readonly va: number,
    readonly offset: number,
  ) {
    this.buf = libc.malloc(this.size);
    if (this.buf === 0) oom();
  }

  /** varbuf_add_buf: append n bytes from emulated memory at src (dpkg's varbuf_grow policy). */
  add(src: number, n: number): void {
    if (this.size - this.used < n) {
      this.size = (this.size + n) * 2;
      const nb = this.libc.realloc(this.buf, this.size);
      if (nb === 0) oom();
      this.buf = nb;
    }
    this.libc.memcpy(this.buf + this.used, src, n);
    this.used += n;
  }

  finish(): void {
    const m = this.libc.mmu;
    m.store64(this.va + R_BUF, this.buf);
    m.store64(this.va + R_USED, this.used);
    m.store64(this.va + R_SIZE, this.size);
    m.store64(this.va + R_OFFSET, this.offset);
    m.store32(this.va + R_FIELDS, this.fields);
  }
}

const isBlank = (b: Uint8Array, s: number, e: number): boolean => {
  for (let i = s; i < e; i++) {
    const c = b[i] ?? 0;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
};

function main(u: UserContext, argv: string[]): number {
  const libc = Libc.init(u);
  const m = u.mmu;
  if (argv.length < 2) {
    libc.dprintf(2, 'USAGE: dpkg-status <in> <out>\n');
    return 2;
  }
  const [inPath, outPath] = argv as [string, string];
  const input = libc.readWholeFile(inPath);
  if (typeof input === 'number') {
    libc.dprintf(2, 'dpkg-status: cannot read %s: %d\n', inPath, input);
    return 1;
  }
  const { va: inVa, size } = input;
  // the parser's view of the input (bulk read, one translation per page)
  const text = new Uint8Array(size);
  if (size > 0) m.read(inVa, text);

  let cap = RECORDS_START;
  let recs = libc.malloc(cap * 8);
  if (recs === 0) oom();
  let n = 0;
  const offsets: number[] = [];
  let packages = 0;
  let totalFields = 0;

  let cur: Record | undefined;
  const startRecord = (offset: number): Record => {
    if (cur) cur.finish();
    const va = libc.calloc(1, RECORD_SIZE);
    if (va === 0) oom();
    if (n === cap) {
      cap *= 2;
      const nr = libc.realloc(recs, cap * 8);
      if (nr === 0) oom();
      recs = nr;
    }
    m.store64(recs + n * 8, va);
    n++;
    offsets.push(offset);
    cur = new Record(libc, va, offset);
    return cur;
  };

  let inStanza = false;
  let seenStanza = false;
  let pos = 0;
  while (pos < size) {
    const nl = text.indexOf(0x0a, pos);
    const end = nl < 0 ? size : nl + 1;
    let rec = cur ?? startRecord(0);
    if (isBlank(text, pos, end)) {
      inStanza = false;
    } else {
      if (!inStanza && seenStanza) rec = startRecord(pos);
      inStanza = true;
      seenStanza = true;
      const c = text[pos] ?? 0;
      if (c !== 0x20 && c !== 0x09) {
        // "Field: value"
        rec.fields++;
        totalFields++;
        if (end - pos > 8 && Buffer.from(text.buffer, pos, 8).toString('latin1') === 'Package:') packages++;
      }
    }
    rec.add(inVa + pos, end - pos);
    pos = end;
  }
  if (cur) cur.finish();
  libc.free(inVa);

  // write everything back
  const fd = u.sys.open(outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644);
  if (fd < 0) {
    libc.dprintf(2, 'dpkg-status: cannot open %s: %d\n', outPath, fd);
    return 1;
  }
  let total = 0;
  for (let i = 0; i < n; i++) {
    const r = m.load64(recs + i * 8);
    const buf = m.load64(r + R_BUF);
    const used = m.load64(r + R_USED);
    const w = libc.writeAll(fd, buf, used);
    if (w < 0) {
      libc.dprintf(2, 'dpkg-status: write failed: %d\n', w);
      u.sys.close(fd);
      return 1;
    }
    total += used;
  }
  u.sys.close(fd);

  for (let i = 0; i < n; i++) {
    const r = m.load64(recs + i * 8);
    libc.free(m.load64(r + R_BUF));
    libc.free(r);
  }
  libc.free(recs);
  u.report({ kind: 'dpkg-status', records: n, bytes: total, recordOffsets: offsets, fields: totalFields, packages });
  libc.release();
  return 0;
}

export const dpkgStatus: Program = {
  name: 'dpkg-status',
  main,
};
