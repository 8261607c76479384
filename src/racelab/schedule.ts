// The schedule as an artifact: what `--record FILE` writes and `replay` reads. A schedule file is a
// gzip'd msgpack map:
//   header   format name and version, splitkern's version, the schedule points' list version and names,
//            the command line, the machine config, the seed, the mode, the processes run;
//   events   one 32-bit word per decision (ctlsched.ts packEvent: who decided, at which point, who ran
//            next), run-length encoded as (word, count) pairs, little-endian;
//   outcome  exit code, the failures' signatures (signature.ts), the hash of the final state and of the
//            events, the counters.
// Host only: pure functions over bytes and files, no shared memory, no lock.
import fs from 'node:fs';
import zlib from 'node:zlib';
import msgpack from 'msgpack-lite';
import { z } from 'zod';
import type { MachineConfig } from '../kernel/config.ts';
import { SCHED_POINTS, SCHED_POINTS_VERSION } from '../kernel/points.ts';
import type { Signature } from './signature.ts';

export const SCHEDULE_FORMAT = 'splitkern-schedule';
export const SCHEDULE_VERSION = 1;

export interface ScheduleOutcome {
  exitCode: number;
  signatures: Signature[];
  /** sha256 of the machine's final state (Machine.finalStateHash) and of the outputs */
  finalHash: string;
  /** FNV-1a of the event words (kCsHash) */
  eventHash: number;
  steps: number;
  switches: number;
}

export interface ScheduleFile {
  format: typeof SCHEDULE_FORMAT;
  version: number;
  splitkern: string;
  pointsVersion: number;
  points: readonly string[];
  /** the command line after `splitkern` */
  command: string[];
  config: MachineConfig;
  /** "random", "pct:3:20000" */
  mode: string;
  processes: Array<{ program: string; argv: string[] }>;
  events: Uint32Array;
  outcome: ScheduleOutcome;
}

const zFile = z.object({
  format: z.literal(SCHEDULE_FORMAT),
  version: z.number().int(),
  splitkern: z.string(),
  pointsVersion: z.number().int(),
  points: z.array(z.string()),
  command: z.array(z.string()),
  config: z.record(z.string(), z.unknown()),
  mode: z.string(),
  processes: z.array(z.object({ program: z.string(), argv: z.array(z.string()) })),
  events: z.instanceof(Uint8Array),
  outcome: z.object({
    exitCode: z.number(),
    signatures: z.array(z.object({ kind: z.string(), facts: z.array(z.string()), text: z.string() })),
    finalHash: z.string(),
    eventHash: z.number(),
    steps: z.number(),
    switches: z.number(),
  }),
});

/** (word, count) pairs of runs of equal words */
export function rleEncode(events: ArrayLike<number>): Uint32Array {
  const out: number[] = [];
  for (let i = 0; i < events.length;) {
    const w = events[i] ?? 0;
    let j = i + 1;
    while (j < events.length && events[j] === w) j++;
    out.push(w >>> 0, j - i);
    i = j;
  }
  return Uint32Array.from(out);
}

export function rleDecode(pairs: Uint32Array): Uint32Array {
  let n = 0;
  for (let i = 1; i < pairs.length; i += 2) n += pairs[i] ?? 0;
  const out = new Uint32Array(n);
  let k = 0;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    out.fill(pairs[i] ?? 0, k, k + (pairs[i + 1] ?? 0));
    k += pairs[i + 1] ?? 0;
  }
  return out;
}

export function encodeSchedule(f: ScheduleFile): Buffer {
  const pairs = rleEncode(f.events);
  const le = Buffer.alloc(pairs.length * 4);
  pairs.forEach((w, i) => le.writeUInt32LE(w, i * 4));
  return zlib.gzipSync(msgpack.encode({ ...f, events: le }));
}

export class ScheduleFileError extends Error {}

export function decodeSchedule(bytes: Buffer, name: string): ScheduleFile {
  let raw: unknown;
  try {
    raw = msgpack.decode(zlib.gunzipSync(bytes));
  } catch {
    throw new ScheduleFileError(`${name} is not a splitkern schedule (not gzip'd msgpack)`);
  }
  const r = zFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ScheduleFileError(
      `${name} is not a splitkern schedule: ${i ? `${i.path.join('.') || 'file'}: ${i.message}` : 'bad shape'}`,
    );
  }
  const f = r.data;
  if (f.version !== SCHEDULE_VERSION)
    throw new ScheduleFileError(
      `${name} is schedule format version ${f.version}; this splitkern reads ${SCHEDULE_VERSION}`,
    );
  if (f.pointsVersion !== SCHED_POINTS_VERSION || f.points.some((p, i) => SCHED_POINTS[i] !== p))
    throw new ScheduleFileError(
      `${name} was recorded with other schedule points (list version ${f.pointsVersion}); record it again with this splitkern`,
    );
  const b = Buffer.from(f.events);
  const pairs = new Uint32Array(b.length / 4);
  for (let i = 0; i < pairs.length; i++) pairs[i] = b.readUInt32LE(i * 4);
  return { ...f, config: f.config as unknown as MachineConfig, events: rleDecode(pairs) };
}

export function readSchedule(path: string): ScheduleFile {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    throw new ScheduleFileError(`cannot read the schedule ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return decodeSchedule(bytes, path);
}
