// The two workers of test/fabric.test.ts (started through ts-worker.cjs).
//
//   server: the memory node. serveForever(env, kNodeMemory, handler) until ctl[kCtlShutdown] is set, then
//           posts 'exited'. The handler's behaviour depends on the opcode (see serve()).
//   client: context 0 (CPU 0). On a FabricCmd from the main thread it does the RPC(s) with
//           Fabric.sendReply and posts what came back.
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import type { MachineConfig } from '../../src/kernel/config.ts';
import { Env } from '../../src/kernel/env.ts';
import { Fabric, serveForever, type IncomingRequest, type ReplyWriter } from '../../src/fabric/ibapi.ts';
import { P2M_BRK, P2M_MMAP, P2M_MUNMAP, P2M_PCACHE_FLUSH, P2M_PCACHE_MISS } from '../../src/fabric/opcodes.ts';
import { kMboxReplyLen, kMboxReqLen, kNodeMemory, Shared, type SharedBuffers } from '../../src/kernel/layout.ts';
import { PAGE_SIZE } from '../../src/uapi/abi.ts';
import { z } from 'zod';

export interface FabricWorkerInit {
  module: string;
  role: 'server' | 'client';
  bufs: SharedBuffers;
  config: MachineConfig;
  bootEpochMs: number;
}

// Opcodes and what the server does with them
export const OP_ECHO = P2M_MMAP; // reply 0 with the request body echoed plus what the server saw
export const OP_PAGE = P2M_PCACHE_FLUSH; // reply with the request page inverted (raw) and its sha256 (body)
export const OP_STATUS = P2M_MUNMAP; // reply status -flags, aux -3*pid, no body
export const OP_COUNTER = P2M_PCACHE_MISS; // reply aux = vaddr, body {i, vaddr}
export const OP_NOREPLY = P2M_BRK; // the handler does not reply (the fabric answers -EIO)

/** What the server saw of a request (echoed back in OP_ECHO replies). */
export interface SeenRequest {
  src: number;
  opcode: number;
  pid: number;
  flags: number;
  vaddr: number;
  hasPage: boolean;
  reqLen: number;
}
const zSeen = z.object({
  src: z.number(),
  opcode: z.number(),
  pid: z.number(),
  flags: z.number(),
  vaddr: z.number(),
  hasPage: z.boolean(),
  reqLen: z.number(),
});
const zEchoReply = z.object({ echo: z.unknown(), seen: zSeen });
const zPageReply = z.object({ sha256: z.string(), seen: zSeen });
const zCounter = z.object({ i: z.number(), vaddr: z.number() });
export type EchoReply = z.infer<typeof zEchoReply>;
export type PageReply = z.infer<typeof zPageReply>;

export type FabricCmd =
  | { kind: 'echo'; payload: unknown; pid: number; vaddr: number; flags: number }
  | { kind: 'page'; page: Uint8Array; vaddr: number }
  | { kind: 'status'; errno: number; pid: number }
  | { kind: 'sequence'; n: number }
  | { kind: 'noreply' };

export type FabricWorkerMsg =
  | { type: 'ready' }
  | { type: 'exited' }
  | { type: 'echo'; status: number; aux: number; body: EchoReply | undefined; types: unknown; replyLen: number }
  | { type: 'page'; status: number; body: PageReply | undefined; page: Uint8Array; replyLen: number }
  | { type: 'status'; status: number; aux: number; hasBody: boolean }
  | { type: 'sequence'; auxes: number[]; bodies: number[]; statuses: number[] }
  | { type: 'noreply'; status: number; hasBody: boolean };

/** The shape of a decoded value: constructor names of every node (distinguishes Uint8Array from Buffer). */
export function typesOf(v: unknown): unknown {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.map(typesOf);
  if (v instanceof Uint8Array) return v.constructor.name;
  if (typeof v === 'object')
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, typesOf(x)]));
  return typeof v;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export function main(): void {
  const init = workerData as FabricWorkerInit;
  const sh = new Shared(init.bufs);
  if (init.role === 'server') server(sh, init);
  else client(sh, init);
}

