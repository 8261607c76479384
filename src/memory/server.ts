// The memory component M (managers/memory/): owns every process's VMAs (LegoMm, Linux semantics),
// the M-side page tables (user VA -> frame of M's DRAM) and the user pages themselves. It answers P's
// page-cache misses and write-backs and its address-space calls; file-backed pages come from S.
//
// M is single-threaded (one handler loop), so its own structures need no locks; what it shares with
// P goes only through the fabric. Memory's methods run on the M worker's thread only, one request at a
// time (serveForever): a request's mailbox is read while it is posted and answered through the
// ReplyWriter; a file-backed miss makes M a requester too (M2S_READ on M's own mailbox).
import type { Env } from '../kernel/env.ts';
import { Fabric, MalformedMessage, serveForever, type IncomingRequest, type ReplyWriter } from '../fabric/ibapi.ts';
import type { z } from 'zod';
import {
  M2S_READ,
  P2M_BRK,
  P2M_EXECVE,
  P2M_EXIT,
  P2M_FORK,
  P2M_MMAP,
  P2M_MPROTECT,
  P2M_MREMAP,
  P2M_MUNMAP,
  P2M_PCACHE_FLUSH,
  P2M_PCACHE_MISS,
} from '../fabric/opcodes.ts';
import {
  zBrkReq,
  zExecveReq,
  zForkReq,
  zMmapReq,
  zMprotectReq,
  zMremapReq,
  zMunmapReq,
  type AsReply,
  type ExecveReply,
  type M2sReadReq,
  type ExitReply,
  type ForkReply,
  type PtOp,
} from '../fabric/proto.ts';
import { kNodeMemory, kNodeStorage } from '../kernel/layout.ts';
import { EACCES, EEXIST, EFAULT, EINVAL, ENOMEM, ENOSYS, ESRCH, PAGE_SIZE } from '../uapi/abi.ts';
import { LegoMm, VM_MAYSHARE, type Vma } from './vm/mm.ts';
import { Dram } from './dram.ts';
import { ShmemRegistry, type ShmKey } from './shmem.ts';

/** Where the kernel's top-down mmap area starts: the first 0x7e000-byte mmap lands at 0x7fffe5788000. */
export const kMmapBase = 0x7fffe5806000;
export const kStackTop = 0x7ffffffff000;
export const kBrkStart = 0x602000;

interface Proc {
  pid: number;
  comm: string;
  mm: LegoMm;
  /** M-side page table: virtual page number -> frame */
  pages: Map<number, number>;
  /** page-table operations recorded during the current call, replayed by P */
  ops: PtOp[];
  why: 'munmap' | 'brk' | 'mmap-fixed' | 'mremap';
}

/** The shared object a VMA maps, if it is a shared mapping: its shmem segment, or its file. */
function sharedKey(v: Vma): ShmKey | undefined {
  if (v.shmemId !== undefined) return `shm:${v.shmemId}`;
  if (v.file && v.flags & VM_MAYSHARE) return `file:${v.file.path}`;
  return undefined;
}

/** The page offset of `va` in the object a VMA maps. */
const pgoffOf = (v: Vma, va: number): number => v.pgoff + Math.floor((va - v.start) / PAGE_SIZE);

export class Memory {
  readonly procs = new Map<number, Proc>();
  readonly dram: Dram;
  readonly shmem: ShmemRegistry;
  readonly zeroPage = new Uint8Array(PAGE_SIZE);
  stats = {
    miss: 0,
    missZero: 0,
    missFile: 0,
    missShared: 0,
    flush: 0,
    flushFail: 0,
    flushShared: 0,
    forks: 0,
    cowBreak: 0,
    shmFreed: 0,
  };
  /**
   * The colour of shared mappings (vma.ts shmColour): the pcache's set span, so that every alias of
   * a shared page indexes one set; 0 under bug shared-no-colour (LegoOS M's get_unmapped_area).
   */
  private readonly shmColour: number;

