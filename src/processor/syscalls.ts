// System calls on P (managers/processor/{mmap,fs,...}): the P side of every call. Address-space calls
// take P's mmap_sem for write, ask M (the VMA owner) first, and then replay on P's page tables the
// operations M reports (zap / move), in M's order: "only call after M updated its mmap".
// File calls go to S. Results follow Linux: a non-negative value or -errno, passed through from M/S.
// Locks: changeAddressSpace takes mmap_sem (kMmSem) for write with downWrite (not for mremap under the
// mremap-unserialized flag) and sets kMmSemOwner; the replay (releasePgtable, movePageTables,
// changeProtection) runs under it and takes the PTE-page and line locks it needs. File calls take no lock
// of their own. clone publishes the new thread by Atomics (kCtlLiveThreads CAS, kThreadState, then the
// spawn ring and kCtlHostDoorbell); join, barrier and futex waits sleep off the CPU (hang.ts sleepOn:
// the watchdog sees the CPU as scheduled, the hang check sees the thread asleep). Syscall return is a
// schedule point (Kern.task.tick), as is sched_yield. A ProcSyscalls is called only by its task (the
// task worker's own thread), holding no kernel lock; afterAddressSpaceCall runs after mmap_sem is released.
import { BroadcastChannel } from 'node:worker_threads';
import {
  P2M_BRK,
  P2M_EXECVE,
  P2M_MMAP,
  P2M_MPROTECT,
  P2M_MREMAP,
  P2M_MUNMAP,
  P2S_CLOSE,
  P2S_LSEEK,
  P2S_OPEN,
  P2S_READ,
  P2S_STAT,
  P2S_WRITE,
} from '../fabric/opcodes.ts';
import {
  zAsReply,
  zExecveReply,
  zLseekReply,
  zStatReply,
  type AsReply,
  type CloseReq,
  type ExecveReq,
  type LseekReq,
  type OpenReq,
  type PtOp,
  type ReadReq,
  type StatReply,
  type StatReq,
  type WriteReq,
} from '../fabric/proto.ts';
import {
  kCpuKernelEnterMs,
  kCpuState,
  kCpuStateKernel,
  kCpuStateUser,
  kMaxTasks,
  kThreadCpu,
  kThreadExec,
  kThreadAffinity,
  kBarrierCount,
  kBarrierGen,
  kNrBarriers,
  kCtlLiveThreads,
  kCtlShutdown,
  kMaxThreads,
  kMmAsChanges,
  kMmKilled,
  kMmSem,
  kMmSemOwner,
  kMmUsers,
  kNodeMemory,
  kNodeStorage,
  kThreadEntry,
  kThreadExit,
  kThreadFClearTid,
  kThreadChldGen,
  kThreadParent,
  kThreadPid,
  kThreadSignal,
  kThreadState,
  THREAD_CREATED,
  THREAD_RUNNING,
  THREAD_EXITED,
} from '../kernel/layout.ts';
import { kSyscallBase, S, SYSCALL_NAMES } from '../kernel/stats.ts';
import { downWrite, LOCK_KIND, upWrite } from '../kernel/sync.ts';
import {
  CLOCK_MONOTONIC,
  E2BIG,
  EAGAIN,
  EBADF,
  EBUSY,
  ECHILD,
  EDEADLK,
  EFAULT,
  EINVAL,
  ENOENT,
  ENODEV,
  ENOSYS,
  ESRCH,
  FUTEX_CMD_MASK,
  FUTEX_WAIT,
  FUTEX_WAKE,
  MAP_ANONYMOUS,
  MAP_POPULATE,
  MREMAP_DONTUNMAP,
  PAGE_SIZE,
  PROT_WRITE,
  STAT_SIZE,
  STAT_ST_BLKSIZE,
  STAT_ST_MODE,
  STAT_ST_SIZE,
  WNOHANG,
  wExitStatus,
  wTermSig,
} from '../uapi/abi.ts';
import type { Syscalls } from '../uapi/program.ts';
import { ExecImage, ThreadExit } from '../uapi/program.ts';

