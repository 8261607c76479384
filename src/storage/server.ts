// The storage component S (LegoOS managers/storage): per-process file descriptor tables, the file
// namespace, and the handlers of the P2S file calls and of M2S_READ (M filling a file-backed page).
//
// Namespace:
//   /splitkern/...  in-memory files: the ones the host placed on S at boot (generated inputs) and the
//                   ones the workload creates. Directories are implicit (every proper prefix of a file
//                   path). A written file's final content goes back to the host ({type:'file'}) when it
//                   is closed and at shutdown.
//   anything else   a host file, relative paths resolved against --files (default: the working
//                   directory). Host files are READ-ONLY: nothing on the host is ever written; a write
//                   open fails with -EROFS. They are read in place (pread on one cached host fd per
//                   path), never loaded whole.
//
// Each process (the pid in the request header) has its own fd table. fds 0, 1 and 2 exist implicitly
// as the console: stdin reads EOF (as from /dev/null), writes to stdout/stderr are forwarded to the
// host. New fds are the lowest free number >= 3, below RLIMIT_NOFILE (64). Every failure is a Linux
// errno, with Linux's precedence where it is observable (EMFILE before the path lookup, EBADF before
// EINVAL, EEXIST before EROFS).
//
// The handler never throws: an unexpected host error becomes -EIO and a kernel log line, since a throw
// out of a fabric handler takes the whole S worker down.
//
// S is single-threaded (one handler loop, serveForever): its fd tables, namespace and host fds are
// worker-local state and take no lock. It touches shared memory only through the fabric: a request's
// mailbox (header words, page area) is read while its kMboxState says posted, and written back only
// through the ReplyWriter. Storage's methods are called on the S worker's thread only (tests call them
// directly, with no machine).
import fs from 'node:fs';
import path from 'node:path';
import type { Env } from '../kernel/env.ts';
import { kNodeStorage } from '../kernel/layout.ts';
import { MalformedMessage, serveForever, type IncomingRequest, type ReplyWriter } from '../fabric/ibapi.ts';
import { M2S_READ, P2S_CLOSE, P2S_LSEEK, P2S_OPEN, P2S_READ, P2S_STAT, P2S_WRITE } from '../fabric/opcodes.ts';
import { zStorageReq, type LseekReply, type StorageReq, type StatReply } from '../fabric/proto.ts';
import type { WorkerInit, WorkerMsg } from '../kernel/workerdata.ts';
import {
  EACCES,
  EBADF,
  EEXIST,
  EFAULT,
  EFBIG,
  EINVAL,
  EIO,
  EISDIR,
  EMFILE,
  ENAMETOOLONG,
  ENOENT,
  ENOSPC,
  ENOSYS,
  ENOTDIR,
  EROFS,
  ESPIPE,
  O_ACCMODE,
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
  errnoByName,
} from '../uapi/abi.ts';

export interface StorageOptions {
  /** in-memory files present at boot (e.g. generated inputs under /splitkern/); adopted, never mutated */
  memFiles: Record<string, Uint8Array>;
  /** host directory; relative S paths resolve against it (default: process.cwd()) */
  filesDir?: string;
  /** to the host: console output, final content of written files */
  post: (msg: WorkerMsg) => void;
  log: (level: 'info' | 'warn' | 'error' | 'debug', msg: string) => void;
}

/** Prefix of the in-memory namespace. */
export const MEM_PREFIX = '/splitkern/';
const MEM_ROOT = '/splitkern';
/** RLIMIT_NOFILE: fds 0..63 */
export const kMaxFds = 64;
/** the first fd open() hands out (0..2 are the console) */
export const kFirstFd = 3;
/** largest in-memory file (s_maxbytes of the in-memory file system): writes beyond fail with EFBIG */
export const kMaxMemFileBytes = 2 ** 31;
/** PATH_MAX including the terminating NUL */
const kPathMax = 4096;
const CONSOLE_PATH = '/dev/console';
const MODE_MEM = S_IFREG | 0o644;
const MODE_HOST = S_IFREG | 0o444;
const MODE_CONSOLE = S_IFCHR | 0o620;

