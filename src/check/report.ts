// Violation reports. A detector prints its human report in the kernel log (LegoOS's formats) and a
// machine-readable record that the host collects into --json and the exit code. Records travel through
// the kernel log ring as one line prefixed by kViolationTag, which the host strips from the log.
import type { Env } from '../env.ts';

export const kViolationTag = '@@violation ';

export interface ViolationDetails {
  text: string;
  line?: number;
  pid?: number;
  addr?: number;
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
}

interface HasEnv { env: Env; pid?: number }

export function reportViolation(k: HasEnv, kind: string, d: ViolationDetails): void {
  const env = k.env;
  env.printk('error', d.text);
  const { text, ...rest } = d;
  const details: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(rest)) details[key] = typeof v === 'number' && Math.abs(v) > 0xffff ? `0x${v.toString(16)}` : v;
  const rec = {
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
  env.printk('error', kViolationTag + JSON.stringify(rec));
}
