// The simulated fabric between two worker threads (test/helpers/fabric-worker.ts): a memory-node server
// in serveForever and a CPU-context client doing Fabric.sendReply. Checks what travels (msgpack bodies,
// raw 4 KiB pages both ways, status and aux words), that every RPC gets its own reply, the client's
// per-opcode counters, and that the server loop stops on shutdown.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { opInfo } from '../src/fabric/opcodes.ts';
import { allocateShared, geometryFor, kCtlShutdown, kNodeMemory, kRecvDoorbell, Shared } from '../src/kernel/layout.ts';
import {
  FAB_BYTES_IN,
  FAB_BYTES_OUT,
  FAB_COUNT,
  FAB_HIST,
  kFabricBase,
  kFabricHistBuckets,
  kFabricOpcodes,
  kFabricSlot,
} from '../src/kernel/stats.ts';
import { PAGE_SIZE } from '../src/uapi/abi.ts';
import {
  OP_COUNTER,
  OP_ECHO,
  OP_NOREPLY,
  OP_PAGE,
  OP_STATUS,
  typesOf,
  type FabricCmd,
  type FabricWorkerInit,
  type FabricWorkerMsg,
} from './helpers/fabric-worker.ts';
import { TestWorker } from './helpers/test-worker.ts';
import { pattern } from './helpers/pattern.ts';

const MODULE = 'test/helpers/fabric-worker.ts';
const config: MachineConfig = {
  ...DEFAULT_CONFIG,
  cpus: 1,
  pcacheBytes: 64 * 4096,
  ways: 4,
  victim: 0,
  logLevel: 'error',
};
const bufs = allocateShared(geometryFor(config));
const sh = new Shared(bufs);
const CLIENT = 0; // the client's context (CPU 0)

let server: TestWorker<FabricWorkerMsg>;
let client: TestWorker<FabricWorkerMsg>;
/** RPCs sent per opcode, for the counter check */
const sent = new Map<number, number>();

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function rpc<T extends FabricWorkerMsg['type']>(
  type: T,
  cmd: FabricCmd,
  op: number,
  n = 1,
): Promise<Extract<FabricWorkerMsg, { type: T }>> {
  client.post(cmd);
  const r = await client.expect(type);
  sent.set(op, (sent.get(op) ?? 0) + n);
  return r;
}

const statBase = (op: number): number => kFabricBase + opInfo(kNodeMemory, op, false).slot * kFabricSlot;

beforeAll(async () => {
  const init = (role: FabricWorkerInit['role']): FabricWorkerInit => ({
    module: MODULE,
    role,
    bufs,
    config,
    bootEpochMs: performance.timeOrigin,
  });
  server = new TestWorker('memory', init('server'));
  client = new TestWorker('cpu0', init('client'));
  await server.expect('ready');
  await client.expect('ready');
});

afterAll(async () => {
  await Promise.all([server.terminate(), client.terminate()]);
});

