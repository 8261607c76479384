// Signatures: what a failure looks like, in one representation that `repro`, the race-lab tests and
// (later) shrink, campaigns and replays compare. A signature is a detector kind, the facts that tell
// one bug apart from the others, and the normalised first line of the report (no timestamps, no
// addresses or numbers that vary by run).
//
// Facts are `key=value` strings computed by the detector from the state it inspected (for example
// `pte=other-line`, `during=mremap`, `flush=pending`). An expected signature matches a failure when
// the kinds are equal and every expected fact is among the failure's facts; an expected fact may
// list alternatives, `got=zeros|older-generation`.
//
// This module only reads a run's --json summary (src/host/cli.ts): it runs on the host, never in
// the kernel. Pure functions: no state, no shared memory, no lock.

export interface Signature {
  kind: string;
  facts: string[];
  /** the first meaningful report line, normalised */
  text: string;
}

/** What a bug entry expects (text is for people; matching uses kind and facts). */
export interface ExpectedSignature {
  kind: string;
  facts: string[];
  /** one line saying what this failure is */
  describe: string;
}

/** The parts of a `splitkern run --json` summary that failures are read from. */
export interface RunSummary {
  exitCode: number;
  error?: string;
  violations?: Array<{
    kind: string;
    text?: string;
    facts?: string[];
    details?: { facts?: unknown };
    signature?: Signature;
    ms?: number;
  }>;
  violationCount?: number;
  verification?: {
    ok: boolean;
    summary: string;
    pagesVerified?: number;
    moves?: number;
    firstFailure?: { message?: string };
  };
  process?: { signal: number };
  stats?: { bugs?: Record<string, number> };
  wallMs?: number;
  runStartMs?: number;
  /** a controlled schedule's figures (host/schedrun.ts ScheduleSummary) */
  schedule?: { steps: number; switches: number };
}

/** Normalise a report line so that it does not vary by run. */
export function normaliseText(text: string): string {
  return text
    .replace(/^\[\s*\d+\.\d+\]\s*/, '')
    .replace(/\bffff88[0-9a-f]+\b/g, 'ffff88?')
    .replace(/\b0x[0-9a-f]+\b/gi, '0x?')
    .replace(/\b\d+\b/g, 'N')
    .trim();
}

function firstLine(text: string | undefined, fallback: string): string {
  const l = (text ?? '')
    .split('\n')
    .map((s) => s.trim())
    .find((s) => s !== '' && s !== '****    ERROR:');
  return l ?? fallback;
}

/**
 * The data oracles' facts, read from the first failure's message (script and mremap-stress describe
 * a bad page by decoding what it holds: src/user/programs/script.ts describePageContent).
 */
export function oracleFacts(message: string): string[] {
  const facts: string[] = [];
  const probe = /\bis (unmapped|readonly|writable|none), expected (unmapped|readonly|writable|none)\b/.exec(message);
  if (probe) return [`got=${probe[1]}`, `want=${probe[2]}`];
  const tag = /holds region (\S+) page (\d+) generation (\d+).*?expected region (\S+) page (\d+) generation (\d+)/.exec(
    message,
  );
  if (tag) {
    const [, r1, p1, g1, r2, p2, g2] = tag;
    if (r1 === r2 && p1 === p2) facts.push(`got=${Number(g1) < Number(g2) ? 'older-generation' : 'newer-generation'}`);
    else facts.push('got=other-page');
  } else if (/holds zeros/.test(message)) facts.push('got=zeros');
  else if (/holds garbage/.test(message)) facts.push('got=garbage');
  else if (/torn/.test(message)) facts.push('got=torn');
  else if (/is unmapped/.test(message)) facts.push('got=unmapped');
  else if (/MISMATCH against an independent count/.test(message)) facts.push('got=wrong-count');
  else if (/MISMATCH at offset/.test(message)) facts.push('got=wrong-bytes');
  else facts.push('got=other');
  // fork-stress names the second view of a shared page it read through
  if (/\balias\b/.test(message)) facts.push('view=alias');
  return facts;
}

/** Every failure a run shows, each with its signature. A clean run has none. */
export function failuresOf(j: RunSummary): Signature[] {
  const out: Signature[] = [];
  for (const v of j.violations ?? []) {
    if (v.signature) {
      out.push(v.signature);
      continue;
    }
    const facts = Array.isArray(v.facts)
      ? v.facts
      : Array.isArray(v.details?.facts)
        ? (v.details.facts as string[])
        : [];
    out.push({ kind: v.kind, facts, text: normaliseText(firstLine(v.text, v.kind)) });
  }
  const counted = j.violationCount ?? (j.violations ?? []).length;
  if (counted > (j.violations ?? []).length) {
    out.push({
      kind: 'unrecorded',
      facts: [`count=${counted - (j.violations ?? []).length}`],
      text: 'violations counted whose records were dropped',
    });
  }
  if (j.verification && !j.verification.ok) {
    const msg = j.verification.firstFailure?.message ?? j.verification.summary;
    out.push({ kind: 'oracle', facts: oracleFacts(msg), text: normaliseText(firstLine(msg, 'verification failed')) });
  }
  if (j.process && j.process.signal !== 0)
    out.push({ kind: 'signal', facts: [`signo=${j.process.signal}`], text: `killed by signal ${j.process.signal}` });
  if (j.exitCode === 3) {
    const err = firstLine(j.error, 'emulator failure');
    const lockup = /soft lockup/.test(err);
    const wait = lockup ? /\bwaiting for (\w+)/.exec(err) : null;
    out.push({
      kind: lockup ? 'soft-lockup' : 'emulator',
      facts: wait ? [`wait=${wait[1]}`] : [],
      text: normaliseText(err),
    });
  }
  return out;
}

/** Does a failure carry the expected signature? */
export function matches(expected: ExpectedSignature, got: Signature): boolean {
  if (expected.kind !== got.kind) return false;
  const have = new Set(got.facts);
  return expected.facts.every((f) => {
    const eq = f.indexOf('=');
    if (eq < 0) return have.has(f);
    const key = f.slice(0, eq);
    return f
      .slice(eq + 1)
      .split('|')
      .some((v) => have.has(`${key}=${v}`));
  });
}

export function formatSignature(s: { kind: string; facts: string[] }): string {
  return s.facts.length ? `${s.kind} [${s.facts.join(' ')}]` : s.kind;
}
