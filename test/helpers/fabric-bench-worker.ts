// The two workers of test/fabric.bench.ts (started through ts-worker.cjs, which loads this module
// with workers/tsx-boot.cjs like the machine's own workers).
//
//   server: the "memory node". Idle on a control word until the client picks a mode, then either runs
//           serveForever(env, kNodeMemory, reply-at-once) until the client sets kCtlShutdown, or answers
//           exactly n raw Atomics ping-pongs.
//   client: context 0 (CPU 0). On a message from the main thread it runs one timed batch against the
//           server (fabric round trips through Fabric.sendReply, or raw ping-pongs) and posts µs/round trip.
//
// Both sides of every variant are the same two threads, so the fabric and the floor are measured on the
// same pair of OS threads in the same process.
import { parentPort, workerData } from 'node:worker_threads';
import type { MachineConfig } from '../../src/kernel/config.ts';
import { Env } from '../../src/kernel/env.ts';
import { Fabric, serveForever } from '../../src/fabric/ibapi.ts';
import { P2M_PCACHE_MISS } from '../../src/fabric/opcodes.ts';
import { kCtlShutdown, kNodeMemory, kRecvDoorbell, Shared, type SharedBuffers } from '../../src/kernel/layout.ts';
import { PAGE_SIZE } from '../../src/uapi/abi.ts';

export type FabricBenchKind = 'fabric' | 'fabric-page' | 'atomics-wait' | 'atomics-spin';

export interface FabricBenchInit {
  /** this module, for ts-worker.cjs */
  module: string;
  role: 'server' | 'client';
  bufs: SharedBuffers;
  config: MachineConfig;
  bootEpochMs: number;
  /** control words shared by the two workers (see kCtrl*) */
  ctrl: SharedArrayBuffer;
  /** the raw ping-pong words: [0] ping sequence (client writes), [1] pong sequence (server writes) */
  pp: SharedArrayBuffer;
}

/** main thread -> client */
export interface FabricBenchRequest {
  kind: FabricBenchKind;
  n: number;
}
/** client -> main thread */
export type FabricBenchReply =
  | { type: 'ready' }
  | { type: 'result'; kind: FabricBenchKind; n: number; usPerRtt: number }
  | { type: 'error'; message: string };

// Control words
export const kCtrlCmd = 0; // what the server does next (client writes, server resets to kCmdIdle)
const kCtrlN = 1; // round trips the server answers in a ping-pong batch
const kCtrlDone = 2; // bumped by the server when a batch is over
export const kCtrlWords = 4;
const kCmdIdle = 0;
const kCmdServe = 1;
const kCmdPingWait = 2;
const kCmdPingSpin = 3;
export const kCmdExit = 9;

/** Untimed round trips at the start of every batch (wake the server, settle the loop). */
const kWarm = 200;
/** Polls before falling back to Atomics.wait in the spin variant (sendReply polls 64 times, serveForever 200). */
const kSpin = 200;

const PING = 0;
const PONG = 1;

export function main(): void {
  const init = workerData as FabricBenchInit;
  const sh = new Shared(init.bufs);
  const ctrl = new Int32Array(init.ctrl);
  const pp = new Int32Array(init.pp);
  if (init.role === 'server') server(sh, init, ctrl, pp);
  else client(sh, init, ctrl, pp);
}

function server(sh: Shared, init: FabricBenchInit, ctrl: Int32Array, pp: Int32Array): void {
  const env = new Env(sh, {
    ctx: sh.geo.ctx.memory,
    cpu: -1,
    name: 'memory',
    bootEpochMs: init.bootEpochMs,
    config: init.config,
  });
  const page = new Uint8Array(PAGE_SIZE).fill(0xa5);
  let last = 0; // last ping answered
  parentPort!.postMessage({ type: 'ready' });
  for (;;) {
    Atomics.wait(ctrl, kCtrlCmd, kCmdIdle);
    const cmd = Atomics.load(ctrl, kCtrlCmd);
    if (cmd === kCmdExit) return;
    if (cmd === kCmdServe) {
      // The handler replies at once; flags bit 0 asks for a 4 KiB page in the reply (like a miss reply).
      serveForever(env, kNodeMemory, (req, out) => out.reply(0, 0, undefined, (req.flags & 1) !== 0 ? page : null));
    } else if (cmd === kCmdPingWait || cmd === kCmdPingSpin) {
      const n = Atomics.load(ctrl, kCtrlN);
      const spin = cmd === kCmdPingSpin;
      for (let i = 0; i < n; i++) {
        let v = Atomics.load(pp, PING);
        if (spin) for (let s = 0; v === last && s < kSpin; s++) v = Atomics.load(pp, PING);
        while (v === last) {
          Atomics.wait(pp, PING, last);
          v = Atomics.load(pp, PING);
        }
        last = v;
        Atomics.store(pp, PONG, v);
        Atomics.notify(pp, PONG, 1);
      }
    }
    Atomics.store(ctrl, kCtrlCmd, kCmdIdle);
    Atomics.add(ctrl, kCtrlDone, 1);
    Atomics.notify(ctrl, kCtrlDone);
  }
}

