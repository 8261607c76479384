// A kernel-free UserContext for unit-testing libc and programs: flat sparse memory, simplified
// mmap/mremap/brk with Linux return conventions, files in a Map, threads run synchronously at clone().
// It is NOT the emulator: only for testing user-space code in isolation.
import {
  EBADF,
  EFAULT,
  EAGAIN,
  ECHILD,
  EINVAL,
  ETIMEDOUT,
  FUTEX_CMD_MASK,
  FUTEX_WAKE,
  ENOENT,
  ENOMEM,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  O_CREAT,
  O_TRUNC,
  PAGE_SIZE,
  STAT_SIZE,
  STAT_ST_SIZE,
  pageAlignUp,
} from '../../src/uapi/abi.ts';
import {
  ThreadExit,
  UserSignal,
  type Mmu,
  type Program,
  type Syscalls,
  type UserContext,
} from '../../src/uapi/program.ts';

export interface FakeMachine {
  pages: Map<number, Uint8Array>;
  files: Map<string, Uint8Array>;
  stdout: string[];
  reports: unknown[];
  mmapCalls: number;
  mremapCalls: number;
  /**
   * Honour page protections (mprotect, PROT_NONE, PROT_READ-only maps): loads/stores SIGSEGV and probes
   * fail as on Linux, and mprotect validates its range. Off by default (older tests write PROT_READ maps).
   */
  enforceProt?: boolean;
  /** page number -> PROT_* bits of every mapped page (tracked always, enforced only with enforceProt) */
  prots?: Map<number, number>;
}

export function makeFakeMachine(files: Record<string, Uint8Array | string> = {}): FakeMachine {
  const m: FakeMachine = { pages: new Map(), files: new Map(), stdout: [], reports: [], mmapCalls: 0, mremapCalls: 0 };
  for (const [k, v] of Object.entries(files)) m.files.set(k, typeof v === 'string' ? new TextEncoder().encode(v) : v);
  return m;
}