/** The argv strings execve accepts, in bytes with their NULs (MAX_ARG_STRLEN: 32 pages). */
const kMaxArgBytes = 128 * 1024;
import { pcacheHandleFault, FAULT_OK } from './pcache/fault.ts';
import type { Kern } from './kern.ts';
import { changeProtection, releasePgtable } from './mm.ts';
import { movePageTables } from './mremap.ts';
import type { CpuMmu } from './mmu.ts';
import { futexWait, futexWake } from './futex.ts';
import { sleepOn, sleepUntil, SLEEP_BARRIER, SLEEP_JOIN } from './hang.ts';
import { doFork, publishTask, reserveTask } from './fork.ts';
import { abandonTid, allocTid, reapIfExited } from './pid.ts';
import { hex } from '../lib/text.ts';

type SyscallName = (typeof SYSCALL_NAMES)[number];

/** Called after every address-space syscall when --check syscall is on (stop-the-world checker). */
export type SyscallHook = (name: string) => void;

export class ProcSyscalls implements Syscalls {
  private readonly page = new Uint8Array(PAGE_SIZE);
  afterAddressSpaceCall: SyscallHook | undefined;

  constructor(
    private readonly k: Kern,
    private readonly mmu: CpuMmu,
    /** thread entry names of the running program, in the order clone encodes them (execve changes them) */
    private entries: readonly string[],
    /** P's console: where fd 1 and 2 go (none in unit tests: then they go to S like any fd) */
    private readonly console?: BroadcastChannel,
    /** the programs execve may start: name -> its thread entries (sorted) */
    private readonly images: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {
    this.hasStorage = k.env.config.topology === '1P-1M-1S';
  }
  private readonly hasStorage: boolean;

  // ---- kernel entry/exit bookkeeping ----
  private enter(name: SyscallName): number {
    const k = this.k;
    const sh = k.sh;
    k.env.stat(S.syscall);
    k.env.stat(kSyscallBase + SYSCALL_NAMES.indexOf(name));
    const prev = sh.cpu.load(k.env.ctx, kCpuState);
    sh.cpu.store(k.env.ctx, kCpuState, kCpuStateKernel);
    sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, Math.floor(k.env.nowMs()));
    return prev;
  }
  private leave(prev: number, ret: number): number {
    const k = this.k;
    const sh = k.sh;
    if (ret < 0 && ret > -4096) k.env.stat(S.syscall_error);
    sh.cpu.store(k.env.ctx, kCpuKernelEnterMs, -1);
    sh.cpu.store(k.env.ctx, kCpuState, prev);
    return ret;
  }
  private sys(name: SyscallName, body: () => number): number {
    const prev = this.enter(name);
    let ret = -EFAULT;
    try {
      ret = body();
    } finally {
      this.leave(prev, ret);
    }
    // exit_to_user_mode: schedule() if need_resched
    if (prev === kCpuStateUser) this.k.task?.tick();
    return ret;
  }

  /**
   * An address-space change: P's mmap_sem for write around the M call and what P does with M's reply
   * (by default, replay the page-table operations M reports). Returns M's result.
   */
  private changeAddressSpace(
    opcode: number,
    payload: unknown,
    opts: { locked?: boolean; apply?: (r: AsReply) => void } = {},
  ): number {
    const k = this.k;
    const sh = k.sh;
    return this.mmapWrite(opts.locked ?? true, () => {
      // Two address-space changes of one mm in progress at once: only possible when one of them runs
      // without mmap_sem (mremap-unserialized). Counted as that flag's broken branch running.
      const changes = sh.mm.idx(k.mmSlot, kMmAsChanges);
      if (Atomics.add(sh.mm.a, changes, 1) > 0 && k.env.bugs.has('mremap-unserialized'))
        k.env.bugRan('mremap-unserialized');
      try {
        const rep = k.fab.sendReply(kNodeMemory, opcode, { pid: k.pid, payload }, zAsReply);
        const body = rep.body;
        if (!body) return rep.status < 0 ? rep.status : -EFAULT;
        (opts.apply ?? ((b) => this.replay(b.ops)))(body);
        return body.ret;
      } finally {
        Atomics.sub(sh.mm.a, changes, 1);
      }
    });
  }

