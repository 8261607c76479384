// The simulated InfiniBand fabric (LegoOS FIT / ibapi).
//
// Each requesting context (CPU, kernel thread, M when it talks to S) owns one mailbox in the fabric
// SharedArrayBuffer: at most one outstanding RPC per context, as in LegoOS (each CPU busy-waits on its
// reply). A request is posted by writing the mailbox and setting the context's bit in the receiving
// node's pending bitmask (the "request queue"); the receiver drains the bitmask, runs the handler and
// writes the reply into the same mailbox, then bumps the requester's doorbell.
//
// Control payloads are msgpack-lite; 4 KiB pages travel as raw bytes in the mailbox's page area (an
// RDMA write), never through msgpack. The page-fault hot path (P2M_PCACHE_MISS / P2M_PCACHE_FLUSH)
// carries its few fields in fixed header words, as LegoOS sends packed C structs.
//
// Locks: none of its own. A mailbox's words are ordered by its kMboxState (Atomics.store): the requester
// writes them while the state is idle, the receiver while it is posted. The pending bitmask is
// Atomics.or by senders and exchanged by the receiver; doorbells are Atomics.add + notify. Under
// --ib-serialize, cpu.ts installs serializeLock (the kCtlIbLock spinlock) around each CPU's RPCs. A
// Fabric is used only on its own context's thread; sendReply is called with kernel locks held (mmap_sem,
// the fault's PTE lock across P2M_PCACHE_MISS, the eviction's line lock across P2M_PCACHE_FLUSH) and
// services IPIs while it waits. serveForever runs on the M or S worker's thread only.
import msgpack from 'msgpack-lite';
import type { z } from 'zod';
import type { Env } from '../kernel/env.ts';
import {
  kCpuDoorbell,
  type Rec32,
  Vec32,
  VecF64,
  kMboxVaddr,
  kCtlShutdown,
  kMboxAux,
  kMboxBytes,
  kMboxDst,
  kMboxFloatOff,
  kMboxFloatWords,
  kMboxHeaderWords,
  kMboxOpcode,
  kMboxPageIn,
  kMboxPageOff,
  kMboxPageOut,
  kMboxPayloadBytes,
  kMboxPayloadOff,
  kMboxPid,
  kMboxShm,
  kMboxReplyLen,
  kMboxReqLen,
  kMboxSrc,
  kMboxState,
  kMboxStatus,
  kRecvDoorbell,
  kRecvPendingBase,
  kRecvPendingWords,
  kRecvSleeping,
  kNodeStorage,
} from '../kernel/layout.ts';
import {
  FAB_BYTES_IN,
  FAB_BYTES_OUT,
  FAB_COUNT,
  FAB_HIST,
  FAB_LAT_SUM,
  kFabricBase,
  kFabricHistBuckets,
  kFabricSlot,
} from '../kernel/stats.ts';
import { PAGE_SIZE } from '../uapi/abi.ts';
import { opInfo } from './opcodes.ts';

export const MBOX_IDLE = 0;
export const MBOX_POSTED = 1;
export const MBOX_REPLIED = 2;

/** One context's mailbox views. */
export class Mailbox {
  readonly hdr: Vec32;
  readonly f64: VecF64;
  readonly page: Uint8Array;
  readonly payload: Uint8Array;
  constructor(
    fabric: SharedArrayBuffer,
    readonly ctx: number,
  ) {
    const base = ctx * kMboxBytes;
    this.hdr = new Vec32(new Int32Array(fabric, base, kMboxHeaderWords), `mailbox ${ctx}`);
    this.f64 = new VecF64(new Float64Array(fabric, base + kMboxFloatOff, kMboxFloatWords), `mailbox ${ctx} floats`);
    this.page = new Uint8Array(fabric, base + kMboxPageOff, PAGE_SIZE);
    this.payload = new Uint8Array(fabric, base + kMboxPayloadOff, kMboxPayloadBytes);
  }
  get vaddr(): number {
    return this.f64.get(kMboxVaddr);
  }
  set vaddr(v: number) {
    this.f64.set(kMboxVaddr, v);
  }

