// The `script` workload: JSON Lines scenarios that drive mmap/munmap/mremap/brk/mprotect from several
// threads and verify memory contents with self-describing page tags (and, with `touch`, take real
// faults: an access the kernel cannot resolve kills the process with SIGSEGV). The format is documented in
// traces/README.md; this program and src/user/programs/script/ (layout, tags, format, parser,
// interpreter, report) are its only implementation.
//
// How a run is laid out in emulated memory (everything a thread shares with another goes through it):
//   the control region, mapped MAP_FIXED by main at `ctl` (default kDefaultCtlBase) before any clone:
//     page 0              variable slots: slot i at +8*i holds value + kVarBias (0 = never set)
//     per thread t, kThreadPages pages at ctl + PAGE_SIZE * (1 + t * kThreadPages):
//       page 0            stats: steps, failures, first failure's line, message length, message bytes
//       pages 1..         stdout buffer: each output line is copied here and written with sys.write(1, ...)
// Every thread re-parses the scenario from argv[0], so the layout (ctl, slots) is known to all of them
// without passing pointers: clone's argument is just the scenario thread index. No lock: each thread's
// stats and stdout pages are written only by it, variable slots are plain 64-bit stores ordered between
// threads by the kernel barriers, and main reads the stats only after joining every thread.

import type { Program } from '../../uapi/program.ts';
import { collectScriptReport, printErr } from './script/report.ts';
import { parseScenario } from './script/parser.ts';
import { describeRet, driveWithBarriers, mapScriptControl } from './script/interpreter.ts';
import { Scenario, ScenarioError } from './script/format.ts';
import { hex } from '../../lib/text.ts';

export const scriptProgram: Program = {
  name: 'script',
  main(u, argv) {
    const file = argv[1] ?? '<scenario>';
    let sc: Scenario;
    try {
      sc = parseScenario(argv[0] ?? '', file);
    } catch (e) {
      if (!(e instanceof ScenarioError)) throw e;
      printErr(u, e.message);
      u.report({
        kind: 'script',
        scenario: '',
        file,
        threads: 0,
        steps: 0,
        failures: 1,
        firstFailure: { line: e.line, thread: 0, message: e.message },
      });
      return 2;
    }
    const fail = (message: string): number => {
      printErr(u, `${file}: ${message}`);
      u.report({
        kind: 'script',
        scenario: sc.name,
        file,
        threads: sc.threads,
        steps: 0,
        failures: 1,
        firstFailure: { line: 0, thread: 0, message },
      });
      return 1;
    };
    const mapped = mapScriptControl(u, sc);
    if (mapped !== 0)
      return fail(`cannot map the control region at ${hex(sc.ctlBase)}: mmap returned ${describeRet(mapped)}`);
    const tids: number[] = [];
    for (let t = 1; t < sc.threads; t++) {
      const tid = u.sys.clone('script-thread', t);
      // Threads already started would wait at the first barrier forever; a failed clone is fatal anyway.
      if (tid < 0) return fail(`clone of scenario thread ${t} failed: ${describeRet(tid)}`);
      tids.push(tid);
    }
    driveWithBarriers(u, sc, 0);
    const joinErrors: string[] = [];
    tids.forEach((tid, k) => {
      const r = u.sys.join(tid);
      if (r < 0) joinErrors.push(`join of scenario thread ${k + 1} (tid ${tid}) returned ${describeRet(r)}`);
    });
    const report = collectScriptReport(u, sc);
    for (const msg of joinErrors) {
      report.failures++;
      report.firstFailure ??= { line: 0, thread: 0, message: msg };
    }
    u.report(report);
    return report.failures > 0 ? 1 : 0;
  },
  threads: {
    'script-thread'(u, t) {
      const sc = parseScenario(u.argv[0] ?? '', u.argv[1] ?? '<scenario>');
      return driveWithBarriers(u, sc, t);
    },
  },
};