  constructor(
    readonly env: Env,
    private readonly fab: Fabric | undefined,
    memoryBytes: number,
  ) {
    this.dram = new Dram(memoryBytes);
    this.shmem = new ShmemRegistry(this.dram);
    this.shmColour = env.bugs.has('shared-no-colour') ? 0 : env.sh.geo.nrSets * PAGE_SIZE;
  }

  /**
   * One request. A body that does not decode to what its opcode carries (proto.ts) is answered
   * -EINVAL with the decoder's error in the log, as a C ABI could not have carried it.
   */
  handle(req: IncomingRequest, out: ReplyWriter): void {
    try {
      this.dispatch(req, out);
    } catch (e) {
      if (!(e instanceof MalformedMessage)) throw e;
      this.env.printk('error', `memory: ${e.message}`);
      out.reply(-EINVAL);
    }
  }

  private dispatch(req: IncomingRequest, out: ReplyWriter): void {
    // Test hook for the emulator's own failure handling (never a kernel behaviour): see README "Testing".
    if (process.env.SPLITKERN_INJECT === 'memory-crash' && req.opcode === P2M_MMAP)
      throw new Error('injected memory worker crash (SPLITKERN_INJECT)');
    switch (req.opcode) {
      case P2M_PCACHE_MISS:
        return this.pcacheMiss(req, out);
      case P2M_PCACHE_FLUSH:
        return this.pcacheFlush(req, out);
      case P2M_EXECVE:
        return this.execve(req, out);
      case P2M_FORK:
        return this.fork(req, out);
      case P2M_EXIT:
        return this.exit(req, out);
      case P2M_MMAP:
        return this.asCall(req, out, 'mmap-fixed', zMmapReq, (mm, b) =>
          mm.mmap(b.addr, b.len, b.prot, b.flags, b.file ?? null, b.offset),
        );
      case P2M_MUNMAP:
        return this.asCall(req, out, 'munmap', zMunmapReq, (mm, b) => mm.munmap(b.addr, b.len));
      case P2M_MREMAP:
        return this.asCall(req, out, 'mremap', zMremapReq, (mm, b) =>
          mm.mremap(b.addr, b.oldLen, b.newLen, b.flags, b.newAddr),
        );
      case P2M_BRK:
        return this.asCall(req, out, 'brk', zBrkReq, (mm, b) => mm.brkSet(b.brk));
      case P2M_MPROTECT:
        return this.asCall(req, out, 'munmap', zMprotectReq, (mm, b) => mm.mprotect(b.addr, b.len, b.prot));
      default:
        this.env.printk('warn', `memory: WARNING: Invalid opcode: ${req.opcode} from ctx ${req.src}`);
        out.reply(-ENOSYS);
    }
  }

  /** A new lego_task_struct with an empty mm (its hooks bound to it). */
  private newProc(pid: number, comm: string): Proc {
    const proc: Proc = {
      pid,
      comm,
      pages: new Map(),
      ops: [],
      why: 'munmap',
      mm: undefined as unknown as LegoMm,
    };
    proc.mm = new LegoMm({
      mmapBase: kMmapBase,
      brkStart: kBrkStart,
      stackTop: kStackTop,
      shmColour: this.shmColour,
      newShmemId: () => this.shmem.newShmemId(),
      onUncolouredShared: this.env.bugs.has('shared-no-colour') ? () => this.env.bugRan('shared-no-colour') : undefined,
      hooks: {
        movePages: (o, n, len) => this.movePages(proc, o, n, len),
        zapPages: (s, len) => this.zapPages(proc, s, len),
      },
    });
    return proc;
  }