  writePayload(obj: unknown): number {
    const buf = msgpack.encode(obj);
    if (buf.length > kMboxPayloadBytes)
      throw new Error(`fabric: payload of ${buf.length} bytes exceeds the mailbox (${kMboxPayloadBytes})`);
    this.payload.set(buf);
    return buf.length;
  }
  /**
   * Decode the msgpack body of `len` bytes and check it against `schema`; `what` names the message in
   * the error ("P2M_MMAP request from ctx 0"). Throws MalformedMessage if the bytes are not msgpack or
   * the value does not match.
   */
  readPayload<T>(len: number, schema: z.ZodType<T>, what: string): T {
    let value: unknown;
    try {
      // msgpack-lite needs a Buffer; copy out of shared memory so the decoded object owns its bytes.
      value = msgpack.decode(Buffer.from(this.payload.subarray(0, len)));
    } catch (e) {
      throw new MalformedMessage(
        what,
        `${len} bytes that are not msgpack (${e instanceof Error ? e.message : String(e)})`,
      );
    }
    const r = schema.safeParse(value);
    if (!r.success) {
      const issue = r.error.issues[0];
      const at = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
      throw new MalformedMessage(what, `${at}${issue?.message ?? 'does not match its schema'}`);
    }
    return r.data;
  }
}

/** A fabric message whose body does not decode to what its opcode carries (proto.ts). */
export class MalformedMessage extends Error {
  constructor(
    readonly what: string,
    readonly why: string,
  ) {
    super(`fabric: malformed ${what}: ${why}`);
    this.name = 'MalformedMessage';
  }
}

export interface Reply<T> {
  status: number;
  aux: number;
  /** the reply's shared-page tag word (P2M_PCACHE_MISS of a shared page), 0 otherwise */
  shm: number;
  /** the reply body decoded through the schema sendReply was given; undefined without a body or a schema */
  body: T | undefined;
  /** the mailbox (reply page at mbox.page when the reply carries one) */
  mbox: Mailbox;
}

export interface SendOpts {
  payload?: unknown;
  page?: Uint8Array; // 4 KiB to send raw
  pid?: number;
  vaddr?: number;
  /** hot-path request flags (e.g. the fault's write bit), carried in a header word */
  flags?: number;
  /** hot-path shared-page tag (P2M_PCACHE_FLUSH of a shared page), carried in a header word */
  shm?: number;
}

/** The requester side: ibapi_send_reply for one context. */
export class Fabric {
  private box: Mailbox | undefined;
  private readonly recv: Rec32;
  private readonly cpu: Rec32;
  private readonly ctl: Vec32;
  private readonly fromMemory: boolean;
  /** serialize all RPCs behind one lock (LegoOS CONFIG_FIT_SEQUENTIAL_IBAPI, --ib-serialize) */
  serializeLock: ((held: boolean) => void) | undefined;

  constructor(private readonly env: Env) {
    this.recv = env.sh.recv;
    this.cpu = env.sh.cpu;
    this.ctl = env.sh.ctl;
    this.fromMemory = env.ctx === env.sh.geo.ctx.memory;
  }

  /**
   * The mailbox of the context this Fabric sends from now: a task uses the mailbox of the CPU it runs
   * on (processor/sched.ts rebinds its Env between RPCs, never during one).
   */
  get mbox(): Mailbox {
    if (this.box?.ctx !== this.env.ctx) this.box = new Mailbox(this.env.sh.fabric, this.env.ctx);
    return this.box;
  }

