// Running a scenario thread: each step's syscall or memory check, its expectation, and the
// thread's statistics and output in its area of the control region (layout.ts). Threads meet at
// kernel barriers; the program drives them (driveWithBarriers) and tests can drive several
// round-robin (runScriptThread). No lock: in the control region a ScriptThread writes only its own
// area (stats, stdout buffer) and the variable slots, plainly through the MMU; another thread's value
// is ordered only by a barrier between the steps (the sys.barrier calls of driveWithBarriers). A
// ScriptThread is used only by the user thread it runs; mapScriptControl is main's, before any clone.
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_PRIVATE,
  PAGE_SIZE,
  PROT_READ,
  PROT_WRITE,
  SEGV_ACCERR,
  STDOUT_FILENO,
  TASK_SIZE,
  errnoName,
  FUTEX_WAIT_PRIVATE,
  FUTEX_WAKE_PRIVATE,
} from '../../../uapi/abi.ts';
import type { UserContext } from '../../../uapi/program.ts';
import { decodePageTag, describePageContent, regionId, writeTaggedPage } from './tags.ts';
import {
  ctlRegionSize,
  kOutPages,
  kStatFailures,
  kStatFirstLine,
  kStatMsg,
  kStatMsgLen,
  kStatSteps,
  kVarBias,
  threadArea,
} from './layout.ts';
import { Expect, NumExpr, ProbeState, Scenario, Step } from './format.ts';
import { hex } from '../../../lib/text.ts';
import { at } from '../../../lib/at.ts';

/** A step that did not do what the scenario expects; caught per step (never a UserSignal). */
export class StepFailure extends Error {}

export type OutValue = string | number | boolean | string[];

