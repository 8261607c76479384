// Tests for src/storage/server.ts: the storage component S driven directly through Storage.handle
// with fake fabric requests (no workers, no shared memory).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import msgpack from 'msgpack-lite';
import { Storage, kMaxFds } from '../src/storage/server.ts';
import { MalformedMessage, type IncomingRequest, type Mailbox, type ReplyWriter } from '../src/fabric/ibapi.ts';
import type { z } from 'zod';
import { M2S_READ, P2S_CLOSE, P2S_LSEEK, P2S_OPEN, P2S_READ, P2S_STAT, P2S_WRITE } from '../src/fabric/opcodes.ts';
import type { LseekReply, StatReply } from '../src/fabric/proto.ts';
import type { WorkerMsg } from '../src/kernel/workerdata.ts';
import {
  EBADF,
  EEXIST,
  EINVAL,
  EISDIR,
  EMFILE,
  ENOENT,
  ENOSYS,
  ENOTDIR,
  EROFS,
  ESPIPE,
  O_APPEND,
  O_CREAT,
  O_EXCL,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  PAGE_SIZE,
  S_IFCHR,
  S_IFREG,
  SEEK_CUR,
  SEEK_END,
  SEEK_SET,
} from '../src/uapi/abi.ts';

const MEMORY_CTX = 9;
const CPU_CTX = 0;
const enc = new TextEncoder();
const dec = new TextDecoder();

interface Captured {
  status: number;
  aux: number;
  body: unknown;
  page: Uint8Array | null;
}
type LogLine = { level: string; msg: string };

function request(
  opcode: number,
  body: unknown,
  opts: { pid?: number; src?: number; data?: Uint8Array } = {},
): IncomingRequest {
  const page = new Uint8Array(PAGE_SIZE);
  if (opts.data) page.set(opts.data);
  // Round-trip through msgpack so the handler sees what the fabric would decode.
  const encoded = body === undefined ? undefined : msgpack.encode(body);
  const mbox = { page } as unknown as Mailbox;
  return {
    src: opts.src ?? CPU_CTX,
    opcode,
    pid: opts.pid ?? 1,
    flags: 0,
    vaddr: 0,
    shm: 0,
    mbox,
    hasPage: opts.data !== undefined,
    bodyLen: encoded?.length ?? 0,
    body: <T>(schema: z.ZodType<T>): T => {
      if (!encoded) throw new MalformedMessage('test request', 'no payload');
      const r = schema.safeParse(msgpack.decode(encoded));
      if (!r.success) throw new MalformedMessage('test request', r.error.message);
      return r.data;
    },
  };
}

function writer(): { out: ReplyWriter; got: () => Captured } {
  let c: Captured | undefined;
  return {
    out: {
      reply(status, aux = 0, body, page) {
        if (c) throw new Error('replied twice');
        // The fabric copies the page raw and the body through msgpack: do the same.
        c = {
          status,
          aux,
          body: body === undefined ? undefined : msgpack.decode(msgpack.encode(body)),
          page: page ? page.slice() : null,
        };
      },
    },
    got: () => {
      if (!c) throw new Error('no reply');
      return c;
    },
  };
}

/** every harness, so the host fds they cache are released after each test */
const harnesses: Harness[] = [];
afterEach(() => {
  for (const x of harnesses.splice(0)) x.s.flushAll();
});