interface MemFile {
  kind: 'mem';
  path: string;
  /** capacity-doubling buffer; bytes at and beyond `size` are always zero */
  buf: Uint8Array;
  size: number;
  ino: number;
  /** content changed since it was last posted to the host */
  dirty: boolean;
  /** buf is ours (false while it is still the array the host handed us at boot: copy on write) */
  owned: boolean;
}

interface HostFile {
  kind: 'host';
  /** absolute host path */
  path: string;
  fd: number;
  ino: number;
}

interface ConsoleFile {
  kind: 'console';
}

type SFile = MemFile | HostFile | ConsoleFile;

/** An open file description (struct file): what an fd refers to. */
interface OpenFile {
  file: SFile;
  pos: number;
  readable: boolean;
  writable: boolean;
  append: boolean;
}

/** Result of one handler: what goes into the reply. */
interface Res {
  status: number;
  aux?: number;
  body?: unknown;
  page?: Uint8Array;
}

type Where =
  { kind: 'mem'; path: string; trailingSlash: boolean } | { kind: 'host'; path: string; trailingSlash: boolean };

type Body = StorageReq;

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

const err = (e: number): Res => ({ status: -e });

/** Linux errno of a Node fs error (its `code` is the errno name); EIO when there is none. */
function errnoOf(e: unknown): number {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== 'string') return EIO;
  return errnoByName(code) ?? EIO;
}

export class Storage {
  private readonly post: (msg: WorkerMsg) => void;
  private readonly log: StorageOptions['log'];
  readonly filesDir: string;
  private readonly mem = new Map<string, MemFile>();
  /** implicit directories of the in-memory namespace: every proper prefix of a file path */
  private readonly memDirs = new Set<string>([MEM_ROOT]);
  private readonly host = new Map<string, HostFile>();
  private readonly inos = new Map<string, number>();
  private nextIno = 11; // ext4's first non-reserved inode
  private readonly tables = new Map<number, Array<OpenFile | undefined>>();
  /** reply page of reads; the fabric copies it into the mailbox */
  private readonly page = new Uint8Array(PAGE_SIZE);

  constructor(opts: StorageOptions) {
    this.post = opts.post;
    this.log = opts.log;
    this.filesDir = path.resolve(opts.filesDir ?? process.cwd());
    for (const [p, data] of Object.entries(opts.memFiles)) {
      const w = this.where(p);
      if (w.kind !== 'mem' || w.trailingSlash) {
        this.log('warn', `storage: boot file ${p} is outside ${MEM_PREFIX}: ignored`);
        continue;
      }
      this.addMem(w.path, data, false);
    }
  }

  /** number of in-memory files and their total size */
  memUsage(): { files: number; bytes: number } {
    let bytes = 0;
    for (const f of this.mem.values()) bytes += f.size;
    return { files: this.mem.size, bytes };
  }

  /** dispatch one request; `fromMemory` true when the sender is M (then opcode 0 is M2S_READ) */
  handle(req: IncomingRequest, out: ReplyWriter, fromMemory: boolean): void {
    let r: Res;
    try {
      r = this.dispatch(req, fromMemory);
    } catch (e) {
      this.log(
        'error',
        `storage: opcode ${req.opcode >>> 0} from ctx ${req.src} pid ${req.pid} failed: ${(e as Error).stack ?? String(e)}`,
      );
      r = err(EIO);
    }
    out.reply(r.status, r.aux ?? 0, r.body, r.page ?? null);
  }

  /** at shutdown: post {type:'file'} for every written file not yet posted; release the host fds */
  flushAll(): void {
    for (const f of this.mem.values()) if (f.dirty) this.postFile(f);
    for (const h of this.host.values()) {
      try {
        fs.closeSync(h.fd);
      } catch {
        /* already gone */
      }
    }
    this.host.clear();
  }

