// Run the splitkern CLI as a user would (a child process), for end-to-end tests.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = path.join(repoRoot, 'bin', 'splitkern.mjs');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`splitkern ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** The --json summary of a run. */
export interface JsonSummary {
  ok: boolean;
  exitCode: number;
  verification: { ok: boolean; summary: string; [k: string]: unknown };
  violations: Array<{
    kind: string;
    text: string;
    truncated?: boolean;
    details: { facts?: string[]; [k: string]: unknown };
  }>;
  violationCount: number;
  violationsDropped: number;
  process: { exit: number; signal: number; faultAddr?: string };
  output: string;
  stats: {
    pcache: Record<string, number>;
    fabric: Record<string, { count: number }>;
    tlb: { shootdowns: number; ipisSent: number; ipisReceived: number };
    mremap: { psetSame: number; psetDiff: number; pagesMoved: number };
    bugs: Record<string, number>;
    faults: { total: number; segfaults: number };
    syscalls: Record<string, number>;
    futex: { waits: number; woken: number; timedOut: number };
    shared: { aliasFills: number; retries: number; zapFlushes: number; evictions: number };
  };
}

export async function runJson(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs?: number,
): Promise<{ r: CliResult; j: JsonSummary }> {
  const r = await runCli([...args, '--json'], env, timeoutMs);
  let j: JsonSummary;
  try {
    j = JSON.parse(r.stdout) as JsonSummary;
  } catch {
    throw new Error(`no JSON summary (exit ${r.code}):\n${r.stdout.slice(0, 2000)}\n${r.stderr.slice(-3000)}`);
  }
  return { r, j };
}