  /** `body` with P's mmap_sem held for write (unless !locked: mremap-unserialized), owner recorded. */
  private mmapWrite(locked: boolean, body: () => number): number {
    const k = this.k;
    const sh = k.sh;
    const sem = sh.mm.idx(k.mmSlot, kMmSem);
    if (locked) {
      downWrite(k.env, sh.mm.a, sem, k.mmSlot);
      sh.mm.store(k.mmSlot, kMmSemOwner, k.cpu + 1);
    }
    k.mmapWriteHeld = locked;
    try {
      return body();
    } finally {
      k.mmapWriteHeld = false;
      if (locked) {
        sh.mm.store(k.mmSlot, kMmSemOwner, 0);
        upWrite(sh.mm.a, sem);
      }
    }
  }

  /** A syscall that is one address-space change, followed by the --check syscall hook. */
  private addressSpaceCall(
    name: SyscallName,
    opcode: number,
    payload: unknown,
    opts: { locked?: boolean; apply?: (r: AsReply) => void } = {},
  ): number {
    return this.sys(name, () => {
      const ret = this.changeAddressSpace(opcode, payload, opts);
      this.afterAddressSpaceCall?.(name);
      return ret;
    });
  }

  private replay(ops: PtOp[]): void {
    for (const op of ops) {
      if (op.op === 'zap') {
        if (this.k.env.bugs.has('brk-shrink-no-zap') && op.why === 'brk') {
          // LegoOS HEAD brk: M shrank the heap, P keeps the PTEs of the shrunk range.
          this.k.env.bugRan('brk-shrink-no-zap');
          continue;
        }
        releasePgtable(this.k, op.start, op.start + op.len);
      } else movePageTables(this.k, op.old, op.new, op.len);
    }
  }

  // ---- memory ----
  mmap(addr: number, len: number, prot: number, flags: number, fd: number, offset: number): number {
    let populate = false;
    const ret = this.sys('mmap', () => {
      const k = this.k;
      if (offset % PAGE_SIZE !== 0) return -EINVAL; // arch sys_mmap: off & ~PAGE_MASK
      let file: StatReply | undefined;
      if ((flags & MAP_ANONYMOUS) === 0) {
        if (!this.hasStorage) return -EBADF;
        const st = k.fab.sendReply(
          kNodeStorage,
          P2S_STAT,
          { pid: k.pid, payload: { fd } satisfies StatReq },
          zStatReply,
        );
        if (st.status < 0 || !st.body) return -EBADF;
        file = st.body;
      }
      const payload = {
        addr,
        len,
        prot,
        flags,
        offset,
        file: file ? { path: file.path, size: file.size, readOnly: file.readOnly } : undefined,
      };
      const r = this.changeAddressSpace(P2M_MMAP, payload);
      if (r >= 0) {
        k.env.printk(
          'debug',
          `SYSC_mmap(cpu${k.cpu}): [${hex(r)} - ${hex(r + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE)}] prot ${hex(prot)} flags ${hex(flags)}${file ? ` file ${file.path}` : ''}`,
        );
        populate = (flags & MAP_POPULATE) !== 0;
      }
      this.afterAddressSpaceCall?.('mmap');
      return r;
    });
    if (populate) this.populate(ret, len, (prot & PROT_WRITE) !== 0);
    return ret;
  }

  /** MAP_POPULATE: fault every page in now (errors are ignored, as Linux's populate ignores them). */
  private populate(start: number, len: number, write: boolean): void {
    for (let va = start; va < start + len; va += PAGE_SIZE) {
      if (pcacheHandleFault(this.k, va, write) !== FAULT_OK) break;
    }
  }

  munmap(addr: number, len: number): number {
    return this.addressSpaceCall('munmap', P2M_MUNMAP, { addr, len });
  }