export const fmtRet = (v: number): string | number => (v >= 0x10000 ? hex(v) : v);
export const describeRet = (v: number): string => {
  const e = errnoName(v);
  return e !== undefined ? `${e} (${v})` : String(fmtRet(v));
};
export const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`;

/** Per-thread interpreter state. All cross-thread data (variables, stats) lives in emulated memory. */
export class ScriptThread {
  steps = 0;
  failures = 0;
  private readonly area: number;
  private readonly out: number;

  constructor(
    readonly u: UserContext,
    readonly sc: Scenario,
    readonly t: number,
  ) {
    this.area = threadArea(sc.ctlBase, t);
    this.out = this.area + PAGE_SIZE;
  }

  loadVar(name: string, field: string): number {
    const raw = this.u.mmu.load64(this.varAddr(name));
    if (raw === 0) {
      const by = (this.sc.varSetters.get(name) ?? []).map((s) => `line ${s.line} (thread ${s.thread})`).join(', ');
      throw new StepFailure(
        `variable ${name} in "${field}" is not set: it is set by ${by}; if that step ran it failed, ` +
          'and if it runs on another thread, put a barrier between them',
      );
    }
    return raw - kVarBias;
  }

  storeVar(name: string, v: number): void {
    this.u.mmu.store64(this.varAddr(name), v + kVarBias);
  }

  /** the slot of a variable the parser declared (every name reaching here has one) */
  private varAddr(name: string): number {
    const slot = this.sc.varSlots.get(name);
    if (slot === undefined) throw new Error(`script: variable ${name} has no slot`);
    return this.sc.ctlBase + 8 * slot;
  }

  eval(e: NumExpr, field: string): number {
    const t0 = at(e.terms, 0);
    if (e.terms.length === 1 && t0.vars.length === 0) return t0.sign * t0.lit; // a literal: may be a 64-bit value
    let v = 0;
    for (const term of e.terms) {
      let x = term.lit;
      for (const name of term.vars) x *= this.loadVar(name, field);
      v += term.sign * x;
    }
    if (!Number.isSafeInteger(v)) throw new StepFailure(`"${field}" = ${e.text} is not a safe integer (${v})`);
    return v;
  }

  /** Page-aligned address and page count of a fill/check/probe range. */
  pages(addrE: NumExpr, lenE: NumExpr): { addr: number; n: number } {
    const addr = this.eval(addrE, 'addr');
    const len = this.eval(lenE, 'len');
    if (addr < 0 || addr % PAGE_SIZE !== 0)
      throw new StepFailure(`addr ${hex(addr)} is not a page-aligned user address`);
    if (len <= 0) throw new StepFailure(`len ${len} must be positive`);
    return { addr, n: Math.ceil(len / PAGE_SIZE) };
  }

  classify(va: number): ProbeState {
    const si = this.u.mmu.probeSiCode(va, false);
    if (si !== 0) return si === SEGV_ACCERR ? 'none' : 'unmapped';
    return this.u.mmu.probe(va, true) ? 'writable' : 'readonly';
  }

  emit(out: Record<string, OutValue>): void {
    const bytes = new TextEncoder().encode(`${JSON.stringify(out)}\n`);
    const cap = kOutPages * PAGE_SIZE;
    for (let off = 0; off < bytes.length;) {
      const n = Math.min(cap, bytes.length - off);
      this.u.mmu.write(this.out, bytes, off, n);
      const w = this.u.sys.write(STDOUT_FILENO, this.out, n);
      if (w <= 0) return; // stdout is gone; the stats in memory still count the step
      off += w;
    }
  }

  recordFailure(line: number, msg: string): void {
    this.failures++;
    const mmu = this.u.mmu;
    mmu.store64(this.area + kStatFailures, this.failures);
    if (this.failures > 1) return;
    const bytes = new TextEncoder().encode(msg).subarray(0, PAGE_SIZE - kStatMsg);
    mmu.write(this.area + kStatMsg, bytes);
    mmu.store64(this.area + kStatMsgLen, bytes.length);
    mmu.store64(this.area + kStatFirstLine, line);
  }

  finish(out: Record<string, OutValue>, error: string | undefined, line: number): void {
    this.steps++;
    this.u.mmu.store64(this.area + kStatSteps, this.steps);
    out.ok = error === undefined;
    if (error !== undefined) {
      out.error = error;
      this.recordFailure(line, error);
    }
    this.emit(out);
  }

  run(step: Exclude<Step, { op: 'barrier' }>, rep: number): void {
    const out: Record<string, OutValue> = { line: step.line, thread: this.t, op: step.op };
    if (step.repeat > 1) out.rep = rep;
    let error: string | undefined;
    try {
      this.exec(step, out);
    } catch (e) {
      if (!(e instanceof StepFailure)) throw e;
      error = e.message;
    }
    this.finish(out, error, step.line);
  }

  barrierDone(step: Extract<Step, { op: 'barrier' }>, ret: number): void {
    const out: Record<string, OutValue> = {
      line: step.line,
      thread: this.t,
      op: 'barrier',
      id: step.label,
      ret: fmtRet(ret),
    };
    this.finish(out, ret < 0 ? `barrier returned ${describeRet(ret)}` : undefined, step.line);
  }

  private exec(step: Exclude<Step, { op: 'barrier' }>, out: Record<string, OutValue>): void {
    const { sys } = this.u;
    switch (step.op) {
      case 'mmap':
        return this.syscall(step, out, () =>
          sys.mmap(
            this.eval(step.addr, 'addr'),
            this.eval(step.len, 'len'),
            step.prot,
            step.flags,
            this.eval(step.fd, 'fd'),
            this.eval(step.offset, 'offset'),
          ),
        );
      case 'munmap':
        return this.syscall(step, out, () => sys.munmap(this.eval(step.addr, 'addr'), this.eval(step.len, 'len')));
      case 'mprotect':
        return this.syscall(step, out, () =>
          sys.mprotect(this.eval(step.addr, 'addr'), this.eval(step.len, 'len'), step.prot),
        );
      case 'mremap':
        return this.syscall(step, out, () =>
          sys.mremap(
            this.eval(step.addr, 'addr'),
            this.eval(step.oldLen, 'old_len'),
            this.eval(step.newLen, 'new_len'),
            step.flags,
            step.newAddr ? this.eval(step.newAddr, 'new_addr') : undefined,
          ),
        );
      case 'brk':
        return this.syscall(step, out, () => sys.brk(this.eval(step.addr, 'addr')));
      case 'futex_wait':
        return this.syscall(step, out, () =>
          sys.futex(
            this.eval(step.addr, 'addr'),
            FUTEX_WAIT_PRIVATE,
            this.eval(step.val, 'val'),
            this.eval(step.timeoutMs, 'timeout_ms'),
          ),
        );
      case 'futex_wake':
        return this.syscall(step, out, () =>
          sys.futex(this.eval(step.addr, 'addr'), FUTEX_WAKE_PRIVATE, this.eval(step.count, 'count')),
        );
      case 'fill':
        return this.fill(step, out);
      case 'check':
        return this.check(step, out);
      case 'probe':
        return this.probe(step, out);
      case 'touch':
        return this.touch(step, out);
    }
  }

  private syscall(step: Extract<Step, { expect: Expect }>, out: Record<string, OutValue>, call: () => number): void {
    const ret = call();
    out.ret = fmtRet(ret);
    const e = errnoName(ret);
    if (e !== undefined) out.errno = e;
    let ok: boolean;
    let want: string;
    switch (step.expect.kind) {
      case 'ok':
        ok = ret >= 0;
        want = 'ok';
        out.expect = want;
        break;
      case 'errno':
        ok = ret === -step.expect.errno;
        want = step.expect.name;
        out.expect = want;
        break;
      case 'value': {
        const v = this.eval(step.expect.expr, 'expect');
        ok = ret === v;
        out.expect = fmtRet(v);
        want = v < 0 ? describeRet(v) : hex(v);
        break;
      }
    }
    if (!ok) {
      throw new StepFailure(`${step.op} returned ${describeRet(ret)}, expected ${want === 'ok' ? 'success' : want}`);
    }
    if (step.as !== undefined) this.storeVar(step.as, ret);
  }

  private fill(step: Extract<Step, { op: 'fill' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    out.range = `[${hex(addr)} - ${hex(addr + n * PAGE_SIZE)})`;
    const page0 = this.eval(step.page, 'page');
    const id = regionId(step.region);
    const { mmu } = this.u;
    out.pages = n;
    for (let i = 0; i < n; i++) {
      const va = addr + i * PAGE_SIZE;
      // Probe first so that a missing or read-only page is a step failure, not a SIGSEGV of the run.
      if (!mmu.probe(va, true)) {
        throw new StepFailure(`page at ${hex(va)} (page ${i} of the range) is ${this.classify(va)}, cannot fill it`);
      }
      if (step.pattern.kind === 'tag') {
        writeTaggedPage(mmu, va, { region: id, page: page0 + i, generation: step.gen, thread: this.t });
      } else {
        mmu.fill(va, step.pattern.kind === 'zero' ? 0 : step.pattern.byte, PAGE_SIZE);
      }
    }
  }

  private check(step: Extract<Step, { op: 'check' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    out.range = `[${hex(addr)} - ${hex(addr + n * PAGE_SIZE)})`;
    const page0 = this.eval(step.page, 'page');
    const id = regionId(step.region);
    const { mmu } = this.u;
    const buf = new Uint8Array(PAGE_SIZE);
    let bad = 0;
    let first = '';
    out.pages = n;
    for (let i = 0; i < n; i++) {
      const va = addr + i * PAGE_SIZE;
      let want: string;
      if (step.pattern.kind === 'tag') {
        want =
          `region ${step.region} page ${page0 + i} generation ${step.gen}` +
          (step.writer !== undefined ? ` written by thread ${step.writer}` : '');
      } else {
        want = step.pattern.kind === 'zero' ? 'zeros' : `bytes ${hex(step.pattern.byte)} throughout`;
      }
      let got: string | undefined;
      const si = mmu.probeSiCode(va, false);
      if (si !== 0) {
        got = si === SEGV_ACCERR ? 'is none (PROT_NONE)' : 'is unmapped';
      } else {
        mmu.read(va, buf);
        const c = decodePageTag(buf);
        let good: boolean;
        if (step.pattern.kind === 'tag') {
          good =
            c.kind === 'tag' &&
            c.intact &&
            c.tag.region === id &&
            c.tag.page === page0 + i &&
            c.tag.generation === step.gen &&
            (step.writer === undefined || c.tag.thread === step.writer);
        } else if (step.pattern.kind === 'zero') {
          good = c.kind === 'zeros';
        } else {
          good = c.kind === 'byte' && c.byte === step.pattern.byte;
        }
        if (!good) got = `holds ${describePageContent(c, this.sc.regionNames)}`;
      }
      if (got !== undefined && bad++ === 0)
        first = `page at ${hex(va)} (page ${i} of the range) ${got}, expected ${want}`;
    }
    if (bad > 0) throw new StepFailure(`${bad} of ${plural(n, 'page')} wrong; first: ${first}`);
  }

  /**
   * Plain loads or stores, like a C program dereferencing a pointer: no probe first, so an access the
   * kernel cannot resolve raises SIGSEGV (a UserSignal, not a StepFailure) and kills the process. Touches
   * `addr` and then the first byte of every later page that starts in [addr, addr+len). A write stores 0.
   * The step's line is printed only after every access succeeded.
   */
  private touch(step: Extract<Step, { op: 'touch' }>, out: Record<string, OutValue>): void {
    const addr = this.eval(step.addr, 'addr');
    const len = this.eval(step.len, 'len');
    if (len <= 0) throw new StepFailure(`len ${len} must be positive`);
    if (addr < 0 || addr + len > TASK_SIZE) {
      throw new StepFailure(
        `[${hex(addr)} - ${hex(addr + len)}) is not a user range (below TASK_SIZE ${hex(TASK_SIZE)})`,
      );
    }
    out.range = `[${hex(addr)} - ${hex(addr + len)})`;
    out.access = step.access;
    const { mmu } = this.u;
    for (let va = addr; va < addr + len; va = (Math.floor(va / PAGE_SIZE) + 1) * PAGE_SIZE) {
      if (step.access === 'write') mmu.store8(va, 0);
      else mmu.load8(va);
    }
  }

  private probe(step: Extract<Step, { op: 'probe' }>, out: Record<string, OutValue>): void {
    const { addr, n } = this.pages(step.addr, step.len);
    const states: ProbeState[] = [];
    for (let i = 0; i < n; i++) states.push(this.classify(addr + i * PAGE_SIZE));
    const runs: string[] = [];
    for (let i = 0; i < n;) {
      let j = i + 1;
      while (j < n && states[j] === states[i]) j++;
      runs.push(`[${hex(addr + i * PAGE_SIZE)} - ${hex(addr + j * PAGE_SIZE)}) ${states[i]}`);
      i = j;
    }
    out.probe = runs;
    if (!step.expectProbe) return;
    const want: ProbeState[] = [];
    step.expectProbe.forEach((r, k) => {
      const pages = r.pages
        ? this.eval(r.pages, `expect_probe[${k}].pages`)
        : r.len
          ? Math.ceil(this.eval(r.len, `expect_probe[${k}].len`) / PAGE_SIZE)
          : 0; // the parser gives every run pages or len
      for (let i = 0; i < pages && want.length <= n; i++) want.push(r.state);
    });
    if (want.length !== n) {
      throw new StepFailure(`expect_probe describes ${plural(want.length, 'page')} but the range has ${n}`);
    }
    const i = states.findIndex((s, k) => s !== want[k]);
    if (i >= 0) {
      throw new StepFailure(
        `page at ${hex(addr + i * PAGE_SIZE)} (page ${i} of the range) is ${states[i]}, expected ${want[i]}`,
      );
    }
  }
}

/**
 * Run scenario thread `t`'s steps. Yields at each barrier the barrier's ordinal (a kernel barrier id,
 * all threads take part) and expects sys.barrier's return value back; returns the number of failures.
 * The program drives it with real barriers; tests can drive several of them round-robin.
 */
export function* runScriptThread(u: UserContext, sc: Scenario, t: number): Generator<number, number, number> {
  const st = new ScriptThread(u, sc, t);
  for (const step of sc.steps) {
    if (step.thread !== t) continue;
    if (step.op === 'barrier') {
      const ret = yield step.ordinal;
      st.barrierDone(step, ret);
      continue;
    }
    for (let rep = 0; rep < step.repeat; rep++) st.run(step, rep);
  }
  return st.failures;
}

export function driveWithBarriers(u: UserContext, sc: Scenario, t: number): number {
  const g = runScriptThread(u, sc, t);
  for (let r = g.next(0); ;) {
    if (r.done) return r.value;
    r = g.next(u.sys.barrier(r.value, sc.threads));
  }
}

/** Map the control region (main, before starting threads). Returns 0 or -errno. */
export function mapScriptControl(u: UserContext, sc: Scenario): number {
  const ret = u.sys.mmap(
    sc.ctlBase,
    ctlRegionSize(sc.threads),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    -1,
    0,
  );
  return ret === sc.ctlBase ? 0 : ret < 0 ? ret : -1;
}
