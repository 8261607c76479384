// Violation reports: the channel that loses nothing. A detector prints its human report in the
// kernel log (LegoOS's formats; the log ring may drop lines under a flood) and sends a
// machine-readable record through the reports buffer (src/kernel/layout.ts):
//   1. Atomics.add of its context's violation counter: the count is the truth, and the exit code is
//      computed from it (Machine.violationCount), never from the records that could be read;
//   2. a slot reserved by CAS on kRepHead only while the ring has room, else kRepDropped is counted;
//   3. the record (JSON, capped to a slot: it always parses) and its commit word.
// The host drains the ring in index order (drainReports) and frees each slot before it moves kRepTail.
// No lock: every word is Atomics (layout.ts REP_HDR / REPORT_SLOT); a writer's record bytes are its own
// from the kRepHead CAS until its kRepSlotIndex store. reportViolation/kernelWarn may be called from any
// context with any kernel lock held (they never wait); drainReports only on the host thread. kernelWarn's
// once-per-function set is worker-local.
import type { Env } from './env.ts';
import {
  kRepCountBase,
  kRepDropped,
  kRepHead,
  kReportSlotBytes,
  kReportSlotHeaderBytes,
  kRepSlotIndex,
  kRepSlotLen,
  kReportSlots,
  kRepTail,
  type Shared,
} from './layout.ts';

export interface ViolationDetails {
  text: string;
  line?: number;
  pid?: number;
  addr?: number;
  /** key=value facts that tell this failure apart (src/racelab/signature.ts) */
  facts?: string[];
  [k: string]: unknown;
}

export interface Violation {
  kind: string;
  cpu: number;
  context: string;
  pid?: number;
  addr?: string;
  details: Record<string, unknown>;
  text: string;
  /** when it was detected, ms since boot */
  ms?: number;
  /** the record did not fit a slot: details were left out and the text cut */
  truncated?: boolean;
}

interface HasEnv {
  env: Env;
  pid?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const kRecordBytes = kReportSlotBytes - kReportSlotHeaderBytes;

export function reportViolation(k: HasEnv, kind: string, d: ViolationDetails): void {
  const env = k.env;
  const sh = env.sh;
  sh.repHdr.add(kRepCountBase + env.ctx, 1);
  env.printk('error', d.text);
  const { text, ...rest } = d;
  const details: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(rest))
    details[key] = typeof v === 'number' && Math.abs(v) > 0xffff ? `0x${v.toString(16)}` : v;
  const rec: Violation = {
    kind,
    cpu: env.cpu,
    context: env.name,
    pid: d.pid,
    addr: d.addr === undefined ? undefined : `0x${d.addr.toString(16)}`,
    details,
    // the first report line, the full text is in the log
    text: text.split('\n').find((l) => l.trim() !== '' && l.trim() !== '****    ERROR:') ?? kind,
    ms: Math.round(env.nowMs() * 1000) / 1000,
  };
  let bytes = enc.encode(JSON.stringify(rec));
  if (bytes.length > kRecordBytes) {
    // keep what identifies the failure: kind, where, the facts, and the start of the text
    const facts = Array.isArray(d.facts) ? d.facts.slice(0, 16).map((f) => String(f).slice(0, 64)) : undefined;
    bytes = enc.encode(
      JSON.stringify({ ...rec, details: facts ? { facts } : {}, text: rec.text.slice(0, 256), truncated: true }),
    );
  }
  postRecord(sh, bytes);
}

function postRecord(sh: Shared, bytes: Uint8Array): void {
  const hdr = sh.repHdr;
  let index: number;
  for (;;) {
    index = hdr.load(kRepHead);
    if (index - hdr.load(kRepTail) >= kReportSlots) {
      hdr.add(kRepDropped, 1);
      return;
    }
    if (hdr.cas(kRepHead, index, index + 1) === index) break;
  }
  const slot = index % kReportSlots;
  sh.repBytes.set(bytes, slot * kReportSlotBytes + kReportSlotHeaderBytes);
  sh.repSlots.store(slot, kRepSlotLen, bytes.length);
  sh.repSlots.store(slot, kRepSlotIndex, index + 1); // commit
}

/**
 * Host side: move every committed record out of the ring, in index order, and free its slot. With
 * `final` (no writer is left), a reserved slot that was never committed is skipped (its writer
 * died); its violation is still in the counters.
 */
export function drainReports(sh: Shared, into: Violation[], final = false): void {
  const hdr = sh.repHdr;
  let tail = hdr.load(kRepTail);
  const head = hdr.load(kRepHead);
  while (tail < head) {
    const slot = tail % kReportSlots;
    const off = slot * kReportSlotBytes;
    if (sh.repSlots.load(slot, kRepSlotIndex) === tail + 1) {
      const len = sh.repSlots.load(slot, kRepSlotLen);
      into.push(
        JSON.parse(
          dec.decode(sh.repBytes.slice(off + kReportSlotHeaderBytes, off + kReportSlotHeaderBytes + len)),
        ) as Violation,
      );
    } else if (!final) break; // reserved, not yet committed
    sh.repSlots.store(slot, kRepSlotIndex, 0);
    tail++;
    hdr.store(kRepTail, tail);
  }
}

/** Violations counted by every context (the truth the exit code is computed from). */
export function violationCount(sh: Shared): number {
  let n = 0;
  for (let c = 0; c < sh.geo.ctx.total; c++) n += sh.repHdr.load(kRepCountBase + c);
  return n;
}

/** Records that found the ring full. */
export function reportsDropped(sh: Shared): number {
  return sh.repHdr.load(kRepDropped);
}

/**
 * WARN_ON: a kernel path met a state it does not allow. The cut-here block is printed once per
 * function (as WARN_ON_ONCE, to keep the log readable); every occurrence is a violation of kind
 * `warn` with the fact `site=<fn>`.
 */
const warned = new Set<string>();
export function kernelWarn(k: HasEnv, where: { fn: string; file: string }, msg: string): void {
  const env = k.env;
  if (!warned.has(where.fn)) {
    warned.add(where.fn);
    env.printk('warn', `------------[ cut here ]------------`);
    env.printk('warn', `WARNING: CPU: ${Math.max(env.cpu, 0)} PID: ${k.pid ?? 0} at ${where.file} ${where.fn}`);
    env.printk('warn', msg);
    env.printk('warn', `---[ end trace ]---`);
  }
  reportViolation(k, 'warn', {
    text: `WARNING: CPU: ${Math.max(env.cpu, 0)} at ${where.file} ${where.fn}: ${msg.split('\n')[0]}`,
    facts: [`site=${where.fn}`],
  });
}