  mprotect(addr: number, len: number, prot: number): number {
    return this.addressSpaceCall(
      'mprotect',
      P2M_MPROTECT,
      { addr, len, prot },
      {
        // M has applied the new protection to every VMA in the range; P rewrites the PTEs.
        apply: (r) => {
          if (r.ret === 0 && len > 0)
            changeProtection(this.k, addr, addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE, prot);
        },
      },
    );
  }

  mremap(oldAddr: number, oldLen: number, newLen: number, flags: number, newAddr = 0): number {
    const k = this.k;
    // mremap-unserialized (LegoOS HEAD): P takes no mm lock around the M request and the PTE move.
    const locked = !k.env.bugs.has('mremap-unserialized');
    return this.addressSpaceCall(
      'mremap',
      P2M_MREMAP,
      { addr: oldAddr, oldLen, newLen, flags, newAddr },
      {
        locked,
        apply: (r) => {
          if (r.ret >= 0) this.logMremap(r, oldAddr, oldLen, newLen, flags);
          this.replay(r.ops);
        },
      },
    );
  }

  /** The SYSC_mremap debug lines of LegoOS (CONFIG_DEBUG_MREMAP). */
  private logMremap(r: AsReply, oldAddr: number, oldLen: number, newLen: number, flags: number): void {
    const k = this.k;
    const moves = r.ops.filter((o) => o.op === 'move');
    for (const op of moves) {
      k.env.printk(
        'debug',
        `SYSC_mremap(cpu${k.cpu}): move: [${hex(op.old)} - ${hex(op.old + op.len)}] -> [${hex(op.new)} - ${hex(op.new + op.len)}]${flags & MREMAP_DONTUNMAP ? ' dontunmap' : ''}`,
      );
    }
    if (moves.length === 0) {
      k.env.printk(
        'debug',
        `SYSC_mremap(cpu${k.cpu}): ${newLen < oldLen ? 'shrink' : 'resize'}: [${hex(oldAddr)} - ${hex(oldAddr + oldLen)}] -> [${hex(r.ret)} - ${hex(r.ret + newLen)}]`,
      );
    }
  }

  brk(addr: number): number {
    return this.addressSpaceCall('brk', P2M_BRK, { brk: addr });
  }

  // ---- files (S) ----
  open(path: string, flags: number, mode = 0o644): number {
    return this.sys('open', () =>
      !this.hasStorage
        ? -ENODEV
        : this.k.fab.sendReply(kNodeStorage, P2S_OPEN, {
            pid: this.k.pid,
            payload: { path, flags, mode } satisfies OpenReq,
          }).status,
    );
  }

  close(fd: number): number {
    return this.sys('close', () =>
      !this.hasStorage
        ? -ENODEV
        : this.k.fab.sendReply(kNodeStorage, P2S_CLOSE, { pid: this.k.pid, payload: { fd } satisfies CloseReq }).status,
    );
  }

  lseek(fd: number, offset: number, whence: number): number {
    return this.sys('lseek', () => {
      if (!this.hasStorage) return -ENODEV;
      const rep = this.k.fab.sendReply(
        kNodeStorage,
        P2S_LSEEK,
        { pid: this.k.pid, payload: { fd, offset, whence } satisfies LseekReq },
        zLseekReply,
      );
      return rep.status < 0 ? rep.status : (rep.body?.ret ?? -EFAULT);
    });
  }

  read(fd: number, bufVa: number, count: number): number {
    return this.sys('read', () => {
      if (count < 0) return -EINVAL;
      if (!this.hasStorage) return -ENODEV;
      let done = 0;
      while (done < count) {
        const want = Math.min(PAGE_SIZE, count - done);
        const rep = this.k.fab.sendReply(kNodeStorage, P2S_READ, {
          pid: this.k.pid,
          payload: { fd, count: want } satisfies ReadReq,
        });
        if (rep.status < 0) return done > 0 ? done : rep.status;
        const n = rep.status;
        if (n === 0) break;
        // Copy out of the mailbox before touching user memory: a fault reuses the mailbox.
        this.page.set(rep.mbox.page.subarray(0, n));
        if (!this.copyToUser(bufVa + done, this.page, n)) return done > 0 ? done : -EFAULT;
        done += n;
        if (n < want) break;
      }
      return done;
    });
  }