  private dispatch(req: IncomingRequest, fromMemory: boolean): Res {
    if (fromMemory) {
      if (req.opcode === M2S_READ) return this.m2sRead(req);
      return this.invalid(req);
    }
    switch (req.opcode) {
      case P2S_OPEN:
        return this.open(req);
      case P2S_READ:
        return this.read(req);
      case P2S_WRITE:
        return this.write(req);
      case P2S_CLOSE:
        return this.close(req);
      case P2S_STAT:
        return this.stat(req);
      case P2S_LSEEK:
        return this.lseek(req);
      default:
        return this.invalid(req);
    }
  }

  private invalid(req: IncomingRequest): Res {
    this.log('warn', `WARNING: Invalid opcode: ${req.opcode >>> 0}`);
    return err(ENOSYS);
  }

  /** the request body as an object, or undefined when there is none or it is not a map */
  private body(req: IncomingRequest): Body | undefined {
    if (req.bodyLen === 0) return undefined;
    try {
      return req.body(zStorageReq);
    } catch (e) {
      if (!(e instanceof MalformedMessage)) throw e;
      this.log('warn', `storage: ${e.message}`);
      return undefined;
    }
  }

  // ---- namespace ----

  private where(p: string): Where {
    const trailingSlash = p.length > 1 && p.endsWith('/');
    if (p.startsWith('/')) {
      let n = path.posix.normalize(p);
      if (n.length > 1 && n.endsWith('/')) n = n.slice(0, -1);
      if (n === MEM_ROOT || n.startsWith(MEM_PREFIX)) return { kind: 'mem', path: n, trailingSlash };
    }
    return { kind: 'host', path: path.resolve(this.filesDir, p), trailingSlash };
  }

  private inoOf(key: string): number {
    let i = this.inos.get(key);
    if (i === undefined) {
      i = this.nextIno++;
      this.inos.set(key, i);
    }
    return i;
  }

  private addMem(p: string, data: Uint8Array, owned: boolean): MemFile {
    const f: MemFile = { kind: 'mem', path: p, buf: data, size: data.length, ino: this.inoOf(p), dirty: false, owned };
    this.mem.set(p, f);
    for (let d = path.posix.dirname(p); d.length > MEM_ROOT.length; d = path.posix.dirname(d)) this.memDirs.add(d);
    return f;
  }

  private postFile(f: MemFile): void {
    f.dirty = false;
    this.post({ type: 'file', path: f.path, data: f.buf.slice(0, f.size) });
  }

  /** The cached host fd of a regular host file, or -errno. */
  private hostFile(abs: string, trailingSlash: boolean): HostFile | number {
    const cached = this.host.get(abs);
    if (cached) return trailingSlash ? -ENOTDIR : cached;
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch (e) {
      return -errnoOf(e);
    }
    if (st.isDirectory()) return -EISDIR;
    if (trailingSlash) return -ENOTDIR;
    // A FIFO or a device could block S (and with it every process) on a read: regular files only.
    if (!st.isFile()) {
      this.log('warn', `storage: ${abs} is not a regular file: access refused`);
      return -EACCES;
    }
    let fd: number;
    try {
      fd = fs.openSync(abs, fs.constants.O_RDONLY);
    } catch (e) {
      return -errnoOf(e);
    }
    const h: HostFile = { kind: 'host', path: abs, fd, ino: this.inoOf(abs) };
    this.host.set(abs, h);
    return h;
  }

  /** pread until `count` bytes or EOF; returns the bytes read */
  private hostPread(h: HostFile, dst: Uint8Array, count: number, pos: number): number {
    let n = 0;
    while (n < count) {
      const r = fs.readSync(h.fd, dst, n, count - n, pos + n);
      if (r === 0) break;
      n += r;
    }
    return n;
  }

  private hostSize(h: HostFile): number {
    return fs.fstatSync(h.fd).size;
  }