  /**
   * handle_p2m_execve: a new lego_task_struct's mm for the program (exec_loader's bprm_mm_init). A
   * process that already has one is exec'ing another program: its old mm goes (its pages released,
   * its shared objects collected if nothing else maps them), and the reply lists the old VMAs, which P
   * zaps.
   */
  private execve(req: IncomingRequest, out: ReplyWriter): void {
    const b = req.body(zExecveReq);
    const old = this.procs.get(req.pid);
    const oldVmas = old ? this.dropMm(old) : [];
    const proc = this.newProc(req.pid, b.comm);
    this.procs.set(req.pid, proc);
    if (old) this.collectShared();
    this.env.printk(
      'debug',
      `memory: execve pid ${req.pid} (${b.comm})${old ? ` replacing ${old.comm}` : ''}: mmap_base 0x${kMmapBase.toString(16)} brk 0x${kBrkStart.toString(16)}`,
    );
    const reply: ExecveReply = { mmapBase: kMmapBase, brk: kBrkStart, stackTop: kStackTop, oldVmas };
    out.reply(0, 0, reply);
  }

  /**
   * handle_p2m_fork: a new lego_task_struct for the child (req.pid) with dup_lego_mm of the parent's:
   * every VMA copied, every page shared by reference (lego_copy_page_range). A later write-back of
   * either side to a private page copies it first (pcacheFlush). The reply lists the VMAs P copies
   * its page tables over (fork_vmainfo: start, end, vm_flags).
   */
  private fork(req: IncomingRequest, out: ReplyWriter): void {
    const b = req.body(zForkReq);
    const parent = this.procs.get(b.parentTgid);
    if (!parent) {
      this.env.printk('warn', `memory: fork: no parent tgid ${b.parentTgid} for pid ${req.pid}`);
      out.reply(-ESRCH);
      return;
    }
    if (this.procs.has(req.pid)) {
      out.reply(-EEXIST);
      return;
    }
    const child = this.newProc(req.pid, b.comm);
    child.mm.dupFrom(parent.mm);
    for (const [vpn, f] of parent.pages) child.pages.set(vpn, this.dram.get(f));
    this.procs.set(req.pid, child);
    this.stats.forks++;
    const reply: ForkReply = { vmas: child.mm.vmas.map((v: Vma) => [v.start, v.end, v.flags]) };
    this.env.printk('debug', `memory: fork: pid ${req.pid} from ${b.parentTgid}: ${reply.vmas.length} VMAs`);
    out.reply(0, 0, reply);
  }

  private exit(req: IncomingRequest, out: ReplyWriter): void {
    const p = this.procs.get(req.pid);
    if (!p) {
      out.reply(-ESRCH);
      return;
    }
    const vmas = this.dropMm(p);
    this.procs.delete(req.pid);
    this.collectShared();
    const reply: ExitReply = { vmas };
    out.reply(0, 0, reply);
  }

  /** A process's mm goes (exit, execve): its private pages are released; returns its VMA ranges. */
  private dropMm(p: Proc): Array<[number, number]> {
    for (const f of p.pages.values()) this.dram.release(f);
    return p.mm.vmas.map((v: Vma) => [v.start, v.end]);
  }

  private asCall<B>(
    req: IncomingRequest,
    out: ReplyWriter,
    why: Proc['why'],
    schema: z.ZodType<B>,
    call: (mm: LegoMm, b: B) => number,
  ): void {
    const p = this.procs.get(req.pid);
    if (!p) {
      out.reply(-ESRCH, 0, { ret: -ESRCH, ops: [] } satisfies AsReply);
      return;
    }
    p.ops = [];
    p.why = why;
    let ret: number;
    try {
      ret = call(p.mm, req.body(schema));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      ret = -EINVAL; // a non-integer argument: the C ABI could not have carried it
    }
    if (p.ops.some((o) => o.op === 'zap')) this.collectShared();
    const reply: AsReply = { ret, ops: p.ops };
    p.ops = [];
    out.reply(ret < 0 ? ret : 0, 0, reply);
  }