  write(fd: number, bufVa: number, count: number): number {
    return this.sys('write', () => {
      if (count < 0) return -EINVAL;
      if ((fd === 1 || fd === 2) && this.console) {
        // P's console (LegoOS writes stdout/stderr to the processor's tty, not to S).
        const buf = new Uint8Array(count);
        if (!this.copyFromUser(bufVa, buf, count)) return -EFAULT;
        this.console.postMessage({ type: 'console', fd, pid: this.k.pid, data: buf });
        return count;
      }
      if (!this.hasStorage) return -ENODEV;
      let done = 0;
      while (done < count) {
        const n = Math.min(PAGE_SIZE, count - done);
        if (!this.copyFromUser(bufVa + done, this.page, n)) return done > 0 ? done : -EFAULT;
        const rep = this.k.fab.sendReply(kNodeStorage, P2S_WRITE, {
          pid: this.k.pid,
          payload: { fd, count: n } satisfies WriteReq,
          page: this.page,
        });
        if (rep.status < 0) return done > 0 ? done : rep.status;
        done += rep.status;
        if (rep.status < n) break;
      }
      return done;
    });
  }

  fstat(fd: number, statVa: number): number {
    return this.sys('fstat', () => {
      if (!this.hasStorage) return -ENODEV;
      const rep = this.k.fab.sendReply(
        kNodeStorage,
        P2S_STAT,
        { pid: this.k.pid, payload: { fd } satisfies StatReq },
        zStatReply,
      );
      if (rep.status < 0 || !rep.body) return rep.status < 0 ? rep.status : -EBADF;
      const st = new Uint8Array(STAT_SIZE);
      const dv = new DataView(st.buffer);
      dv.setBigUint64(8, BigInt(rep.body.ino), true); // st_ino
      dv.setBigUint64(16, 1n, true); // st_nlink
      dv.setUint32(STAT_ST_MODE, rep.body.mode, true);
      dv.setBigInt64(STAT_ST_SIZE, BigInt(rep.body.size), true);
      dv.setBigInt64(STAT_ST_BLKSIZE, BigInt(PAGE_SIZE), true);
      dv.setBigInt64(64, BigInt(Math.ceil(rep.body.size / 512)), true); // st_blocks
      return this.copyToUser(statVa, st, STAT_SIZE) ? 0 : -EFAULT;
    });
  }

  /** copy_to_user: -EFAULT instead of a signal when the user buffer is bad. */
  private copyToUser(va: number, src: Uint8Array, n: number): boolean {
    const data = this.k.sh.pcdata;
    return this.mmu.eachPage(va, n, true, true, (p, done, chunk) => data.set(src.subarray(done, done + chunk), p));
  }
  private copyFromUser(va: number, dst: Uint8Array, n: number): boolean {
    const data = this.k.sh.pcdata;
    return this.mmu.eachPage(va, n, false, true, (p, done, chunk) => dst.set(data.subarray(p, p + chunk), done));
  }

  // ---- threads ----
  clone(entry: string, arg: number, ctid = 0): number {
    return this.sys('clone', () => {
      const k = this.k;
      const sh = k.sh;
      const ei = this.entries.indexOf(entry);
      if (ei < 0) return -EINVAL;
      if (!Number.isInteger(ctid) || ctid < 0 || ctid % 4 !== 0) return -EINVAL;
      // threads-max: every live thread is a task with a worker of its own (copy_process: -EAGAIN)
      if (!reserveTask(sh)) return -EAGAIN;
      const tid = allocTid(sh);
      if (tid < 0) {
        sh.ctl.sub(kCtlLiveThreads, 1);
        return -EAGAIN;
      }
      sh.threads.set(tid, kThreadPid, k.pid);
      sh.threads.set(tid, kThreadEntry, ei);
      sh.threads.store(tid, kThreadCpu, k.cpu); // wake_up_new_task places it from the parent's CPU
      sh.threads.store(tid, kThreadAffinity, sh.threads.load(k.tid, kThreadAffinity)); // inherited
      sh.threadArgs.set(tid, arg);
      // CLONE_PARENT_SETTID: the tid is in *ctid before either thread runs (a failed put_user is
      // ignored, as copy_process ignores it); CLONE_CHILD_CLEARTID remembers where to clear it.
      if (ctid !== 0) {
        try {
          this.mmu.putUser32(ctid, tid);
        } catch (e) {
          abandonTid(sh, tid); // the process is being killed: the thread never starts
          sh.ctl.sub(kCtlLiveThreads, 1);
          throw e;
        }
      }
      sh.threadF.set(tid, kThreadFClearTid, ctid);
      sh.mm.add(k.mmSlot, kMmUsers, 1);
      sh.threads.store(tid, kThreadState, THREAD_CREATED);
      publishTask(sh, tid);
      return tid;
    });
  }

