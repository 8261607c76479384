// The controlled scheduler (--sched random|pct|replay, src/kernel/ctlsched.ts) end to end: the same seed
// gives the same schedule and the same final state; a recorded schedule replays to the same failure
// text, signature and final-state hash (on three bug entries); an edited schedule is a divergence
// (exit 3); the fixed kernel shows no violation under controlled schedules; bad input is one line and
// exit 2. Plus the schedule file's encoding.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventChosen, eventPoint, eventYielder, packEvent } from '../src/kernel/ctlsched.ts';
import { decodeSchedule, encodeSchedule, readSchedule, rleDecode, rleEncode } from '../src/racelab/schedule.ts';
import { parseSched, UsageError } from '../src/host/options.ts';
import { compareSchedules } from '../src/host/schedrun.ts';
import { runCli, runJson, type JsonSummary } from './helpers/cli.ts';

interface Sched {
  mode: string;
  steps: number;
  switches: number;
  eventHash: string;
  finalHash: string;
}
const schedOf = (j: JsonSummary): Sched => (j as unknown as { schedule: Sched }).schedule;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'splitkern-ctlsched-'));

describe('schedule files', () => {
  it('run-length encoding round-trips any event sequence', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 300 }), (xs) => {
        const words = Uint32Array.from(xs, (x) => packEvent(x, x * 3, 2 - x + 5));
        expect([...rleDecode(rleEncode(words))]).toEqual([...words]);
      }),
    );
  });
  it('an event word keeps who decided, where, and who runs next', () => {
    const w = packEvent(300, 41, 7);
    expect([eventYielder(w), eventPoint(w), eventChosen(w)]).toEqual([300, 41, 7]);
  });
  it('a file that is not a schedule is one clear error', () => {
    const bad = path.join(tmp, 'bad.sched');
    fs.writeFileSync(bad, 'hello');
    expect(() => readSchedule(bad)).toThrow(/is not a splitkern schedule/);
    expect(() => readSchedule(path.join(tmp, 'none.sched'))).toThrow(/cannot read the schedule .*ENOENT/);
  });
  it('parses the modes and refuses others with the fix', () => {
    expect(parseSched('pct:3')).toMatchObject({ mode: 'pct', pctDepth: 3, pctSteps: 20000 });
    expect(parseSched('pct:2:500')).toMatchObject({ mode: 'pct', pctDepth: 2, pctSteps: 500 });
    expect(parseSched('replay:x.sched')).toMatchObject({ mode: 'replay', replayFile: 'x.sched' });
    expect(() => parseSched('pct:0')).toThrow(UsageError);
    expect(() => parseSched('roundrobin')).toThrow(/use free, random, pct:D/);
  });
});

