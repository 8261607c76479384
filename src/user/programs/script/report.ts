// The report of a `script` run, collected by main after every thread joined, from the threads'
// statistics pages in the control region. No lock: collectScriptReport reads the areas plainly, and
// is called by main only after joining every thread (the join orders their writes before it).
// printErr uses only its own scratch page.
import { MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE, STDERR_FILENO } from '../../../uapi/abi.ts';
import type { UserContext } from '../../../uapi/program.ts';
import { kStatFailures, kStatFirstLine, kStatMsg, kStatMsgLen, kStatSteps, threadArea } from './layout.ts';
import { Scenario } from './format.ts';

export interface ScriptReport {
  kind: 'script';
  scenario: string;
  file: string;
  threads: number;
  steps: number;
  failures: number;
  firstFailure?: { line: number; thread: number; message: string };
}

/** Read every thread's stats from the control region (main, after joining the threads). */
export function collectScriptReport(u: UserContext, sc: Scenario): ScriptReport {
  const report: ScriptReport = {
    kind: 'script',
    scenario: sc.name,
    file: sc.file,
    threads: sc.threads,
    steps: 0,
    failures: 0,
  };
  for (let t = 0; t < sc.threads; t++) {
    const a = threadArea(sc.ctlBase, t);
    const failures = u.mmu.load64(a + kStatFailures);
    report.steps += u.mmu.load64(a + kStatSteps);
    report.failures += failures;
    if (failures === 0) continue;
    const line = u.mmu.load64(a + kStatFirstLine);
    if (report.firstFailure && report.firstFailure.line <= line) continue;
    const msg = new Uint8Array(Math.min(u.mmu.load64(a + kStatMsgLen), PAGE_SIZE - kStatMsg));
    u.mmu.read(a + kStatMsg, msg);
    report.firstFailure = { line, thread: t, message: new TextDecoder().decode(msg) };
  }
  return report;
}

/** Print a message on stderr from a scratch page (used before the control region exists). */
export function printErr(u: UserContext, msg: string): void {
  const bytes = new TextEncoder().encode(`${msg}\n`).subarray(0, PAGE_SIZE);
  const va = u.sys.mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va < 0) return;
  u.mmu.write(va, bytes);
  u.sys.write(STDERR_FILENO, va, bytes.length);
  u.sys.munmap(va, PAGE_SIZE);
}