  /**
   * fork: a new process whose address space is a copy of this one's (fork.ts); its first thread
   * starts at thread entry `entry` with `arg`. Returns the child's pid, or -errno.
   */
  fork(entry: string, arg: number): number {
    return this.sys('fork', () => {
      const ei = this.entries.indexOf(entry);
      if (ei < 0) return -EINVAL;
      const pid = doFork(this.k, ei, arg);
      if (pid > 0) this.afterAddressSpaceCall?.('fork');
      return pid;
    });
  }

  /**
   * wait4(pid, wstatus, options): reap a child that has exited (pid -1: any child), storing its wait
   * status at statusVa (0: none); WNOHANG returns 0 if none has exited yet. Sleeps off the CPU until a
   * child's exit (its SIGCHLD, kThreadChldGen) when none has. -ECHILD with no such child, -EINVAL for
   * an unknown option, -EFAULT for a bad statusVa (the child is reaped all the same, as in Linux).
   */
  wait4(pid: number, statusVa: number, options: number): number {
    return this.sys('wait4', () => {
      const k = this.k;
      const sh = k.sh;
      if (!Number.isInteger(options) || (options & ~WNOHANG) !== 0) return -EINVAL;
      if (!Number.isInteger(pid) || (pid !== -1 && (pid <= 0 || pid >= kMaxThreads))) return -ECHILD;
      const chld = sh.threads.idx(k.pid, kThreadChldGen);
      for (;;) {
        const gen = Atomics.load(sh.threads.a, chld);
        const found = this.reapChild(pid);
        if (found.pid > 0) {
          if (statusVa !== 0 && !this.mmu.putUser32(statusVa, found.status)) return -EFAULT;
          return found.pid;
        }
        if (!found.any) return -ECHILD;
        if (options & WNOHANG) return 0;
        sleepOn(
          k,
          sh.threads.a,
          chld,
          () => Atomics.load(sh.threads.a, chld) !== gen || this.killed(),
          k.pid,
          LOCK_KIND.join,
        );
        this.mmu.interrupt(); // unwinds if the process is being killed
      }
    });
  }

  /**
   * do_execve (LegoOS managers/processor/exec.c): P2M_EXECVE makes M start a new mm and drop the old
   * one; P zaps the old image's mappings under mmap_sem (exec_mmap: the old mm's pcache lines go, a
   * dirty shared page is written back), takes the new comm, and makes sure the host will start the
   * process's later threads with the new program (the kThreadExec handshake). Then ExecImage unwinds
   * the old program; the task starts the new one's main. The mm slot, its PGD and page-table pages
   * stay (the new image's faults reuse them), as do the open files (no O_CLOEXEC in splitkern).
   */
  execve(program: string, argv: readonly string[]): number {
    const ret = this.sys('execve', () => {
      const k = this.k;
      const sh = k.sh;
      const entries = this.images.get(program);
      if (entries === undefined) return -ENOENT;
      let bytes = 0;
      for (const a of argv) {
        if (typeof a !== 'string') return -EFAULT;
        bytes += Buffer.byteLength(a) + 1;
      }
      if (bytes > kMaxArgBytes) return -E2BIG;
      if (sh.mm.load(k.mmSlot, kMmUsers) > 1) return -EBUSY; // no de_thread
      if (this.killed()) this.mmu.interrupt();
      const comm = program.slice(0, 15);
      const err = this.mmapWrite(true, () => {
        const payload = { comm, argv: [...argv] } satisfies ExecveReq;
        const rep = k.fab.sendReply(kNodeMemory, P2M_EXECVE, { pid: k.pid, payload }, zExecveReply);
        if (rep.status < 0 || !rep.body) return rep.status < 0 ? rep.status : -EFAULT;
        for (const [start, end] of rep.body.oldVmas) releasePgtable(k, start, end);
        return 0;
      });
      if (err < 0) return err;
      k.setCurrent(k.pid, k.mmSlot, k.tid, comm);
      this.tellHostOfImage(program, argv);
      this.entries = entries;
      return 0;
    });
    if (ret < 0) return ret;
    this.afterAddressSpaceCall?.('execve');
    throw new ExecImage(program, argv);
  }