describe('controlled runs', () => {
  const small = [
    'run',
    'pthread-stress',
    '--threads',
    '3',
    '--iterations',
    '40',
    '--items',
    '30',
    '--log-level',
    'error',
  ];

  it('the same seed gives the same schedule and final state; another seed another schedule', async () => {
    const a = await runJson([...small, '--sched', 'random', '--seed', '5']);
    const b = await runJson([...small, '--sched', 'random', '--seed', '5']);
    const c = await runJson([...small, '--sched', 'random', '--seed', '6']);
    for (const x of [a, b, c]) expect(x.j.exitCode).toBe(0);
    expect(schedOf(a.j).steps).toBeGreaterThan(100);
    expect(schedOf(b.j)).toEqual(schedOf(a.j));
    expect(schedOf(c.j).eventHash).not.toBe(schedOf(a.j).eventHash);
  }, 120_000);

  it('--check-determinism passes on the fixed kernel and on a bug entry', async () => {
    const fixed = await runCli([...small, '--sched', 'pct:3', '--check-determinism']);
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toMatch(/determinism: both runs made the same \d+ decisions .* ended alike \(exit 0/);
    const bug = await runCli([
      'run',
      'script',
      'traces/munmap-brk.jsonl',
      '--bug',
      'brk-shrink-no-zap',
      '--sched',
      'random',
      '--check-determinism',
    ]);
    expect(bug.code).toBe(1);
    expect(bug.stdout).toMatch(/ended alike \(exit 1,/);
  }, 120_000);

  it('the determinism check names the first step where two recordings differ', async () => {
    const file = path.join(tmp, 'det.sched');
    expect((await runCli([...small, '--sched', 'random', '--seed', '4', '--record', file])).code).toBe(0);
    const a = readSchedule(file);
    expect(compareSchedules(a, readSchedule(file))).toBeUndefined();
    const b = readSchedule(file);
    const w = b.events[10] ?? 0;
    b.events[10] = packEvent(eventYielder(w), eventPoint(w) + 1, eventChosen(w));
    expect(compareSchedules(a, b)).toMatch(/^the two runs differ at step 11: run 1 .* at /);
    const c = readSchedule(file);
    c.outcome.finalHash = '0'.repeat(64);
    expect(compareSchedules(a, c)).toMatch(/ended in different states/);
  }, 60_000);

  it('PCT runs, and says n and k', async () => {
    const r = await runCli([...small, '--sched', 'pct:3', '--seed', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/pct: n=\d+ contexts, k=\d+ steps, D=3/);
  }, 120_000);

  it('a recorded schedule replays exactly; an edited one is a divergence (exit 3)', async () => {
    const file = path.join(tmp, 'small.sched');
    const rec = await runJson([...small, '--sched', 'random', '--seed', '9', '--record', file]);
    expect(rec.j.exitCode).toBe(0);
    const rep = await runJson(['replay', file]);
    expect(rep.j.exitCode).toBe(0);
    expect(rep.r.stderr).toMatch(/replay: followed all \d+ decisions; same no failure/);
    expect(schedOf(rep.j).finalHash).toBe(schedOf(rec.j).finalHash);
    // hand the turn elsewhere at one decision in the middle: the run reaches another point
    const f = decodeSchedule(fs.readFileSync(file), file);
    const mid = f.events.findIndex((w, i) => i > f.events.length / 3 && eventChosen(w) !== eventYielder(w));
    const w = f.events[mid] ?? 0;
    f.events[mid] = packEvent(eventYielder(w), eventPoint(w), eventYielder(w));
    const edited = path.join(tmp, 'edited.sched');
    fs.writeFileSync(edited, encodeSchedule(f));
    const div = await runCli(['replay', edited]);
    expect(div.code).toBe(3);
    expect(div.stderr).toMatch(new RegExp(`replay diverged at step (${mid + 1}|\\d+): `));
  }, 120_000);

  // three bug entries: reproduced under a random schedule, recorded, replayed to the same report
  const entries: Array<{ name: string; args: string[]; kind: string }> = [
    {
      name: 'mremap-no-pcache-move',
      args: ['script', 'traces/mremap-paths.jsonl', '--check', 'syscall', '--pcache', '256K', '--ways', '4'],
      kind: 'rmap-pte-mismatch',
    },
    {
      name: 'mremap-dest-overwrite',
      args: ['script', 'traces/mremap-dest-fault.jsonl', '--cpus', '2', '--check', 'end'],
      kind: 'rmap-pte-mismatch',
    },
    {
      name: 'mremap-unserialized',
      args: ['mremap-stress', '--cpus', '2', '--pcache', '128K', '--ways', '2'],
      kind: '',
    },
  ];
  for (const e of entries) {
    it(`${e.name}: the recorded schedule replays to the same report and final state`, async () => {
      const file = path.join(tmp, `${e.name}.sched`);
      const bugs = e.name === 'mremap-dest-overwrite' ? `${e.name},mremap-unserialized` : e.name;
      const base = ['run', ...e.args, '--bug', bugs, '--log-level', 'error', '--sched', 'random', '--seed', '1'];
      const rec = await runJson([...base, '--record', file], {}, 180_000);
      expect(rec.j.exitCode).toBe(1);
      const first = e.kind ? rec.j.violations.find((v) => v.kind === e.kind) : undefined;
      if (e.kind) expect(first).toBeDefined();
      else expect(rec.j.verification.ok).toBe(false);
      const rep = await runJson(['replay', file], {}, 180_000);
      expect(rep.r.stderr).toMatch(/replay: followed all \d+ decisions; same /);
      expect(rep.j.exitCode).toBe(1);
      expect(schedOf(rep.j).finalHash).toBe(schedOf(rec.j).finalHash);
      if (e.kind) expect(rep.j.violations.map((v) => v.text)).toEqual(rec.j.violations.map((v) => v.text));
      else expect(rep.j.verification.summary).toBe(rec.j.verification.summary);
    }, 400_000);
  }

  it('the fixed kernel shows no violation under controlled schedules', async () => {
    for (const sched of ['random', 'pct:3']) {
      const { j } = await runJson(
        [
          'run',
          'mremap-stress',
          '--cpus',
          '2',
          '--pcache',
          '128K',
          '--ways',
          '2',
          '--check',
          'syscall',
          '--sched',
          sched,
        ],
        {},
        180_000,
      );
      expect(j.violationCount).toBe(0);
      expect(j.exitCode).toBe(0);
    }
  }, 400_000);
});

describe('bad input', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--sched', 'random', '--jitter', '0.1'], /--jitter has no meaning under --sched random/],
    [['--sched', 'random', '--check', 'periodic'], /--check periodic runs on the host's clock/],
    [['--record', 'x.sched'], /--record needs a controlled schedule/],
    [['--sched', 'lottery'], /is not a mode/],
    [['--sched', 'replay:/nonexistent.sched'], /cannot read the schedule/],
  ];
  for (const [args, msg] of cases)
    it(`${args.join(' ')}: exit 2, one line`, async () => {
      const r = await runCli(['run', 'pthread-stress', ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    });
  it('a replay recorded for another machine is refused with the fix', async () => {
    const file = path.join(tmp, 'cpus.sched');
    const tiny = ['run', 'pthread-stress', '--threads', '2', '--iterations', '5', '--items', '4'];
    expect((await runCli([...tiny, '--sched', 'random', '--record', file])).code).toBe(0);
    const r = await runCli([...tiny, '--cpus', '3', '--sched', `replay:${file}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/was recorded with cpus 2, this run has 3: replay it with `splitkern replay/);
  }, 60_000);
});