  // ---- fd tables ----

  private table(pid: number): Array<OpenFile | undefined> {
    let t = this.tables.get(pid);
    if (!t) {
      t = new Array<OpenFile | undefined>(kMaxFds).fill(undefined);
      const con: ConsoleFile = { kind: 'console' };
      t[0] = { file: con, pos: 0, readable: true, writable: false, append: false };
      t[1] = { file: con, pos: 0, readable: false, writable: true, append: false };
      t[2] = { file: con, pos: 0, readable: false, writable: true, append: false };
      this.tables.set(pid, t);
    }
    return t;
  }

  private lookup(pid: number, fd: unknown): OpenFile | undefined {
    if (!isInt(fd) || fd < 0 || fd >= kMaxFds) return undefined;
    return this.table(pid)[fd];
  }

  // ---- P2S ----

  private open(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const p = b['path'];
    const flags = b['flags'];
    if (typeof p !== 'string') return err(EFAULT);
    if (!isInt(flags)) return err(EINVAL);
    const t = this.table(req.pid);
    // get_unused_fd_flags() comes before the path walk
    let fd = -1;
    for (let i = kFirstFd; i < kMaxFds; i++)
      if (t[i] === undefined) {
        fd = i;
        break;
      }
    if (fd < 0) return err(EMFILE);
    if (p.length === 0) return err(ENOENT);
    if (p.length >= kPathMax) return err(ENAMETOOLONG);
    const acc = flags & O_ACCMODE;
    // O_ACCMODE itself (3) is Linux's "needs read and write permission, allows neither"
    const readable = acc === O_RDONLY || acc === O_RDWR;
    const writable = acc === O_WRONLY || acc === O_RDWR;
    const wantWrite = acc !== O_RDONLY;
    const creat = (flags & O_CREAT) !== 0;
    const excl = (flags & O_EXCL) !== 0;
    const trunc = (flags & O_TRUNC) !== 0;
    const w = this.where(p);
    let file: MemFile | HostFile;
    if (w.kind === 'mem') {
      let f = this.mem.get(w.path);
      if (!f && this.memDirs.has(w.path)) return err(creat && excl ? EEXIST : EISDIR);
      if (f && w.trailingSlash) return err(ENOTDIR);
      if (!f) {
        if (!creat) return err(ENOENT);
        if (w.trailingSlash) return err(EISDIR);
        for (let d = path.posix.dirname(w.path); d.length > MEM_ROOT.length; d = path.posix.dirname(d)) {
          if (this.mem.has(d)) return err(ENOTDIR); // a path component is a file
        }
        f = this.addMem(w.path, new Uint8Array(0), true);
        f.dirty = true; // a created file is output even if nothing is written to it
        this.log('debug', `storage: pid ${req.pid} created ${w.path}`);
      } else if (creat && excl) return err(EEXIST);
      // Linux truncates on O_TRUNC whatever the access mode (O_RDONLY|O_TRUNC is "unspecified")
      if (trunc && f.size > 0) this.truncate(f);
      file = f;
    } else {
      let st: fs.Stats | undefined;
      try {
        st = fs.statSync(w.path);
      } catch (e) {
        const code = errnoOf(e);
        if (code !== ENOENT || !creat) return err(code);
        // O_CREAT of a missing name: EROFS if its directory exists (the create is what fails)
        try {
          if (!fs.statSync(path.dirname(w.path)).isDirectory()) return err(ENOTDIR);
        } catch (e2) {
          return err(errnoOf(e2));
        }
        return err(w.trailingSlash ? EISDIR : EROFS);
      }
      if (creat && excl) return err(EEXIST);
      if (st.isDirectory()) return err(EISDIR);
      if (w.trailingSlash) return err(ENOTDIR);
      if (wantWrite || trunc) return err(EROFS);
      const h = this.hostFile(w.path, false);
      if (typeof h === 'number') return { status: h };
      file = h;
    }
    t[fd] = { file, pos: 0, readable, writable, append: (flags & O_APPEND) !== 0 };
    this.log('debug', `storage: pid ${req.pid} open ${file.path} flags 0${flags.toString(8)} = ${fd}`);
    return { status: fd };
  }