  private movePages(p: Proc, oldStart: number, newStart: number, len: number): void {
    const o = oldStart / PAGE_SIZE;
    const n = newStart / PAGE_SIZE;
    const pages = len / PAGE_SIZE;
    const moved: Array<[number, number]> = [];
    for (let i = 0; i < pages; i++) {
      const f = p.pages.get(o + i);
      if (f !== undefined) {
        p.pages.delete(o + i);
        moved.push([n + i, f]);
      }
    }
    for (const [vpn, f] of moved) {
      const old = p.pages.get(vpn);
      if (old !== undefined) this.dram.release(old);
      p.pages.set(vpn, f);
    }
    p.ops.push({ op: 'move', old: oldStart, new: newStart, len });
  }

  private zapPages(p: Proc, start: number, len: number): void {
    const s = start / PAGE_SIZE;
    const pages = len / PAGE_SIZE;
    if (pages < p.pages.size) {
      for (let i = 0; i < pages; i++) {
        const f = p.pages.get(s + i);
        if (f !== undefined) {
          this.dram.release(f);
          p.pages.delete(s + i);
        }
      }
    } else {
      for (const [vpn, f] of p.pages)
        if (vpn >= s && vpn < s + pages) {
          this.dram.release(f);
          p.pages.delete(vpn);
        }
    }
    p.ops.push({ op: 'zap', start, len, why: p.why });
  }

  /**
   * handle_p2m_pcache_miss: the page at vaddr, with the VMA's protection in aux. A page of a shared
   * mapping is the object's own frame, and the reply carries its tag (the shm word), so that P caches
   * it in one line however many addresses map it.
   */
  private pcacheMiss(req: IncomingRequest, out: ReplyWriter): void {
    this.stats.miss++;
    const p = this.procs.get(req.pid);
    if (!p) {
      out.reply(-ESRCH);
      return;
    }
    const va = req.vaddr;
    const write = (req.flags & 1) !== 0;
    const acc = p.mm.access(va, write);
    if (acc !== 'ok') {
      out.reply(acc === 'maperr' ? -EFAULT : -EACCES);
      return;
    }
    const vma = p.mm.findVma(va);
    if (!vma) throw new Error(`memory: no VMA at 0x${va.toString(16)} after access() allowed it`);
    const key = sharedKey(vma);
    if (key !== undefined) {
      this.stats.missShared++;
      const pgoff = pgoffOf(vma, va);
      let page = this.shmem.lookup(key, pgoff);
      if (!page) {
        page = this.shmem.create(key, pgoff);
        if (!page) return this.outOfMemory(p, va, out);
        if (vma.file && this.readFilePage(vma.file.path, vma.file.size, pgoff * PAGE_SIZE, page.frame) < 0) {
          this.shmem.drop(key, pgoff);
          out.reply(-EFAULT);
          return;
        }
      }
      out.reply(0, vma.prot, undefined, this.dram.page(page.frame), page.tag);
      return;
    }
    const vpn = Math.floor(va / PAGE_SIZE);
    let f = p.pages.get(vpn);
    if (f === undefined) {
      // First touch: a zero page, or the file's bytes for a file-backed VMA (MAP_PRIVATE: M's copy
      // then diverges from the file).
      f = this.dram.alloc();
      if (f < 0) return this.outOfMemory(p, va, out);
      p.pages.set(vpn, f);
      if (vma.file) {
        this.stats.missFile++;
        if (this.readFilePage(vma.file.path, vma.file.size, pgoffOf(vma, va) * PAGE_SIZE, f) < 0) {
          p.pages.delete(vpn);
          this.dram.release(f);
          out.reply(-EFAULT);
          return;
        }
      } else this.stats.missZero++;
    }
    out.reply(0, vma.prot, undefined, this.dram.page(f));
  }

  private outOfMemory(p: Proc, va: number, out: ReplyWriter): void {
    this.env.printk(
      'error',
      `memory: out of memory: ${this.dram.maxFrames} frames in use (--memory); pid ${p.pid} addr 0x${va.toString(16)}`,
    );
    out.reply(-ENOMEM);
  }