class Harness {
  readonly posted: WorkerMsg[] = [];
  readonly logs: LogLine[] = [];
  readonly s: Storage;
  constructor(memFiles: Record<string, Uint8Array> = {}, filesDir?: string) {
    this.s = new Storage({
      memFiles,
      filesDir,
      post: (m) => this.posted.push(m),
      log: (level, msg) => this.logs.push({ level, msg }),
    });
    harnesses.push(this);
  }
  call(opcode: number, body: unknown, opts: { pid?: number; src?: number; data?: Uint8Array } = {}): Captured {
    const w = writer();
    const src = opts.src ?? CPU_CTX;
    this.s.handle(request(opcode, body, { ...opts, src }), w.out, src === MEMORY_CTX);
    return w.got();
  }
  open(p: string, flags: number, pid = 1): number {
    return this.call(P2S_OPEN, { path: p, flags, mode: 0o644 }, { pid }).status;
  }
  read(fd: number, count: number, pid = 1): { n: number; aux: number; data: Uint8Array; page: Uint8Array | null } {
    const r = this.call(P2S_READ, { fd, count }, { pid });
    return {
      n: r.status,
      aux: r.aux,
      data: r.page ? r.page.subarray(0, Math.max(r.status, 0)) : new Uint8Array(0),
      page: r.page,
    };
  }
  readAll(fd: number, chunk = PAGE_SIZE, pid = 1): Uint8Array {
    const parts: Uint8Array[] = [];
    for (;;) {
      const r = this.read(fd, chunk, pid);
      if (r.n < 0) throw new Error(`read: ${r.n}`);
      if (r.n === 0) break;
      parts.push(r.data.slice());
    }
    return Buffer.concat(parts);
  }
  write(fd: number, data: Uint8Array | string, pid = 1): number {
    const bytes = typeof data === 'string' ? enc.encode(data) : data;
    return this.call(P2S_WRITE, { fd, count: bytes.length }, { pid, data: bytes }).status;
  }
  close(fd: number, pid = 1): number {
    return this.call(P2S_CLOSE, { fd }, { pid }).status;
  }
  stat(fd: number, pid = 1): { status: number; st: StatReply | undefined } {
    const r = this.call(P2S_STAT, { fd }, { pid });
    return { status: r.status, st: r.body as StatReply | undefined };
  }
  lseek(fd: number, offset: number, whence: number, pid = 1): number {
    const r = this.call(P2S_LSEEK, { fd, offset, whence }, { pid });
    return r.status < 0 ? r.status : (r.body as LseekReply).ret;
  }
  m2s(p: string, offset: number): Captured {
    return this.call(M2S_READ, { path: p, offset }, { src: MEMORY_CTX });
  }
  files(): Array<{ path: string; text: string }> {
    return this.posted.flatMap((m) => (m.type === 'file' ? [{ path: m.path, text: dec.decode(m.data) }] : []));
  }
}

/** deterministic bytes: i-th byte of a file */
const patternByte = (i: number): number => (i * 7 + (i >> 8)) & 0xff;
const pattern = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => patternByte(i));