  private truncate(f: MemFile): void {
    if (f.owned) f.buf.fill(0, 0, f.size);
    else {
      f.buf = new Uint8Array(0);
      f.owned = true;
    }
    f.size = 0;
    f.dirty = true;
  }

  private read(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const of = this.lookup(req.pid, b['fd']);
    if (!of || !of.readable) return err(EBADF);
    const count = b['count'];
    if (!isInt(count) || count < 0 || count > PAGE_SIZE) return err(EINVAL);
    const page = this.page;
    page.fill(0);
    const f = of.file;
    let n = 0;
    if (f.kind === 'mem') {
      n = Math.max(0, Math.min(count, f.size - of.pos));
      if (n > 0) page.set(f.buf.subarray(of.pos, of.pos + n));
    } else if (f.kind === 'host') {
      n = this.hostPread(f, page, count, of.pos);
    }
    of.pos += n;
    return { status: n, aux: n, page };
  }

  private write(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const fd = b['fd'];
    const of = this.lookup(req.pid, fd);
    if (!of || !of.writable) return err(EBADF);
    const count = b['count'];
    if (!isInt(count) || count < 0 || count > PAGE_SIZE) return err(EINVAL);
    if (count === 0) return { status: 0 };
    if (!req.hasPage) return err(EFAULT);
    const data = req.mbox.page.subarray(0, count);
    const f = of.file;
    if (f.kind === 'console') {
      // slice: the mailbox page is shared memory, the message must own its bytes
      this.post({ type: 'console', fd: fd as number, pid: req.pid, data: data.slice() });
      return { status: count };
    }
    if (f.kind === 'host') return err(EBADF); // never opened for writing
    const pos = of.append ? f.size : of.pos;
    if (pos >= kMaxMemFileBytes) return err(EFBIG);
    const n = Math.min(count, kMaxMemFileBytes - pos);
    if (!this.reserve(f, pos + n)) return err(ENOSPC);
    // bytes between the old size and pos are already zero (invariant of MemFile.buf): a hole
    f.buf.set(data.subarray(0, n), pos);
    if (pos + n > f.size) f.size = pos + n;
    f.dirty = true;
    of.pos = pos + n;
    return { status: n };
  }

  /** make f.buf ours and at least `need` bytes long (capacity doubling); false when out of memory */
  private reserve(f: MemFile, need: number): boolean {
    if (f.owned && need <= f.buf.length) return true;
    let cap = f.owned ? Math.max(f.buf.length, PAGE_SIZE) : Math.max(f.size, PAGE_SIZE);
    while (cap < need) cap *= 2;
    cap = Math.min(cap, kMaxMemFileBytes); // need <= kMaxMemFileBytes (write clamps it)
    let nb: Uint8Array;
    try {
      nb = new Uint8Array(cap);
    } catch {
      this.log('error', `storage: out of memory growing ${f.path} to ${need} bytes`);
      return false;
    }
    nb.set(f.buf.subarray(0, f.size));
    f.buf = nb;
    f.owned = true;
    return true;
  }

  private close(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const fd = b['fd'];
    if (fd === -1) {
      const t = this.tables.get(req.pid);
      if (t) {
        for (let i = 0; i < t.length; i++) if (t[i]) this.release(t, i);
        this.tables.delete(req.pid);
      }
      return { status: 0 };
    }
    const of = this.lookup(req.pid, fd);
    if (!of) return err(EBADF);
    this.release(this.table(req.pid), fd as number);
    return { status: 0 };
  }

  private release(t: Array<OpenFile | undefined>, fd: number): void {
    const of = t[fd];
    t[fd] = undefined;
    if (of && of.file.kind === 'mem' && of.file.dirty) this.postFile(of.file);
  }