  /** M2S_READ of the file's page at byte offset `off` into frame f (past the end: the zeroes stay). */
  private readFilePage(path: string, size: number, off: number, f: number): number {
    if (off >= size) return 0;
    if (!this.fab) throw new Error('memory: a file mapping without a storage component');
    const rep = this.fab.sendReply(kNodeStorage, M2S_READ, { payload: { path, offset: off } satisfies M2sReadReq });
    if (rep.status < 0) return rep.status;
    this.dram.page(f).set(rep.mbox.page);
    return 0;
  }

  /**
   * handle_p2m_flush_one: store a written-back line; -EFAULT if no VMA maps it any more. A shared
   * line is written back by its tag (the shm word) into its object's frame, wherever it is mapped
   * now; -EFAULT once no mapping of the object is left (nobody can read it again).
   */
  private pcacheFlush(req: IncomingRequest, out: ReplyWriter): void {
    this.stats.flush++;
    if (req.shm !== 0) {
      this.stats.flushShared++;
      const frame = this.shmem.frameOfTag(req.shm);
      if (frame === undefined) {
        this.stats.flushFail++;
        out.reply(-EFAULT);
        return;
      }
      this.dram.page(frame).set(req.mbox.page);
      out.reply(0);
      return;
    }
    const p = this.procs.get(req.pid);
    const va = req.vaddr;
    if (!p) {
      this.stats.flushFail++;
      out.reply(-ESRCH);
      return;
    }
    const vma = p.mm.findVma(va);
    if (!vma) {
      this.stats.flushFail++;
      out.reply(-EFAULT);
      return;
    }
    const key = sharedKey(vma);
    const shared = key === undefined ? undefined : this.shmem.lookup(key, pgoffOf(vma, va));
    if (shared) {
      // a write-back by address to a shared mapping stores into its page like any other access
      // (P sends those of shared lines by tag, so that they reach the page wherever it is mapped)
      this.dram.page(shared.frame).set(req.mbox.page);
      out.reply(0);
      return;
    }
    const vpn = Math.floor(va / PAGE_SIZE);
    let f = p.pages.get(vpn);
    // A page still shared with the other side of a fork is copied before it is written (M's own
    // COW break, as get_user_pages(FOLL_WRITE) does in handle_p2m_flush_one): the write is this
    // process's alone. The flush carries the whole page, so the copy is the flushed data.
    if (f === undefined || this.dram.count(f) > 1) {
      const nf = this.dram.alloc();
      if (nf < 0) {
        out.reply(-ENOMEM);
        return;
      }
      if (f !== undefined) {
        this.dram.release(f);
        this.stats.cowBreak++;
      }
      f = nf;
      p.pages.set(vpn, f);
    }
    this.dram.page(f).set(req.mbox.page);
    out.reply(0);
  }

  /** Free the shared objects no process maps any more (after an unmap or an exit). */
  private collectShared(): void {
    if (this.shmem.size === 0) return;
    const live = new Set<ShmKey>();
    for (const p of this.procs.values())
      for (const v of p.mm.vmas) {
        const key = sharedKey(v);
        if (key !== undefined) live.add(key);
      }
    this.stats.shmFreed += this.shmem.collect(live);
  }
}

/** The M worker's main loop. */
export function memoryMain(env: Env, memoryBytes: number, online: () => void): Memory {
  const fab = new Fabric(env);
  const m = new Memory(env, fab, memoryBytes);
  env.printk(
    'notice',
    `memory: online: ${Math.round(memoryBytes / 1048576)} MiB of DRAM for user pages, mmap_base 0x${kMmapBase.toString(16)}`,
  );
  online();
  serveForever(env, kNodeMemory, (req, out) => m.handle(req, out));
  return m;
}