let tmp: string;
const HOST_SIZE = 3 * PAGE_SIZE + 123;
const hostBytes = pattern(HOST_SIZE);

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'splitkern-storage-'));
  fs.writeFileSync(path.join(tmp, 'big.bin'), hostBytes);
  fs.writeFileSync(path.join(tmp, 'small.txt'), 'host file\n');
  fs.mkdirSync(path.join(tmp, 'dir'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('in-memory files', () => {
  const input = enc.encode('hello, split kernel\n');
  let h: Harness;
  beforeEach(() => {
    h = new Harness({ '/splitkern/input/hello.txt': input }, tmp);
  });

  it('open, read and EOF', () => {
    const fd = h.open('/splitkern/input/hello.txt', O_RDONLY);
    expect(fd).toBe(3);
    const r = h.read(fd, 5);
    expect(r.n).toBe(5);
    expect(r.aux).toBe(5);
    expect(dec.decode(r.data)).toBe('hello');
    expect(r.page!.length).toBe(PAGE_SIZE);
    const rest = h.read(fd, PAGE_SIZE);
    expect(dec.decode(rest.data)).toBe(', split kernel\n');
    expect(rest.page!.subarray(rest.n).every((b) => b === 0)).toBe(true);
    expect(h.read(fd, PAGE_SIZE).n).toBe(0);
    expect(h.read(fd, PAGE_SIZE).n).toBe(0);
    expect(h.close(fd)).toBe(0);
    expect(h.posted).toEqual([]); // nothing written: nothing to hand back
  });

  it('normalizes paths and rejects bad counts', () => {
    const fd = h.open('/splitkern//input/../input/./hello.txt', O_RDONLY);
    expect(fd).toBe(3);
    expect(h.read(fd, PAGE_SIZE + 1).n).toBe(-EINVAL);
    expect(h.read(fd, -1).n).toBe(-EINVAL);
    expect(h.read(fd, 0).n).toBe(0);
  });

  it('ENOENT, implicit directories, ENOTDIR', () => {
    expect(h.open('/splitkern/input/missing.txt', O_RDONLY)).toBe(-ENOENT);
    expect(h.open('/splitkern/input/missing.txt', O_WRONLY)).toBe(-ENOENT);
    expect(h.open('/splitkern/input', O_RDONLY)).toBe(-EISDIR);
    expect(h.open('/splitkern/', O_WRONLY | O_CREAT)).toBe(-EISDIR);
    expect(h.open('/splitkern/input/hello.txt/', O_RDONLY)).toBe(-ENOTDIR);
    expect(h.open('/splitkern/input/hello.txt/x', O_WRONLY | O_CREAT)).toBe(-ENOTDIR);
    expect(h.open('', O_RDONLY)).toBe(-ENOENT);
  });

  it('write + close posts the full content; the boot array is never mutated', () => {
    const fd = h.open('/splitkern/input/hello.txt', O_RDWR);
    expect(h.write(fd, 'HELLO')).toBe(5);
    expect(h.posted).toEqual([]);
    expect(h.close(fd)).toBe(0);
    expect(h.files()).toEqual([{ path: '/splitkern/input/hello.txt', text: 'HELLO, split kernel\n' }]);
    expect(dec.decode(input)).toBe('hello, split kernel\n');
    // a second close of an unchanged file posts nothing more
    const fd2 = h.open('/splitkern/input/hello.txt', O_RDONLY);
    expect(h.close(fd2)).toBe(0);
    expect(h.files()).toHaveLength(1);
  });

  it('grows across many pages (capacity doubling)', () => {
    const fd = h.open('/splitkern/out/big', O_WRONLY | O_CREAT);
    expect(fd).toBe(3);
    const total = 10 * PAGE_SIZE + 77;
    const data = pattern(total);
    for (let off = 0; off < total; off += 1000)
      expect(h.write(fd, data.subarray(off, Math.min(total, off + 1000)))).toBe(Math.min(1000, total - off));
    expect(h.stat(fd).st!.size).toBe(total);
    expect(h.close(fd)).toBe(0);
    const msg = h.posted.find((m) => m.type === 'file');
    expect(msg && msg.type === 'file' && Buffer.from(msg.data).equals(Buffer.from(data))).toBe(true);
    // and reads back the same through S
    const rfd = h.open('/splitkern/out/big', O_RDONLY);
    expect(Buffer.from(h.readAll(rfd, 3000)).equals(Buffer.from(data))).toBe(true);
  });

  it('O_CREAT creates (posted even when empty), O_EXCL fails on an existing file', () => {
    const fd = h.open('/splitkern/out/new', O_WRONLY | O_CREAT | O_EXCL);
    expect(fd).toBe(3);
    expect(h.open('/splitkern/out/new', O_WRONLY | O_CREAT | O_EXCL)).toBe(-EEXIST);
    expect(h.open('/splitkern/input/hello.txt', O_RDONLY | O_CREAT | O_EXCL)).toBe(-EEXIST);
    expect(h.open('/splitkern/out', O_RDONLY | O_CREAT | O_EXCL)).toBe(-EEXIST);
    // O_CREAT without O_EXCL opens the existing file
    const fd2 = h.open('/splitkern/out/new', O_RDWR | O_CREAT);
    expect(fd2).toBe(4);
    expect(h.close(fd)).toBe(0);
    expect(h.files()).toEqual([{ path: '/splitkern/out/new', text: '' }]);
    expect(h.close(fd2)).toBe(0);
    expect(h.files()).toHaveLength(1);
  });

  it('O_TRUNC truncates, O_APPEND appends', () => {
    let fd = h.open('/splitkern/input/hello.txt', O_WRONLY | O_TRUNC);
    expect(h.stat(fd).st!.size).toBe(0);
    expect(h.write(fd, 'abc')).toBe(3);
    expect(h.close(fd)).toBe(0);
    fd = h.open('/splitkern/input/hello.txt', O_WRONLY | O_APPEND);
    expect(h.write(fd, 'def')).toBe(3);
    // O_APPEND: every write goes to the end, whatever the position
    expect(h.lseek(fd, 0, SEEK_SET)).toBe(0);
    expect(h.write(fd, 'gh')).toBe(2);
    expect(h.close(fd)).toBe(0);
    expect(h.files().map((f) => f.text)).toEqual(['abc', 'abcdefgh']);
    // truncating to a shorter content leaves no stale bytes behind
    fd = h.open('/splitkern/input/hello.txt', O_RDWR | O_TRUNC);
    expect(h.lseek(fd, 5, SEEK_SET)).toBe(5);
    expect(h.write(fd, 'z')).toBe(1);
    expect(h.lseek(fd, 0, SEEK_SET)).toBe(0);
    expect(Array.from(h.readAll(fd))).toEqual([0, 0, 0, 0, 0, 'z'.charCodeAt(0)]);
  });
});

describe('host files', () => {
  let h: Harness;
  beforeEach(() => {
    h = new Harness({}, tmp);
  });

  it('chunked reads of a multi-page file, relative and absolute paths', () => {
    const fd = h.open('big.bin', O_RDONLY);
    expect(fd).toBe(3);
    const sizes: number[] = [];
    const parts: Uint8Array[] = [];
    for (;;) {
      const r = h.read(fd, PAGE_SIZE);
      expect(r.aux).toBe(r.n);
      sizes.push(r.n);
      if (r.n === 0) break;
      expect(r.page!.subarray(r.n).every((b) => b === 0)).toBe(true);
      parts.push(r.data.slice());
    }
    expect(sizes).toEqual([PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, 123, 0]);
    expect(Buffer.concat(parts).equals(Buffer.from(hostBytes))).toBe(true);
    const fd2 = h.open(path.join(tmp, 'big.bin'), O_RDONLY);
    expect(Buffer.from(h.readAll(fd2, 1000)).equals(Buffer.from(hostBytes))).toBe(true);
    expect(h.close(fd)).toBe(0);
    expect(h.close(fd2)).toBe(0);
    expect(h.posted).toEqual([]);
  });

  it('EROFS for every write open; the host file is untouched', () => {
    expect(h.open('small.txt', O_WRONLY)).toBe(-EROFS);
    expect(h.open('small.txt', O_RDWR)).toBe(-EROFS);
    expect(h.open('small.txt', O_WRONLY | O_APPEND)).toBe(-EROFS);
    expect(h.open('small.txt', O_RDONLY | O_TRUNC)).toBe(-EROFS);
    expect(h.open('new.txt', O_WRONLY | O_CREAT)).toBe(-EROFS);
    expect(h.open('small.txt', O_WRONLY | O_CREAT | O_EXCL)).toBe(-EEXIST);
    expect(fs.readFileSync(path.join(tmp, 'small.txt'), 'utf8')).toBe('host file\n');
    expect(fs.existsSync(path.join(tmp, 'new.txt'))).toBe(false);
    // and a read-only fd cannot write
    const fd = h.open('small.txt', O_RDONLY);
    expect(h.write(fd, 'x')).toBe(-EBADF);
    expect(fs.readFileSync(path.join(tmp, 'small.txt'), 'utf8')).toBe('host file\n');
  });

  it('ENOENT and EISDIR', () => {
    expect(h.open('nope.txt', O_RDONLY)).toBe(-ENOENT);
    expect(h.open('nodir/x', O_RDONLY)).toBe(-ENOENT);
    expect(h.open('nodir/x', O_WRONLY | O_CREAT)).toBe(-ENOENT);
    expect(h.open('small.txt/x', O_RDONLY)).toBe(-ENOTDIR);
    expect(h.open('dir', O_RDONLY)).toBe(-EISDIR);
    expect(h.open('dir', O_WRONLY)).toBe(-EISDIR);
  });
});

describe('fd tables', () => {
  let h: Harness;
  beforeEach(() => {
    h = new Harness({ '/splitkern/a': enc.encode('aaaa'), '/splitkern/b': enc.encode('bbbb') }, tmp);
  });

  it('EBADF', () => {
    expect(h.read(3, 10).n).toBe(-EBADF);
    expect(h.read(-5, 10).n).toBe(-EBADF);
    expect(h.read(kMaxFds, 10).n).toBe(-EBADF);
    expect(h.write(7, 'x')).toBe(-EBADF);
    expect(h.close(3)).toBe(-EBADF);
    expect(h.stat(3).status).toBe(-EBADF);
    expect(h.lseek(3, 0, SEEK_SET)).toBe(-EBADF);
    const ro = h.open('/splitkern/a', O_RDONLY);
    const wo = h.open('/splitkern/b', O_WRONLY);
    expect(h.write(ro, 'x')).toBe(-EBADF);
    expect(h.read(wo, 1).n).toBe(-EBADF);
    expect(h.close(ro)).toBe(0);
    expect(h.close(ro)).toBe(-EBADF);
    expect(h.read(ro, 1).n).toBe(-EBADF);
    // EBADF comes before EINVAL
    expect(h.read(ro, PAGE_SIZE + 1).n).toBe(-EBADF);
  });

  it('lowest free fd >= 3, EMFILE at the limit', () => {
    const fds: number[] = [];
    for (let i = 3; i < kMaxFds; i++) fds.push(h.open('/splitkern/a', O_RDONLY));
    expect(fds).toEqual(Array.from({ length: kMaxFds - 3 }, (_, i) => i + 3));
    expect(h.open('/splitkern/a', O_RDONLY)).toBe(-EMFILE);
    expect(h.open('/splitkern/missing', O_RDONLY)).toBe(-EMFILE); // the fd is allocated before the lookup
    expect(h.close(10)).toBe(0);
    expect(h.close(5)).toBe(0);
    expect(h.open('/splitkern/b', O_RDONLY)).toBe(5);
    expect(h.open('/splitkern/b', O_RDONLY)).toBe(10);
    // another process has its own table
    expect(h.open('/splitkern/a', O_RDONLY, 2)).toBe(3);
    // closing the console does not make 0..2 available to open()
    expect(h.close(0, 2)).toBe(0);
    expect(h.read(0, 1, 2).n).toBe(-EBADF);
    expect(h.open('/splitkern/a', O_RDONLY, 2)).toBe(4);
  });

  it('per-process positions and tables', () => {
    const a1 = h.open('/splitkern/a', O_RDONLY, 1);
    const a2 = h.open('/splitkern/a', O_RDONLY, 2);
    expect(a1).toBe(3);
    expect(a2).toBe(3);
    expect(h.read(a1, 3, 1).n).toBe(3);
    expect(h.read(a2, 10, 2).n).toBe(4);
    expect(h.read(a1, 10, 1).n).toBe(1);
    expect(h.close(3, 2)).toBe(0);
    expect(h.read(3, 10, 1).n).toBe(0); // pid 1's fd 3 is still open
  });

  it('close(-1) closes every fd of the process and posts written files', () => {
    const a = h.open('/splitkern/a', O_RDWR);
    const b = h.open('/splitkern/out/c', O_WRONLY | O_CREAT);
    const other = h.open('/splitkern/b', O_RDONLY, 2);
    expect(h.write(a, 'AA')).toBe(2);
    expect(h.write(b, 'cc')).toBe(2);
    expect(h.close(-1)).toBe(0);
    expect(h.files().sort((x, y) => x.path.localeCompare(y.path))).toEqual([
      { path: '/splitkern/a', text: 'AAaa' },
      { path: '/splitkern/out/c', text: 'cc' },
    ]);
    expect(h.read(a, 1).n).toBe(-EBADF);
    expect(h.write(b, 'x')).toBe(-EBADF);
    expect(h.read(other, 4, 2).n).toBe(4); // other processes keep theirs
    // a new process image starts with the console and fd 3 free
    expect(h.open('/splitkern/a', O_RDONLY)).toBe(3);
    expect(h.close(-1, 99)).toBe(0); // a process that never opened anything
  });

  it('flushAll posts files still open and dirty', () => {
    const fd = h.open('/splitkern/out/log', O_WRONLY | O_CREAT);
    expect(h.write(fd, 'line 1\n')).toBe(7);
    const fd2 = h.open('/splitkern/out/done', O_WRONLY | O_CREAT);
    expect(h.write(fd2, 'x')).toBe(1);
    expect(h.close(fd2)).toBe(0);
    expect(h.files().map((f) => f.path)).toEqual(['/splitkern/out/done']);
    h.s.flushAll();
    expect(h.files()).toEqual([
      { path: '/splitkern/out/done', text: 'x' },
      { path: '/splitkern/out/log', text: 'line 1\n' },
    ]);
    h.s.flushAll();
    expect(h.files()).toHaveLength(2);
  });
});

describe('lseek and fstat', () => {
  let h: Harness;
  beforeEach(() => {
    h = new Harness({ '/splitkern/f': enc.encode('0123456789') }, tmp);
  });

  it('lseek SET/CUR/END, holes, errors', () => {
    const fd = h.open('/splitkern/f', O_RDWR);
    expect(h.lseek(fd, 4, SEEK_SET)).toBe(4);
    expect(dec.decode(h.read(fd, 2).data)).toBe('45');
    expect(h.lseek(fd, 0, SEEK_CUR)).toBe(6);
    expect(h.lseek(fd, -3, SEEK_CUR)).toBe(3);
    expect(h.lseek(fd, -1, SEEK_END)).toBe(9);
    expect(dec.decode(h.read(fd, 100).data)).toBe('9');
    expect(h.lseek(fd, -11, SEEK_END)).toBe(-EINVAL);
    expect(h.lseek(fd, -1, SEEK_SET)).toBe(-EINVAL);
    expect(h.lseek(fd, 0, 7)).toBe(-EINVAL);
    expect(h.lseek(fd, 0, SEEK_CUR)).toBe(10); // failed seeks leave the position alone
    expect(h.lseek(0, 0, SEEK_SET)).toBe(-ESPIPE);
    expect(h.lseek(1, 0, SEEK_CUR)).toBe(-ESPIPE);
    // past EOF: reads see EOF, a write leaves a zero-filled hole
    expect(h.lseek(fd, 2 ** 40, SEEK_SET)).toBe(2 ** 40); // offsets beyond 32 bits travel in the body
    expect(h.read(fd, 10).n).toBe(0);
    expect(h.lseek(fd, 12, SEEK_SET)).toBe(12);
    expect(h.write(fd, 'X')).toBe(1);
    expect(h.lseek(fd, 8, SEEK_SET)).toBe(8);
    expect(Array.from(h.read(fd, 10).data)).toEqual([56, 57, 0, 0, 88]);
  });

  it('lseek on host files', () => {
    const fd = h.open('big.bin', O_RDONLY);
    expect(h.lseek(fd, 0, SEEK_END)).toBe(HOST_SIZE);
    expect(h.lseek(fd, -PAGE_SIZE - 3, SEEK_END)).toBe(HOST_SIZE - PAGE_SIZE - 3);
    const r = h.read(fd, PAGE_SIZE);
    expect(r.n).toBe(PAGE_SIZE);
    expect(Buffer.from(r.data).equals(Buffer.from(hostBytes.subarray(HOST_SIZE - PAGE_SIZE - 3, HOST_SIZE - 3)))).toBe(
      true,
    );
    expect(h.read(fd, PAGE_SIZE).n).toBe(3);
  });

  it('fstat fields', () => {
    const mfd = h.open('/splitkern/f', O_RDONLY);
    const mst = h.stat(mfd);
    expect(mst.status).toBe(0);
    expect(mst.st).toMatchObject({ path: '/splitkern/f', size: 10, mode: S_IFREG | 0o644, readOnly: true });
    const wfd = h.open('/splitkern/f', O_RDWR);
    expect(h.write(wfd, 'abcdefghijklmnop')).toBe(16);
    const wst = h.stat(wfd).st!;
    expect(wst).toMatchObject({ size: 16, readOnly: false, mode: S_IFREG | 0o644 });
    expect(wst.ino).toBe(mst.st!.ino); // stable per path
    expect(h.stat(mfd).st!.size).toBe(16);

    const hfd = h.open('big.bin', O_RDONLY);
    const hst = h.stat(hfd).st!;
    expect(hst).toMatchObject({
      path: path.join(tmp, 'big.bin'),
      size: HOST_SIZE,
      mode: S_IFREG | 0o444,
      readOnly: true,
    });
    expect(hst.ino).not.toBe(wst.ino);
    const hfd2 = h.open(path.join(tmp, 'big.bin'), O_RDONLY);
    expect(h.stat(hfd2).st!.ino).toBe(hst.ino);

    for (const fd of [0, 1, 2]) {
      const c = h.stat(fd);
      expect(c.status).toBe(0);
      expect(c.st).toMatchObject({ path: '/dev/console', size: 0, mode: S_IFCHR | 0o620 });
    }
  });
});

describe('console', () => {
  it('writes to 1 and 2 are posted; stdin reads EOF', () => {
    const h = new Harness();
    expect(h.write(1, 'out\n', 42)).toBe(4);
    expect(h.write(2, 'err\n', 42)).toBe(4);
    expect(h.posted).toHaveLength(2);
    const [a, b] = h.posted;
    expect(a).toMatchObject({ type: 'console', fd: 1, pid: 42 });
    expect(b).toMatchObject({ type: 'console', fd: 2, pid: 42 });
    expect(a?.type === 'console' && dec.decode(a.data)).toBe('out\n');
    expect(b?.type === 'console' && dec.decode(b.data)).toBe('err\n');
    expect(a?.type === 'console' && a.data.length).toBe(4); // exactly count bytes, not the page
    const r = h.read(0, 100, 42);
    expect(r.n).toBe(0);
    expect(h.write(0, 'x', 42)).toBe(-EBADF);
    expect(h.read(1, 1, 42).n).toBe(-EBADF);
    expect(h.write(1, new Uint8Array(0), 42)).toBe(0);
    expect(h.posted).toHaveLength(2);
  });
});

describe('M2S_READ', () => {
  const memData = pattern(2 * PAGE_SIZE + 100);
  let h: Harness;
  beforeEach(() => {
    h = new Harness({ '/splitkern/m.bin': memData }, tmp);
  });

  const check = (r: Captured, src: Uint8Array, off: number): void => {
    const valid = Math.max(0, Math.min(PAGE_SIZE, src.length - off));
    expect(r.status).toBe(0);
    expect(r.aux).toBe(valid);
    expect(r.page!.length).toBe(PAGE_SIZE);
    expect(Buffer.from(r.page!.subarray(0, valid)).equals(Buffer.from(src.subarray(off, off + valid)))).toBe(true);
    expect(r.page!.subarray(valid).every((x) => x === 0)).toBe(true);
  };

  it('pages of an in-memory file, partial last page, beyond EOF', () => {
    for (const off of [0, PAGE_SIZE, 2 * PAGE_SIZE, 3 * PAGE_SIZE, 50])
      check(h.m2s('/splitkern/m.bin', off), memData, off);
  });

  it('pages of a host file (by the path fstat reports)', () => {
    const fd = h.open('big.bin', O_RDONLY);
    const p = h.stat(fd).st!.path;
    for (const off of [0, PAGE_SIZE, 3 * PAGE_SIZE, 4 * PAGE_SIZE]) check(h.m2s(p, off), hostBytes, off);
    check(h.m2s('big.bin', 2 * PAGE_SIZE), hostBytes, 2 * PAGE_SIZE);
  });

  it('errors, and opcode 0 from a CPU is P2S_READ', () => {
    expect(h.m2s('/splitkern/none', 0).status).toBe(-ENOENT);
    expect(h.m2s('none.bin', 0).status).toBe(-ENOENT);
    expect(h.m2s('/splitkern/m.bin', -4096).status).toBe(-EINVAL);
    // the same opcode from a CPU is a read of fd (body {path, offset} has no fd): EBADF
    expect(h.call(0, { path: '/splitkern/m.bin', offset: 0 }).status).toBe(-EBADF);
    // P2S_OPEN's opcode from M is not an M2S opcode
    expect(h.call(P2S_OPEN, { path: '/splitkern/m.bin', flags: O_RDONLY, mode: 0 }, { src: MEMORY_CTX }).status).toBe(
      -ENOSYS,
    );
  });
});

describe('dispatch', () => {
  it('unknown opcode: LegoOS warning and -ENOSYS', () => {
    const h = new Harness();
    expect(h.call(77, { fd: 3 }).status).toBe(-ENOSYS);
    expect(h.logs).toContainEqual({ level: 'warn', msg: 'WARNING: Invalid opcode: 77' });
  });

  it('malformed bodies fail with an errno, never a throw', () => {
    const h = new Harness();
    expect(h.call(P2S_OPEN, undefined).status).toBe(-EINVAL);
    expect(h.call(P2S_OPEN, { path: 5, flags: 0 }).status).toBeLessThan(0);
    expect(h.call(P2S_READ, { fd: 'x', count: 1 }).status).toBe(-EBADF);
    expect(h.call(P2S_WRITE, [1, 2]).status).toBe(-EINVAL);
    expect(h.call(P2S_LSEEK, { fd: 0 }).status).toBe(-ESPIPE);
  });
});