function server(sh: Shared, init: FabricWorkerInit): void {
  const env = new Env(sh, {
    ctx: sh.geo.ctx.memory,
    cpu: -1,
    name: 'memory',
    bootEpochMs: init.bootEpochMs,
    config: init.config,
  });
  const port = parentPort!;
  port.postMessage({ type: 'ready' } satisfies FabricWorkerMsg);
  const seenOf = (req: IncomingRequest): SeenRequest => ({
    src: req.src,
    opcode: req.opcode,
    pid: req.pid,
    flags: req.flags,
    vaddr: req.vaddr,
    hasPage: req.hasPage,
    reqLen: req.mbox.hdr.get(kMboxReqLen),
  });
  const handle = (req: IncomingRequest, out: ReplyWriter): void => {
    switch (req.opcode) {
      case OP_ECHO: {
        const r: EchoReply = { echo: req.body(z.unknown()), seen: seenOf(req) };
        out.reply(0, 0, r);
        return;
      }
      case OP_PAGE: {
        const got = req.mbox.page.slice(); // the request page, as received
        const back = got.map((b) => b ^ 0xff);
        const r: PageReply = { sha256: sha256(got), seen: seenOf(req) };
        out.reply(0, 0, r, back);
        return;
      }
      case OP_STATUS:
        out.reply(-req.flags, -3 * req.pid);
        return;
      case OP_COUNTER: {
        const { i } = req.body(z.object({ i: z.number() }));
        out.reply(0, req.vaddr, { i, vaddr: req.vaddr });
        return;
      }
      case OP_NOREPLY:
        return;
      default:
        out.reply(-38); // -ENOSYS
    }
  };
  try {
    serveForever(env, kNodeMemory, handle);
    port.postMessage({ type: 'exited' } satisfies FabricWorkerMsg);
  } catch (e) {
    port.postMessage({ type: 'error', message: String((e as Error).stack ?? e) });
  }
}

function client(sh: Shared, init: FabricWorkerInit): void {
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: init.bootEpochMs, config: init.config });
  const fab = new Fabric(env);
  const port = parentPort!;
  const run = (cmd: FabricCmd): FabricWorkerMsg => {
    switch (cmd.kind) {
      case 'echo': {
        const rep = fab.sendReply(
          kNodeMemory,
          OP_ECHO,
          { payload: cmd.payload, pid: cmd.pid, vaddr: cmd.vaddr, flags: cmd.flags },
          zEchoReply,
        );
        return {
          type: 'echo',
          status: rep.status,
          aux: rep.aux,
          body: rep.body,
          types: typesOf(rep.body?.echo),
          replyLen: rep.mbox.hdr.get(kMboxReplyLen),
        };
      }
      case 'page': {
        if (cmd.page.length !== PAGE_SIZE) throw new Error('page command: not a 4 KiB page');
        const rep = fab.sendReply(kNodeMemory, OP_PAGE, { page: cmd.page, pid: 1, vaddr: cmd.vaddr }, zPageReply);
        return {
          type: 'page',
          status: rep.status,
          body: rep.body,
          page: rep.mbox.page.slice(),
          replyLen: rep.mbox.hdr.get(kMboxReplyLen),
        };
      }
      case 'status': {
        const rep = fab.sendReply(kNodeMemory, OP_STATUS, { pid: cmd.pid, flags: cmd.errno }, z.unknown());
        return { type: 'status', status: rep.status, aux: rep.aux, hasBody: rep.body !== undefined };
      }
      case 'sequence': {
        const auxes: number[] = [];
        const bodies: number[] = [];
        const statuses: number[] = [];
        for (let i = 0; i < cmd.n; i++) {
          const rep = fab.sendReply(kNodeMemory, OP_COUNTER, { payload: { i }, pid: 1, vaddr: 1000 + i }, zCounter);
          statuses.push(rep.status);
          auxes.push(rep.aux);
          bodies.push(rep.body?.i ?? -1);
        }
        return { type: 'sequence', auxes, bodies, statuses };
      }
      case 'noreply': {
        const rep = fab.sendReply(kNodeMemory, OP_NOREPLY, { payload: { x: 1 } }, z.unknown());
        return { type: 'noreply', status: rep.status, hasBody: rep.body !== undefined };
      }
    }
  };
  port.on('message', (cmd: FabricCmd) => {
    try {
      port.postMessage(run(cmd));
    } catch (e) {
      port.postMessage({ type: 'error', message: String((e as Error).stack ?? e) });
    }
  });
  port.postMessage({ type: 'ready' } satisfies FabricWorkerMsg);
}