  /**
   * The kThreadExec handshake: the host learns the new program and argv (its threads are started by
   * the host, from the spawn ring) and acknowledges before execve returns to the new image, so a
   * thread the new program clones is started with it.
   */
  private tellHostOfImage(program: string, argv: readonly string[]): void {
    const k = this.k;
    const sh = k.sh;
    if (!this.console) return; // unit tests: no host
    const i = sh.threads.idx(k.pid, kThreadExec);
    const n = Math.abs(Atomics.load(sh.threads.a, i)) + 1;
    Atomics.store(sh.threads.a, i, -n);
    this.console.postMessage({ type: 'exec', pid: k.pid, n, program, argv: [...argv] });
    // Under a controlled schedule the host's answer must not be a scheduling event: wait for it
    // holding the turn (the host answers whatever the schedule does).
    if (k.env.cs?.scheduled)
      while (Atomics.load(sh.threads.a, i) !== n && !this.killed() && sh.ctl.load(kCtlShutdown) === 0)
        Atomics.wait(sh.threads.a, i, -n, 50);
    sleepOn(k, sh.threads.a, i, () => Atomics.load(sh.threads.a, i) === n || this.killed(), k.pid, LOCK_KIND.join);
    this.mmu.interrupt(); // unwinds if the process is being killed
  }

  /** One scan of the children (do_wait): reap the first exited one that matches. */
  private reapChild(want: number): { pid: number; status: number; any: boolean } {
    const sh = this.k.sh;
    let any = false;
    for (let t = 1; t < kMaxThreads; t++) {
      if ((want !== -1 && t !== want) || sh.threads.load(t, kThreadParent) !== this.k.pid) continue;
      const st = sh.threads.load(t, kThreadState);
      if (
        sh.threads.load(t, kThreadPid) !== t ||
        (st !== THREAD_CREATED && st !== THREAD_RUNNING && st !== THREAD_EXITED)
      )
        continue;
      any = true;
      if (st !== THREAD_EXITED) continue;
      // the status is read before the reap: once reaped the row may be freed and handed out again
      const sig = sh.threads.get(t, kThreadSignal);
      const status = sig !== 0 ? wTermSig(sig) : wExitStatus(sh.threads.get(t, kThreadExit));
      if (reapIfExited(sh, t)) return { pid: t, status, any };
    }
    return { pid: 0, status: 0, any };
  }

  join(tid: number): number {
    return this.sys('join', () => {
      const k = this.k;
      const sh = k.sh;
      if (!this.threadOfMine(tid)) return -ESRCH;
      if (tid === k.tid) return -EDEADLK;
      const si = sh.threads.idx(tid, kThreadState);
      const done = (): boolean => Atomics.load(sh.threads.a, si) === THREAD_EXITED || this.killed();
      if (!done()) sleepUntil(k, { kind: SLEEP_JOIN, arg: tid }, sh.threads.a, si, done, LOCK_KIND.join);
      this.mmu.interrupt(); // unwinds if the process is being killed
      return sh.threads.get(tid, kThreadExit);
    });
  }