  /**
   * ibapi_send_reply(dst, opcode, payload) -> reply. Blocks until the reply arrives, servicing IPIs
   * while it waits (a CPU waiting for M must still answer a TLB shootdown). A reply body is decoded
   * only through `reply` (its schema, proto.ts); a body that does not match throws MalformedMessage.
   */
  sendReply<T = never>(dst: number, opcode: number, opts: SendOpts = {}, reply?: z.ZodType<T>): Reply<T> {
    const env = this.env;
    const m = this.mbox;
    const h = m.hdr;
    env.sched('fabric:send');
    const t0 = performance.now();
    let bytesOut = 16;
    h.set(kMboxOpcode, opcode);
    h.set(kMboxSrc, env.ctx);
    h.set(kMboxDst, dst);
    h.set(kMboxPid, opts.pid ?? 0);
    h.set(kMboxAux, opts.flags ?? 0);
    h.set(kMboxShm, opts.shm ?? 0);
    m.vaddr = opts.vaddr ?? 0;
    h.set(kMboxReqLen, opts.payload === undefined ? 0 : m.writePayload(opts.payload));
    bytesOut += h.get(kMboxReqLen);
    if (opts.page) {
      m.page.set(opts.page);
      h.set(kMboxPageIn, 1);
      bytesOut += PAGE_SIZE;
    } else h.set(kMboxPageIn, 0);
    h.set(kMboxPageOut, 0);
    h.set(kMboxReplyLen, 0);
    this.serializeLock?.(true);
    h.store(kMboxState, MBOX_POSTED);
    const w = Math.floor(env.ctx / 32);
    this.recv.or(dst, kRecvPendingBase + w, 1 << (env.ctx % 32));
    if (this.recv.load(dst, kRecvSleeping) !== 0) {
      this.recv.add(dst, kRecvDoorbell, 1);
      this.recv.notify(dst, kRecvDoorbell, 1);
    }
    // Wait for the reply: short poll, then sleep on our doorbell (bumped by the reply or by an IPI).
    let n = 0;
    for (;;) {
      if (h.load(kMboxState) === MBOX_REPLIED) break;
      env.irq();
      if (++n < 64) continue;
      const seen = this.cpu.load(env.ctx, kCpuDoorbell);
      if (h.load(kMboxState) === MBOX_REPLIED) break;
      if (this.ctl.load(kCtlShutdown) === 2) throw new Error('fabric: shutdown while waiting for a reply');
      env.wait(this.cpu.a, this.cpu.idx(env.ctx, kCpuDoorbell), seen, 100, 'wait:reply', false);
    }
    this.serializeLock?.(false);
    h.store(kMboxState, MBOX_IDLE);
    env.sched('fabric:reply');
    const replyLen = h.get(kMboxReplyLen);
    const bytesIn = 8 + replyLen + (h.get(kMboxPageOut) ? PAGE_SIZE : 0);
    this.account(dst, opcode, bytesOut, bytesIn, (performance.now() - t0) * 1000);
    return {
      status: h.get(kMboxStatus),
      aux: h.get(kMboxAux),
      shm: h.get(kMboxShm),
      body:
        replyLen > 0 && reply
          ? m.readPayload(replyLen, reply, `${opInfo(dst, opcode, this.fromMemory).name} reply from node ${dst}`)
          : undefined,
      mbox: m,
    };
  }

  private account(dst: number, opcode: number, out: number, inn: number, us: number): void {
    const info = opInfo(dst, opcode, this.fromMemory);
    const st = this.env.sh.stats;
    const ctx = this.env.ctx;
    const slot = kFabricBase + info.slot * kFabricSlot;
    st.bump(ctx, slot + FAB_COUNT, 1);
    st.bump(ctx, slot + FAB_BYTES_OUT, out);
    st.bump(ctx, slot + FAB_BYTES_IN, inn);
    st.bump(ctx, slot + FAB_LAT_SUM, us);
    const b = Math.min(kFabricHistBuckets - 1, us < 1 ? 0 : Math.floor(Math.log2(us)) + 1);
    st.bump(ctx, slot + FAB_HIST + b, 1);
  }
}

export interface IncomingRequest {
  src: number;
  opcode: number;
  pid: number;
  flags: number;
  vaddr: number;
  /** the hot-path shared-page tag word (P2M_PCACHE_FLUSH of a shared page), 0 otherwise */
  shm: number;
  mbox: Mailbox;
  hasPage: boolean;
  /** bytes of the msgpack body, 0 if the request has none */
  bodyLen: number;
  /** the request body decoded through its schema (proto.ts); throws MalformedMessage */
  body<T>(schema: z.ZodType<T>): T;
}