export function makeFakeUser(m: FakeMachine, program?: Program, seed = 1, argv: string[] = []): UserContext {
  const page = (va: number, create: boolean): Uint8Array => {
    const vpn = Math.floor(va / PAGE_SIZE);
    const p = m.pages.get(vpn);
    if (!p) {
      if (!create) throw new UserSignal(11, va, 'fake: unmapped');
      throw new UserSignal(11, va, 'fake: unmapped');
    }
    return p;
  };
  const prots = (m.prots ??= new Map<number, number>());
  const protOf = (va: number): number => prots.get(Math.floor(va / PAGE_SIZE)) ?? PROT_READ | PROT_WRITE;
  /** The page holding va, for a load or (write) a store; SIGSEGV if unmapped or (enforceProt) protected. */
  const access = (va: number, write: boolean): Uint8Array => {
    const p = page(va, false);
    if (m.enforceProt && !(protOf(va) & (write ? PROT_WRITE : PROT_READ)))
      throw new UserSignal(11, va, 'fake: protection');
    return p;
  };
  const ld = (va: number) => access(va, false)[va % PAGE_SIZE]!;
  const st = (va: number, v: number) => {
    access(va, true)[va % PAGE_SIZE] = v & 0xff;
  };
  const mmu: Mmu = {
    load8: ld,
    load16: (va) => ld(va) | (ld(va + 1) << 8),
    load32: (va) => (ld(va) | (ld(va + 1) << 8) | (ld(va + 2) << 16) | (ld(va + 3) << 24)) >>> 0,
    load64: (va) => mmu.load32(va) + mmu.load32(va + 4) * 2 ** 32,
    store8: st,
    store16: (va, v) => {
      st(va, v);
      st(va + 1, v >> 8);
    },
    store32: (va, v) => {
      for (let i = 0; i < 4; i++) st(va + i, v >>> (8 * i));
    },
    store64: (va, v) => {
      mmu.store32(va, v % 2 ** 32);
      mmu.store32(va + 4, Math.floor(v / 2 ** 32));
    },
    // Bulk ops work page by page (same result and same fault point as a byte loop, much faster).
    read: (va, dst, off = 0, len = dst.length - off) => {
      for (let i = 0; i < len;) {
        const a = va + i;
        const o = a % PAGE_SIZE;
        const k = Math.min(len - i, PAGE_SIZE - o);
        dst.set(access(a, false).subarray(o, o + k), off + i);
        i += k;
      }
    },
    write: (va, src, off = 0, len = src.length - off) => {
      for (let i = 0; i < len;) {
        const a = va + i;
        const o = a % PAGE_SIZE;
        const k = Math.min(len - i, PAGE_SIZE - o);
        access(a, true).set(src.subarray(off + i, off + i + k), o);
        i += k;
      }
    },
    fill: (va, b, len) => {
      for (let i = 0; i < len;) {
        const a = va + i;
        const o = a % PAGE_SIZE;
        const k = Math.min(len - i, PAGE_SIZE - o);
        access(a, true).fill(b & 0xff, o, o + k);
        i += k;
      }
    },
    cas32: (va, exp, rep) => {
      const old = mmu.load32(va);
      if (old === exp >>> 0) mmu.store32(va, rep);
      return old;
    },
    xadd32: (va, d) => {
      const old = mmu.load32(va);
      mmu.store32(va, (old + d) >>> 0);
      return old;
    },
    probe: (va, write) => mmu.probeSiCode(va, write) === 0,
    probeSiCode: (va, write) => {
      const p = m.pages.get(Math.floor(va / PAGE_SIZE));
      if (!p) return 1; // SEGV_MAPERR
      if (m.enforceProt && !(protOf(va) & (write ? PROT_WRITE : PROT_READ))) return 2; // SEGV_ACCERR
      if (write) p[va % PAGE_SIZE] = p[va % PAGE_SIZE]!;
      return 0;
    },
  };
  let mmapTop = 0x7fffe5800000;
  const brkStart = 0x555555560000;
  let brkCur = brkStart;
  const fds = new Map<number, { path: string; pos: number }>();
  let nextFd = 3;
  const mapRange = (addr: number, len: number, data?: Uint8Array, prot = PROT_READ | PROT_WRITE) => {
    for (let o = 0; o < len; o += PAGE_SIZE) {
      const p = new Uint8Array(PAGE_SIZE);
      if (data) p.set(data.subarray(o, Math.min(o + PAGE_SIZE, data.length)));
      m.pages.set(Math.floor((addr + o) / PAGE_SIZE), p);
      prots.set(Math.floor((addr + o) / PAGE_SIZE), prot);
    }
  };
  const unmapRange = (addr: number, len: number) => {
    for (let o = 0; o < len; o += PAGE_SIZE) {
      m.pages.delete(Math.floor((addr + o) / PAGE_SIZE));
      prots.delete(Math.floor((addr + o) / PAGE_SIZE));
    }
  };
  const allMapped = (addr: number, len: number): boolean => {
    for (let o = 0; o < len; o += PAGE_SIZE) if (!m.pages.has(Math.floor((addr + o) / PAGE_SIZE))) return false;
    return true;
  };
  const noneMapped = (addr: number, len: number): boolean => {
    for (let o = 0; o < len; o += PAGE_SIZE) if (m.pages.has(Math.floor((addr + o) / PAGE_SIZE))) return false;
    return true;
  };
  /** move_vma: pages (and protections) of [oldAddr, +oldLen) to `at`; new tail pages read zeros. */
  const moveRange = (oldAddr: number, oldLen: number, at: number, newLen: number, dontUnmap: boolean) => {
    const saved: Array<{ p: Uint8Array; prot: number }> = [];
    for (let o = 0; o < oldLen; o += PAGE_SIZE) saved.push({ p: page(oldAddr + o, false), prot: protOf(oldAddr + o) });
    // MREMAP_DONTUNMAP leaves the old range mapped, empty (anonymous memory reads zeros again).
    if (dontUnmap)
      for (let i = 0; i < saved.length; i++)
        m.pages.set(Math.floor(oldAddr / PAGE_SIZE) + i, new Uint8Array(PAGE_SIZE));
    else unmapRange(oldAddr, oldLen);
    const tailProt = saved.length ? saved[saved.length - 1]!.prot : PROT_READ | PROT_WRITE;
    for (let i = 0; i * PAGE_SIZE < newLen; i++) {
      const vpn = Math.floor(at / PAGE_SIZE) + i;
      m.pages.set(vpn, i < saved.length ? saved[i]!.p : new Uint8Array(PAGE_SIZE));
      prots.set(vpn, i < saved.length ? saved[i]!.prot : tailProt);
    }
  };
  const results = new Map<number, number>();
  let nextTid = 2;
  const sys: Syscalls = {
    mmap(addr, len, prot, flags, fd, offset) {
      m.mmapCalls++;
      if (len <= 0 || addr % PAGE_SIZE) return -EINVAL;
      len = pageAlignUp(len);
      let data: Uint8Array | undefined;
      if (!(flags & MAP_ANONYMOUS)) {
        const f = fds.get(fd);
        if (!f) return -EBADF;
        data = m.files.get(f.path)!.subarray(offset);
      }
      let at = addr;
      if (!(flags & MAP_FIXED)) {
        mmapTop -= len + PAGE_SIZE;
        at = mmapTop;
      }
      mapRange(at, len, data, prot);
      return at;
    },
    munmap(addr, len) {
      if (addr % PAGE_SIZE || len <= 0) return -EINVAL;
      unmapRange(addr, pageAlignUp(len));
      return 0;
    },
    mprotect(addr, len, prot) {
      if (m.enforceProt) {
        if (addr % PAGE_SIZE) return -EINVAL;
        if (!allMapped(addr, pageAlignUp(len))) return -ENOMEM;
      }
      for (let o = 0; o < pageAlignUp(len); o += PAGE_SIZE) {
        if (m.pages.has(Math.floor((addr + o) / PAGE_SIZE))) prots.set(Math.floor((addr + o) / PAGE_SIZE), prot);
      }
      return 0;
    },
    // Linux mm/mremap.c order of checks, with pages standing in for VMAs (a range is "one VMA" if all mapped).
    mremap(oldAddr, oldLen, newLen, flags, newAddr = 0) {
      m.mremapCalls++;
      if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) return -EINVAL;
      if (flags & MREMAP_FIXED && !(flags & MREMAP_MAYMOVE)) return -EINVAL;
      if (flags & MREMAP_DONTUNMAP && (!(flags & MREMAP_MAYMOVE) || oldLen !== newLen)) return -EINVAL;
      if (oldAddr % PAGE_SIZE) return -EINVAL;
      oldLen = pageAlignUp(oldLen);
      newLen = pageAlignUp(newLen);
      if (!newLen) return -EINVAL;
      if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
        // mremap_to
        if (newAddr % PAGE_SIZE || newLen > TASK_SIZE || newAddr > TASK_SIZE - newLen) return -EINVAL;
        if (oldAddr + oldLen > newAddr && newAddr + newLen > oldAddr) return -EINVAL;
        if (flags & MREMAP_FIXED) unmapRange(newAddr, newLen);
        if (oldLen > newLen) {
          unmapRange(oldAddr + newLen, oldLen - newLen);
          oldLen = newLen;
        }
        if (!allMapped(oldAddr, oldLen)) return -EFAULT;
        let at = newAddr;
        if (!(flags & MREMAP_FIXED)) {
          mmapTop -= newLen + PAGE_SIZE;
          at = mmapTop;
        }
        moveRange(oldAddr, oldLen, at, newLen, (flags & MREMAP_DONTUNMAP) !== 0);
        return at;
      }
      if (oldLen >= newLen) {
        unmapRange(oldAddr + newLen, oldLen - newLen);
        return oldAddr;
      }
      if (!allMapped(oldAddr, oldLen)) return -EFAULT;
      if (noneMapped(oldAddr + oldLen, newLen - oldLen)) {
        // vma_expandable: grow in place
        mapRange(oldAddr + oldLen, newLen - oldLen, undefined, protOf(oldAddr + oldLen - PAGE_SIZE));
        return oldAddr;
      }
      if (!(flags & MREMAP_MAYMOVE)) return -ENOMEM;
      mmapTop -= newLen + PAGE_SIZE;
      moveRange(oldAddr, oldLen, mmapTop, newLen, false);
      return mmapTop;
    },
    brk(addr) {
      if (addr === 0 || addr < brkStart) return brkCur;
      const oldTop = pageAlignUp(brkCur),
        newTop = pageAlignUp(addr);
      if (newTop > oldTop) mapRange(oldTop, newTop - oldTop);
      else unmapRange(newTop, oldTop - newTop);
      brkCur = addr;
      return brkCur;
    },
    open(path, flags) {
      if (!m.files.has(path)) {
        if (!(flags & O_CREAT)) return -ENOENT;
        m.files.set(path, new Uint8Array(0));
      }
      if (flags & O_TRUNC) m.files.set(path, new Uint8Array(0));
      const fd = nextFd++;
      fds.set(fd, { path, pos: 0 });
      return fd;
    },
    read(fd, va, count) {
      const f = fds.get(fd);
      if (!f) return -EBADF;
      const data = m.files.get(f.path)!;
      const n = Math.max(0, Math.min(count, data.length - f.pos));
      mmu.write(va, data.subarray(f.pos, f.pos + n));
      f.pos += n;
      return n;
    },
    write(fd, va, count) {
      const buf = new Uint8Array(count);
      mmu.read(va, buf);
      if (fd === 1 || fd === 2) {
        m.stdout.push(new TextDecoder().decode(buf));
        return count;
      }
      const f = fds.get(fd);
      if (!f) return -EBADF;
      const old = m.files.get(f.path)!;
      const out = new Uint8Array(Math.max(old.length, f.pos + count));
      out.set(old);
      out.set(buf, f.pos);
      m.files.set(f.path, out);
      f.pos += count;
      return count;
    },
    close(fd) {
      return fds.delete(fd) ? 0 : -EBADF;
    },
    fstat(fd, va) {
      const f = fds.get(fd);
      if (!f) return -EBADF;
      mmu.fill(va, 0, STAT_SIZE);
      mmu.store64(va + STAT_ST_SIZE, m.files.get(f.path)!.length);
      return 0;
    },
    lseek(fd, off) {
      const f = fds.get(fd);
      if (!f) return -EBADF;
      f.pos = off;
      return off;
    },
    clone(entry, arg, ctid = 0) {
      const fn = program?.threads?.[entry];
      if (!fn) return -EINVAL;
      const tid = nextTid++;
      const u = { ...ctx, tid };
      if (ctid) mmu.store32(ctid, tid);
      try {
        results.set(tid, fn(u, arg));
      } catch (e) {
        if (e instanceof ThreadExit) results.set(tid, e.code);
        else throw e;
      }
      if (ctid) mmu.store32(ctid, 0); // CLONE_CHILD_CLEARTID (no waiter can exist: threads run here)
      return tid;
    },
    futex(uaddr, op, val, timeoutMs = -1) {
      // threads run to completion inside clone(), so nobody sleeps when a wake comes, and a wait that
      // would sleep can never be woken: with a timeout it times out, without one it is a test bug
      if ((op & FUTEX_CMD_MASK) === FUTEX_WAKE) return 0;
      if (uaddr % 4 !== 0) return -EINVAL;
      if (!mmu.probe(uaddr, false)) return -EFAULT;
      if (mmu.load32(uaddr) !== val >>> 0) return -EAGAIN;
      if (timeoutMs >= 0) return -ETIMEDOUT;
      throw new Error(
        `fake-user: FUTEX_WAIT on 0x${uaddr.toString(16)} would sleep for ever (threads run synchronously)`,
      );
    },
    join(tid) {
      return results.get(tid) ?? -EINVAL;
    },
    fork() {
      throw new Error('fake-user: fork needs a second address space (run the program on the machine)');
    },
    execve() {
      throw new Error('fake-user: execve needs the machine (run the program on it)');
    },
    wait4() {
      return -ECHILD;
    },
    barrier(_id, count) {
      if (count > 1) throw new Error('fake-user: barriers need real threads');
      return 0;
    },
    getpid: () => 1,
    gettid: () => 1,
    sched_yield: () => 0,
    clock_gettime: () => performance.now(),
    sched_setaffinity: () => 0,
    sched_getaffinity: () => 1,
    exit(code) {
      throw new ThreadExit(code);
    },
  };
  void ENOMEM;
  const ctx: UserContext = {
    mmu,
    sys,
    pid: 1,
    tid: 1,
    cpu: 0,
    seed,
    argv,
    report: (v) => {
      m.reports.push(v);
    },
  };
  return ctx;
}