function client(sh: Shared, init: FabricBenchInit, ctrl: Int32Array, pp: Int32Array): void {
  const env = new Env(sh, { ctx: 0, cpu: 0, name: 'cpu0', bootEpochMs: init.bootEpochMs, config: init.config });
  const fab = new Fabric(env);
  const dst = new Uint8Array(PAGE_SIZE);
  let seq = 0; // ping sequence, continues across batches

  /** Tell the server what to do, run `body`, then wait until the server is idle again. */
  const batch = (cmd: number, n: number, body: () => number, stop: () => void): number => {
    const done = Atomics.load(ctrl, kCtrlDone);
    Atomics.store(ctrl, kCtrlN, n);
    Atomics.store(ctrl, kCtrlCmd, cmd);
    Atomics.notify(ctrl, kCtrlCmd);
    const us = body();
    stop();
    while (Atomics.load(ctrl, kCtrlDone) === done) Atomics.wait(ctrl, kCtrlDone, done, 100);
    return us;
  };

  const fabricRtts = (n: number, withPage: boolean): number => {
    const flags = withPage ? 1 : 0;
    const one = (): void => {
      const rep = fab.sendReply(kNodeMemory, P2M_PCACHE_MISS, { pid: 1, vaddr: 0x400000, flags });
      if (rep.status !== 0) throw new Error(`fabric bench: reply status ${rep.status}`);
      if (withPage) dst.set(rep.mbox.page); // the receiver's copy out of the mailbox, as the fault path does
    };
    for (let i = 0; i < kWarm; i++) one();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) one();
    return ((performance.now() - t0) * 1000) / n;
  };
  const stopServing = (): void => {
    sh.ctl.store(kCtlShutdown, 1);
    sh.recv.add(kNodeMemory, kRecvDoorbell, 1);
    sh.recv.notify(kNodeMemory, kRecvDoorbell);
  };

  const pingPongs = (n: number, spin: boolean): number => {
    const one = (): void => {
      const want = ++seq;
      Atomics.store(pp, PING, want);
      Atomics.notify(pp, PING, 1);
      let v = Atomics.load(pp, PONG);
      if (spin) for (let s = 0; v !== want && s < kSpin; s++) v = Atomics.load(pp, PONG);
      while (v !== want) {
        Atomics.wait(pp, PONG, v);
        v = Atomics.load(pp, PONG);
      }
    };
    for (let i = 0; i < kWarm; i++) one();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) one();
    return ((performance.now() - t0) * 1000) / n;
  };

  parentPort!.on('message', (req: FabricBenchRequest) => {
    try {
      let us: number;
      switch (req.kind) {
        case 'fabric':
        case 'fabric-page':
          us = batch(kCmdServe, 0, () => fabricRtts(req.n, req.kind === 'fabric-page'), stopServing);
          sh.ctl.store(kCtlShutdown, 0);
          break;
        case 'atomics-wait':
        case 'atomics-spin':
          us = batch(
            req.kind === 'atomics-spin' ? kCmdPingSpin : kCmdPingWait,
            kWarm + req.n,
            () => pingPongs(req.n, req.kind === 'atomics-spin'),
            () => {},
          );
          break;
      }
      const r: FabricBenchReply = { type: 'result', kind: req.kind, n: req.n, usPerRtt: us };
      parentPort!.postMessage(r);
    } catch (e) {
      const r: FabricBenchReply = { type: 'error', message: String((e as Error).stack ?? e) };
      parentPort!.postMessage(r);
    }
  });
  const ready: FabricBenchReply = { type: 'ready' };
  parentPort!.postMessage(ready);
}