export interface ReplyWriter {
  /**
   * reply with status/aux, an optional msgpack body, an optional 4 KiB page (copied raw) and the
   * shared-page tag word (0 = a private page)
   */
  reply(status: number, aux?: number, body?: unknown, page?: Uint8Array | null, shm?: number): void;
}

/**
 * The receiver loop of a node (M or S): drain the pending bitmask, dispatch, reply; sleep on the
 * node's doorbell when idle. Returns when the host sets shutdown.
 */
export function serveForever(env: Env, node: number, handle: (req: IncomingRequest, out: ReplyWriter) => void): void {
  const recv = env.sh.recv;
  const ctl = env.sh.ctl;
  const mboxes = new Map<number, Mailbox>();
  const mboxOf = (c: number) => {
    let m = mboxes.get(c);
    if (!m) {
      m = new Mailbox(env.sh.fabric, c);
      mboxes.set(c, m);
    }
    return m;
  };
  let idle = 0;
  for (;;) {
    let any = false;
    for (let w = 0; w < kRecvPendingWords; w++) {
      let bits = recv.xchg(node, kRecvPendingBase + w, 0);
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits);
        bits &= ~(1 << b);
        any = true;
        dispatchOne(env, node, mboxOf(w * 32 + b), handle);
      }
    }
    if (any) {
      idle = 0;
      continue;
    }
    if (ctl.load(kCtlShutdown) !== 0) return;
    if (++idle < 200) continue;
    const seen = recv.load(node, kRecvDoorbell);
    recv.store(node, kRecvSleeping, 1);
    let pending = false;
    for (let w = 0; w < kRecvPendingWords; w++) if (recv.load(node, kRecvPendingBase + w) !== 0) pending = true;
    if (!pending) env.wait(recv.a, recv.idx(node, kRecvDoorbell), seen, 50, 'wait:request');
    recv.store(node, kRecvSleeping, 0);
  }
}

function dispatchOne(
  env: Env,
  node: number,
  m: Mailbox,
  handle: (req: IncomingRequest, out: ReplyWriter) => void,
): void {
  const h = m.hdr;
  if (h.load(kMboxState) !== MBOX_POSTED) return;
  const reqLen = h.get(kMboxReqLen);
  const req: IncomingRequest = {
    src: h.get(kMboxSrc),
    opcode: h.get(kMboxOpcode),
    pid: h.get(kMboxPid),
    flags: h.get(kMboxAux),
    vaddr: m.vaddr,
    shm: h.get(kMboxShm),
    mbox: m,
    hasPage: h.get(kMboxPageIn) === 1,
    bodyLen: reqLen,
    body: <T>(schema: z.ZodType<T>) =>
      m.readPayload(
        reqLen,
        schema,
        `${opInfo(node, h.get(kMboxOpcode) ?? 0, h.get(kMboxSrc) === env.sh.geo.ctx.memory).name} request from ctx ${h.get(kMboxSrc)}`,
      ),
  };
  let replied = false;
  const out: ReplyWriter = {
    reply(status, aux = 0, body, page, shm = 0) {
      h.set(kMboxStatus, status);
      h.set(kMboxAux, aux);
      h.set(kMboxShm, shm);
      h.set(kMboxReplyLen, body === undefined ? 0 : m.writePayload(body));
      if (page) {
        m.page.set(page);
        h.set(kMboxPageOut, 1);
      } else h.set(kMboxPageOut, 0);
      replied = true;
    },
  };
  try {
    handle(req, out);
  } catch (e) {
    env.printk(
      'error',
      `${env.name}: handler for opcode ${req.opcode} from ctx ${req.src} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
    );
    h.set(kMboxStatus, -5); // -EIO
    h.set(kMboxReplyLen, 0);
    replied = true;
    throw e;
  } finally {
    // "Handler MUST call reply message" (managers/memory/core.c): a handler that forgot is a bug.
    if (!replied) {
      h.set(kMboxStatus, -5);
      h.set(kMboxReplyLen, 0);
    }
    h.store(kMboxState, MBOX_REPLIED);
    env.sh.cpu.add(req.src, kCpuDoorbell, 1);
    env.sh.cpu.notify(req.src, kCpuDoorbell, 1);
  }
}

export { kNodeStorage };
