// Fabric round trip (Fabric.sendReply -> serveForever -> reply) next to a raw Atomics ping-pong between
// the SAME two worker threads, in the same run.
//
// A tiny machine's shared buffers (geometryFor 64 lines, 1 CPU) are handed to two long-lived workers
// (test/helpers/fabric-bench-worker.ts): a server that serves kNodeMemory with a handler replying at
// once, and a client (context 0, CPU 0) that, per bench iteration, runs a batch of N round trips and
// posts back µs per round trip timed inside the worker. vitest's ops/s are batches/s (1 op = N round
// trips plus one postMessage to the client and back); the in-worker µs/RTT table printed at the end is
// the number to quote.
//
// Variants:
//   fabric              sendReply(kNodeMemory, P2M_PCACHE_MISS), reply without a page
//   fabric + 4 KiB page the server copies a 4 KiB page into the mailbox, the client copies it out
//   Atomics wait        the floor: store + notify, then Atomics.wait for the answer (both sides)
//   Atomics spin+wait   the same with up to 200 polls before each wait, roughly the fabric's own policy
//                       (sendReply polls its reply 64 times, serveForever loops 200 times idle)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { allocateShared, geometryFor } from '../src/kernel/layout.ts';
import {
  kCmdExit,
  kCtrlCmd,
  kCtrlWords,
  type FabricBenchInit,
  type FabricBenchKind,
  type FabricBenchReply,
  type FabricBenchRequest,
} from './helpers/fabric-bench-worker.ts';

const N = 2000; // round trips per batch (per bench iteration)
let phase: 'warmup' | 'run' = 'run';
/** tinybench's setup hook says whether the calls that follow are warm-up: those are not recorded */
const opts = {
  time: 0,
  iterations: 25,
  warmupTime: 0,
  warmupIterations: 3,
  setup: (_t: unknown, mode: 'warmup' | 'run') => {
    phase = mode;
  },
};
const ROUNDS = 12; // interleaved rounds after the bench cases (afterAll)

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = path.join(here, 'helpers', 'ts-worker.cjs');

const KINDS: FabricBenchKind[] = ['fabric', 'fabric-page', 'atomics-wait', 'atomics-spin'];
const LABEL: Record<FabricBenchKind, string> = {
  fabric: 'fabric sendReply, no page',
  'fabric-page': 'fabric sendReply + 4 KiB page',
  'atomics-wait': 'Atomics ping-pong (store/notify/wait)',
  'atomics-spin': 'Atomics ping-pong (spin 200, then wait)',
};
const samples: Record<FabricBenchKind, number[]> = {
  fabric: [],
  'fabric-page': [],
  'atomics-wait': [],
  'atomics-spin': [],
};

let server: Worker | undefined;
let client: Worker | undefined;
let ctrl: Int32Array | undefined;
let pending: { resolve: (us: number) => void; reject: (e: Error) => void } | undefined;

function start(init: FabricBenchInit): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const w = new Worker(entry, { workerData: init });
    w.once('error', reject);
    w.on('message', (m: FabricBenchReply) => {
      if (m.type === 'ready') resolve(w);
      else if (m.type === 'error') {
        const e = new Error(`${init.role}: ${m.message}`);
        if (pending) pending.reject(e);
        else reject(e);
        pending = undefined;
      } else if (pending) {
        const p = pending;
        pending = undefined;
        p.resolve(m.usPerRtt);
      }
    });
  });
}

/** One batch of N round trips of `kind` in the client worker; records the in-worker µs/RTT. */
async function batch(kind: FabricBenchKind): Promise<void> {
  const us = await new Promise<number>((resolve, reject) => {
    pending = { resolve, reject };
    const req: FabricBenchRequest = { kind, n: N };
    client!.postMessage(req);
  });
  if (phase === 'run') samples[kind].push(us);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

beforeAll(async () => {
  const config: MachineConfig = {
    ...DEFAULT_CONFIG,
    cpus: 1,
    pcacheBytes: 64 * 4096,
    ways: 4,
    victim: 0,
    logLevel: 'error',
  };
  const bufs = allocateShared(geometryFor(config));
  const ctrlSab = new SharedArrayBuffer(kCtrlWords * 4);
  ctrl = new Int32Array(ctrlSab);
  const common = {
    module: 'test/helpers/fabric-bench-worker.ts',
    bufs,
    config,
    bootEpochMs: performance.timeOrigin + performance.now(),
    ctrl: ctrlSab,
    pp: new SharedArrayBuffer(8),
  };
  server = await start({ role: 'server', ...common });
  client = await start({ role: 'client', ...common });
});

afterAll(async () => {
  try {
    if (samples.fabric.length === 0) return;
    // vitest runs each case's iterations back to back; a drift in the machine's noise then lands on one
    // variant. Interleave a few more rounds (one batch of each kind per round) for the ratio.
    const inter: Record<FabricBenchKind, number[]> = {
      fabric: [],
      'fabric-page': [],
      'atomics-wait': [],
      'atomics-spin': [],
    };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of KINDS) {
        await batch(k);
        inter[k].push(samples[k].pop()!);
      }
    }
    const lines = [
      '',
      `fabric round trip vs Atomics floor, same two workers, ${N} round trips per batch, µs per round trip timed in the client worker`,
    ];
    lines.push(
      `  ${'variant'.padEnd(42)} ${'bench cases'.padStart(12)} ${'interleaved'.padStart(12)} ${'min'.padStart(8)}`,
    );
    for (const k of KINDS) {
      lines.push(
        `  ${LABEL[k].padEnd(42)} ${median(samples[k]).toFixed(2).padStart(12)} ${median(inter[k]).toFixed(2).padStart(12)} ${Math.min(
          ...samples[k],
          ...inter[k],
        )
          .toFixed(2)
          .padStart(8)}`,
      );
    }
    lines.push(`  (medians of ${samples.fabric.length} batches per case, and of ${ROUNDS} interleaved rounds)`);
    const fab = median(inter.fabric);
    lines.push(
      `  fabric + page / fabric = ${(median(inter['fabric-page']) / fab).toFixed(2)}x;  fabric / Atomics spin+wait = ${(fab / median(inter['atomics-spin'])).toFixed(2)}x`,
    );
    lines.push(
      `fabric RTT / Atomics floor = ${(fab / median(inter['atomics-wait'])).toFixed(2)} (interleaved medians; target <= 1.5)`,
    );
    console.log(lines.join('\n'));
  } finally {
    if (ctrl) {
      Atomics.store(ctrl, kCtrlCmd, kCmdExit);
      Atomics.notify(ctrl, kCtrlCmd);
    }
    await Promise.all([server?.terminate(), client?.terminate()]);
  }
});

describe(`round trip between two worker threads (1 op = batch of ${N})`, () => {
  for (const k of KINDS) bench(LABEL[k], () => batch(k), opts);
});