  private stat(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const of = this.lookup(req.pid, b['fd']);
    if (!of) return err(EBADF);
    const f = of.file;
    let st: StatReply;
    if (f.kind === 'console')
      st = { path: CONSOLE_PATH, size: 0, mode: MODE_CONSOLE, ino: this.inoOf(CONSOLE_PATH), readOnly: !of.writable };
    else if (f.kind === 'mem') st = { path: f.path, size: f.size, mode: MODE_MEM, ino: f.ino, readOnly: !of.writable };
    else st = { path: f.path, size: this.hostSize(f), mode: MODE_HOST, ino: f.ino, readOnly: true };
    return { status: 0, body: st };
  }

  private lseek(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const of = this.lookup(req.pid, b['fd']);
    if (!of) return err(EBADF);
    const f = of.file;
    if (f.kind === 'console') return err(ESPIPE);
    const offset = b['offset'];
    const whence = b['whence'];
    if (!isInt(offset)) return err(EINVAL);
    let base: number;
    if (whence === SEEK_SET) base = 0;
    else if (whence === SEEK_CUR) base = of.pos;
    else if (whence === SEEK_END) base = f.kind === 'mem' ? f.size : this.hostSize(f);
    else return err(EINVAL);
    const np = base + offset;
    if (np < 0 || !Number.isSafeInteger(np)) return err(EINVAL);
    of.pos = np;
    const rep: LseekReply = { ret: np };
    return { status: 0, body: rep };
  }

  // ---- M2S ----

  /** A page of a file for M (file-backed fault): status 0, aux = valid bytes, zero beyond EOF. */
  private m2sRead(req: IncomingRequest): Res {
    const b = this.body(req);
    if (!b) return err(EINVAL);
    const p = b['path'];
    const offset = b['offset'];
    if (typeof p !== 'string') return err(EFAULT);
    if (!isInt(offset) || offset < 0) return err(EINVAL);
    if (p.length === 0) return err(ENOENT);
    const page = this.page;
    page.fill(0);
    const w = this.where(p);
    let n: number;
    if (w.kind === 'mem') {
      const f = this.mem.get(w.path);
      if (!f) return err(this.memDirs.has(w.path) ? EISDIR : ENOENT);
      n = Math.max(0, Math.min(PAGE_SIZE, f.size - offset));
      if (n > 0) page.set(f.buf.subarray(offset, offset + n));
    } else {
      const h = this.hostFile(w.path, w.trailingSlash);
      if (typeof h === 'number') return { status: h };
      n = this.hostPread(h, page, PAGE_SIZE, offset);
    }
    return { status: 0, aux: n, page };
  }
}

const fmtBytes = (n: number): string =>
  n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} bytes`;

/** S's main: boot lines, online, serve until shutdown, then hand the written files to the host. */
export function storageMain(env: Env, init: WorkerInit, post: (m: WorkerMsg) => void): void {
  const dir = path.resolve(env.config.filesDir ?? process.cwd());
  const s = new Storage({
    memFiles: init.memFiles ?? {},
    filesDir: dir,
    post,
    log: (level, msg) => env.printk(level, msg),
  });
  const u = s.memUsage();
  env.printk(
    'notice',
    `storage: online, ${u.files} in-memory file${u.files === 1 ? '' : 's'} (${fmtBytes(u.bytes)}) under ${MEM_PREFIX}, host files from ${dir} (read-only)`,
  );
  env.printk('info', `storage: ${kMaxFds} fds per process, console on fds 0-2`);
  post({ type: 'online', who: 'storage' });
  const memoryCtx = env.sh.geo.ctx.memory;
  try {
    serveForever(env, kNodeStorage, (req, out) => s.handle(req, out, req.src === memoryCtx));
  } finally {
    s.flushAll();
    env.printk('debug', 'storage: shutdown: written files handed to the host');
  }
}