describe('fabric: sendReply <-> serveForever', () => {
  it('a msgpack body round-trips: nested objects, 47-bit and 2^53 numbers, Uint8Array', async () => {
    const bin = new Uint8Array(256).map((_, i) => i);
    const payload = {
      nested: { a: [1, 2, { deep: 'x', empty: [], obj: {} }], neg: -1, zero: 0 },
      big: 0x7fffe5788000,
      bigNeg: -0x7fffe5788000,
      max: 2 ** 53 - 1,
      u32: 0xffffffff,
      float: 0.1,
      bin,
      bins: [new Uint8Array([0]), new Uint8Array([0xff, 0x00, 0x7f])],
      str: 'héllo wörld ✓',
      yes: true,
      nil: null,
    };
    const r = await rpc('echo', { kind: 'echo', payload, pid: 42, vaddr: 0x7fffe5788000, flags: 0x55 }, OP_ECHO);
    expect(r.status).toBe(0);
    expect(r.aux).toBe(0);
    expect(r.body!.echo).toEqual(payload);
    expect(r.types).toEqual(typesOf(payload)); // byte arrays come back as Uint8Array, not Buffer or number[]
    expect(r.types).toMatchObject({ bin: 'Uint8Array', big: 'number' });
    // the header words of the request reached the server
    expect(r.body!.seen).toEqual({
      src: CLIENT,
      opcode: OP_ECHO,
      pid: 42,
      flags: 0x55,
      vaddr: 0x7fffe5788000,
      hasPage: false,
      reqLen: expect.any(Number),
    });
    expect(r.body!.seen.reqLen).toBeGreaterThan(256);
    expect(r.replyLen).toBeGreaterThan(r.body!.seen.reqLen);
  });

  it('a large binary body (200 KB) round-trips byte-exact', async () => {
    const big = new Uint8Array(200_000);
    for (let i = 0; i < big.length; i += PAGE_SIZE)
      big.set(pattern(i + 1).subarray(0, Math.min(PAGE_SIZE, big.length - i)), i);
    const r = await rpc('echo', { kind: 'echo', payload: { big }, pid: 1, vaddr: 0, flags: 0 }, OP_ECHO);
    expect(r.status).toBe(0);
    const echo = r.body!.echo as { big: Uint8Array };
    expect(echo.big).toBeInstanceOf(Uint8Array);
    expect(sha256(echo.big)).toBe(sha256(big));
  });

  it('a 4 KiB page travels raw and byte-exact in the request and in the reply', async () => {
    for (const [seed, page] of [
      [1, pattern(1)],
      [2, pattern(2)],
      [0, new Uint8Array(PAGE_SIZE)],
      [3, new Uint8Array(PAGE_SIZE).fill(0xff)],
    ] as const) {
      const r = await rpc('page', { kind: 'page', page, vaddr: 0x7fffe5788000 + seed * PAGE_SIZE }, OP_PAGE);
      expect(r.status).toBe(0);
      // request page: what the server received hashes like what we sent
      expect(r.body!.sha256).toBe(sha256(page));
      expect(r.body!.seen).toMatchObject({
        hasPage: true,
        reqLen: 0,
        vaddr: 0x7fffe5788000 + seed * PAGE_SIZE,
        opcode: OP_PAGE,
      });
      // reply page: the server's inverted copy, byte for byte
      expect(r.page).toHaveLength(PAGE_SIZE);
      const want = page.map((b) => b ^ 0xff);
      expect(Buffer.compare(Buffer.from(r.page), Buffer.from(want))).toBe(0);
      // neither page went through msgpack: the bodies are tiny
      expect(r.replyLen).toBeLessThan(512);
    }
    // the next request without a page is not mistaken for one
    const e = await rpc('echo', { kind: 'echo', payload: 1, pid: 1, vaddr: 0, flags: 0 }, OP_ECHO);
    expect(e.body!.seen.hasPage).toBe(false);
    expect(e.body!.echo).toBe(1);
  });

  it('status and aux words are delivered, negative errno included', async () => {
    const a = await rpc('status', { kind: 'status', errno: 14, pid: 5 }, OP_STATUS);
    expect(a).toEqual({ type: 'status', status: -14, aux: -15, hasBody: false });
    const b = await rpc('status', { kind: 'status', errno: 2, pid: 0 }, OP_STATUS);
    expect(b).toEqual({ type: 'status', status: -2, aux: 0, hasBody: false });
    const c = await rpc('status', { kind: 'status', errno: -0x7fffffff, pid: -0x2aaaaaaa }, OP_STATUS);
    expect(c).toEqual({ type: 'status', status: 0x7fffffff, aux: 0x7ffffffe, hasBody: false });
  });

  it('a handler that does not reply: the requester still gets an answer, -EIO', async () => {
    const r = await rpc('noreply', { kind: 'noreply' }, OP_NOREPLY);
    expect(r).toEqual({ type: 'noreply', status: -5, hasBody: false });
  });

  it('1000 sequential RPCs each get their own reply', async () => {
    const n = 1000;
    const r = await rpc('sequence', { kind: 'sequence', n }, OP_COUNTER, n);
    const idx = Array.from({ length: n }, (_, i) => i);
    expect(r.statuses).toEqual(idx.map(() => 0));
    expect(r.bodies).toEqual(idx);
    expect(r.auxes).toEqual(idx.map((i) => 1000 + i));
  });

  it("the client's stats row counts every RPC under its opcode", () => {
    expect(sent.size).toBe(5);
    const slots = new Set<number>();
    for (const [op, n] of sent) {
      const base = statBase(op);
      slots.add(opInfo(kNodeMemory, op, false).slot);
      expect(sh.stats.get(CLIENT, base + FAB_COUNT), opInfo(kNodeMemory, op, false).name).toBe(n);
      let hist = 0;
      for (let b = 0; b < kFabricHistBuckets; b++) hist += sh.stats.get(CLIENT, base + FAB_HIST + b);
      expect(hist).toBe(n); // every RPC in exactly one latency bucket
    }
    expect(slots.size).toBe(5); // five distinct slots
    expect(opInfo(kNodeMemory, OP_PAGE, false).name).toBe('P2M_PCACHE_FLUSH');
    expect(opInfo(kNodeMemory, OP_COUNTER, false).name).toBe('P2M_PCACHE_MISS');
    // pages are counted both ways
    const page = statBase(OP_PAGE);
    expect(sh.stats.get(CLIENT, page + FAB_BYTES_OUT)).toBeGreaterThanOrEqual(sent.get(OP_PAGE)! * PAGE_SIZE);
    expect(sh.stats.get(CLIENT, page + FAB_BYTES_IN)).toBeGreaterThanOrEqual(sent.get(OP_PAGE)! * PAGE_SIZE);
    const status = statBase(OP_STATUS);
    expect(sh.stats.get(CLIENT, status + FAB_BYTES_IN)).toBeLessThan(PAGE_SIZE);
    // no other slot of the client moved, and the server (a receiver) counts nothing
    for (let slot = 0; slot < kFabricOpcodes; slot++) {
      if (slots.has(slot)) continue;
      expect(sh.stats.get(CLIENT, kFabricBase + slot * kFabricSlot + FAB_COUNT), `slot ${slot}`).toBe(0);
    }
    for (let slot = 0; slot < kFabricOpcodes; slot++) {
      expect(sh.stats.get(sh.geo.ctx.memory, kFabricBase + slot * kFabricSlot + FAB_COUNT)).toBe(0);
    }
  });

  it('the server loop exits on shutdown + a doorbell', async () => {
    server.expectExit();
    sh.ctl.store(kCtlShutdown, 1);
    const db = sh.recv.idx(kNodeMemory, kRecvDoorbell);
    Atomics.add(sh.recv.a, db, 1);
    Atomics.notify(sh.recv.a, db);
    await server.expect('exited');
    expect(await server.exited).toBe(0);
  });
});
