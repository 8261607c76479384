// Context-switch cost on one CPU (src/processor/sched.ts): two tasks that call sched_yield in turn,
// either two threads of one process (one mm: the TLB is kept) or two one-thread processes (two mms:
// every switch reloads CR3, a full TLB flush, and moves the CPU between mm_cpumasks). Beside them the
// same ping-pong on the host Linux kernel (test/native/yield-pingpong.c, two tasks pinned to one CPU),
// compiled and run in the same bench.
//
// A figure is the run's wall time (RunOutcome.wallMs of the process, or of the later of the two)
// divided by the context switches CPU0 counted in it (nr_switches), so it includes the yields that
// found nobody waiting and the process's start and exit; with Y = 20000 yields per task those are a
// small part. Every run must switch at least Y times, or the bench fails.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { DEFAULT_CONFIG, type MachineConfig } from '../src/kernel/config.ts';
import { Machine } from '../src/host/machine.ts';
import { collectStats } from '../src/host/summary.ts';
import { repoRoot } from './helpers/cli.ts';

const Y = 20_000;
const argv = (threads: number) => [
  '--threads',
  String(threads),
  '--iterations',
  '0',
  '--items',
  '0',
  '--yields',
  String(Y),
];
let phase: 'warmup' | 'run' = 'run';
const setup = (_t: unknown, mode: 'warmup' | 'run'): void => {
  phase = mode;
};
const opts = { time: 0, iterations: 3, warmupTime: 0, warmupIterations: 1, setup };

let m: Machine;
const usPerSwitch = new Map<string, number[]>();
let native: Record<string, number> | string = 'not measured';

beforeAll(async () => {
  const cfg: MachineConfig = { ...DEFAULT_CONFIG, cpus: 1, logLevel: 'error' };
  m = new Machine(cfg, { console() {}, log() {} });
  await m.boot();
  try {
    const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'splitkern-yield-')), 'yield-pingpong');
    execFileSync('gcc', ['-O2', '-pthread', '-o', exe, path.join(repoRoot, 'test/native/yield-pingpong.c')]);
    native = {};
    for (const mode of ['threads', 'processes']) {
      const [, sw, ns] = execFileSync(exe, [mode, String(10 * Y)], { encoding: 'utf8' })
        .trim()
        .split(' ');
      native[mode] = Number(ns) / 1000 / Number(sw);
    }
  } catch (e) {
    native = `no native baseline (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}, 120_000);

afterAll(async () => {
  await m?.shutdown();
  const best = (xs: number[]) => Math.min(...xs);
  const lines = ['', `context switches on one CPU, ${Y} sched_yields per task; µs per switch, best run (all runs)`];
  for (const [k, xs] of usPerSwitch)
    lines.push(`  ${k.padEnd(40)} ${best(xs).toFixed(1).padStart(7)}   ${xs.map((x) => x.toFixed(1)).join(', ')}`);
  if (typeof native === 'string') lines.push(`  ${native}`);
  else
    for (const [mode, us] of Object.entries(native))
      lines.push(`  ${`host Linux, two ${mode} pinned to CPU 0`.padEnd(40)} ${us.toFixed(2).padStart(7)}`);
  console.log(lines.join('\n'));
});

const switches = () => collectStats(m.sh).perCpu[0]?.switches ?? 0;
function record(key: string, wallMs: number, n: number): void {
  if (n < Y) throw new Error(`sched bench: ${key} switched only ${n} times for ${Y} yields per task`);
  if (phase !== 'run') return;
  const xs = usPerSwitch.get(key) ?? [];
  xs.push((wallMs * 1000) / n);
  usPerSwitch.set(key, xs);
}
function check(exit: number, what: string): void {
  if (exit !== 0) throw new Error(`sched bench: ${what} exited with ${exit}`);
}

describe('context switch (1 op = one whole run)', () => {
  bench(
    'splitkern: two threads of one mm',
    async () => {
      const before = switches();
      const out = await m.run('pthread-stress', argv(2));
      check(out.main.exit, 'the one-mm run');
      record('splitkern, two threads of one mm', out.wallMs, switches() - before);
    },
    opts,
  );
  bench(
    'splitkern: two processes (two mms)',
    async () => {
      const before = switches();
      const outs = await m.runAll([
        { program: 'pthread-stress', argv: argv(1) },
        { program: 'pthread-stress', argv: argv(1) },
      ]);
      for (const o of outs) check(o.main.exit, 'a two-mm run');
      record('splitkern, two processes (two mms)', Math.max(...outs.map((o) => o.wallMs)), switches() - before);
    },
    opts,
  );
});