  barrier(id: number, count: number): number {
    return this.sys('barrier', () => {
      const k = this.k;
      const sh = k.sh;
      if (!Number.isInteger(count) || count <= 0 || count > kMaxTasks) return -EINVAL;
      const b = ((id % kNrBarriers) + kNrBarriers) % kNrBarriers;
      const gen = sh.barrier.load(b, kBarrierGen);
      if (sh.barrier.add(b, kBarrierCount, 1) + 1 === count) {
        sh.barrier.store(b, kBarrierCount, 0);
        sh.barrier.add(b, kBarrierGen, 1);
        sh.barrier.notify(b, kBarrierGen);
        return 0;
      }
      sleepUntil(
        k,
        { kind: SLEEP_BARRIER, arg: b, gen },
        sh.barrier.a,
        sh.barrier.idx(b, kBarrierGen),
        () => sh.barrier.load(b, kBarrierGen) !== gen || this.killed(),
        LOCK_KIND.barrier,
      );
      this.mmu.interrupt();
      return 0;
    });
  }

  futex(uaddr: number, op: number, val: number, timeoutMs = -1): number {
    return this.sys('futex', () => {
      const cmd = op & FUTEX_CMD_MASK;
      if (!Number.isInteger(uaddr) || !Number.isInteger(val)) return -EINVAL;
      if (cmd === FUTEX_WAKE) return futexWake(this.k, uaddr, val);
      if (cmd !== FUTEX_WAIT) return -ENOSYS;
      if (Number.isNaN(timeoutMs)) return -EINVAL;
      const r = futexWait(this.k, this.mmu, uaddr, val, timeoutMs < 0 ? -1 : timeoutMs);
      this.mmu.interrupt(); // unwinds if the process is being killed
      return r;
    });
  }

  private killed(): boolean {
    const sh = this.k.sh;
    return sh.mm.load(this.k.mmSlot, kMmKilled) !== 0;
  }

  sched_yield(): number {
    return this.sys('sched_yield', () => {
      this.k.task?.yield();
      return 0;
    });
  }

  clock_gettime(clockId: number): number {
    return this.sys('clock_gettime', () => (clockId === CLOCK_MONOTONIC ? this.k.env.nowMs() : -EINVAL));
  }

  sched_setaffinity(tid: number, mask: number): number {
    return this.sys('sched_setaffinity', () => {
      const k = this.k;
      const sh = k.sh;
      const t = tid === 0 ? k.tid : this.liveThread(tid);
      if (t < 0) return -ESRCH;
      // cpumask_and(new_mask, in_mask, cpu_active_mask): bits past the last CPU are dropped
      const online = 2 ** sh.geo.ctx.cpus;
      if (!Number.isInteger(mask) || mask <= 0 || mask % online === 0) return -EINVAL;
      sh.threads.store(t, kThreadAffinity, mask % online);
      if (t === k.tid) k.task?.checkAffinity();
      return 0;
    });
  }

  sched_getaffinity(tid: number): number {
    return this.sys('sched_getaffinity', () => {
      const k = this.k;
      const t = tid === 0 ? k.tid : this.liveThread(tid);
      if (t < 0) return -ESRCH;
      return k.sh.threads.load(t, kThreadAffinity) || 2 ** k.sh.geo.ctx.cpus - 1;
    });
  }

  /** Is tid a thread (live or not) of this process? */
  private threadOfMine(tid: number): boolean {
    return (
      Number.isInteger(tid) && tid > 0 && tid < kMaxThreads && this.k.sh.threads.get(tid, kThreadPid) === this.k.pid
    );
  }

  /** tid if it is a live thread of this process, else -1 */
  private liveThread(tid: number): number {
    if (!this.threadOfMine(tid)) return -1;
    const st = this.k.sh.threads.load(tid, kThreadState);
    return st === THREAD_CREATED || st === THREAD_RUNNING ? tid : -1;
  }

  getpid(): number {
    return this.k.pid;
  }
  gettid(): number {
    return this.k.tid;
  }

  exit(code: number): never {
    throw new ThreadExit(code);
  }
}

export { THREAD_CREATED };
