// The programs and their inputs on a fake machine: the generators' determinism and shape, word_count and
// dpkg-status against their oracles (src/host/oracle.ts), and the oracles themselves.
import { describe, expect, it } from 'vitest';
import {
  compareBytes,
  compareWordCounts,
  countWords,
  packageNameAt,
  sortCounts,
  splitDpkgRecords,
} from '../src/host/oracle.ts';
import { genDpkgStatus, genZipfText, mulberry32, Rng } from '../src/user/gen.ts';
import { dpkgStatus } from '../src/user/programs/dpkg_status.ts';
import { wordCount } from '../src/user/programs/word_count.ts';
import { makeFakeMachine, makeFakeUser, type FakeMachine } from './helpers/fake-user.ts';

interface WcReport {
  kind: string;
  words: Array<[string, number]>;
  totalWords: number;
  uniqueWords: number;
  scanned: number;
}
interface DpkgReport {
  kind: string;
  records: number;
  bytes: number;
  recordOffsets: number[];
}

const runWordCount = (text: Uint8Array, args: string[]): { m: FakeMachine; rc: number; rep: WcReport } => {
  const m = makeFakeMachine({ '/data/in.txt': text });
  const argv = ['/data/in.txt', ...args];
  const u = makeFakeUser(m, wordCount, 1, argv);
  const rc = wordCount.main(u, argv);
  return { m, rc, rep: m.reports[0] as WcReport };
};

const runDpkg = (status: Uint8Array): { m: FakeMachine; rc: number; rep: DpkgReport; out: Buffer } => {
  const m = makeFakeMachine({ '/var/lib/dpkg/status': status });
  const argv = ['/var/lib/dpkg/status', '/var/lib/dpkg/status-new'];
  const u = makeFakeUser(m, dpkgStatus, 1, argv);
  const rc = dpkgStatus.main(u, argv);
  return { m, rc, rep: m.reports[0] as DpkgReport, out: Buffer.from(m.files.get(argv[1]!) ?? new Uint8Array()) };
};

describe('generators', () => {
  it('mulberry32 and Rng are deterministic', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    for (let i = 0; i < 100; i++) expect(a()).toBe(b());
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const x = r.int(10);
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(10);
    }
  });

  it('genZipfText: same seed, same bytes; exact size; Zipf-like; fast', () => {
    expect(genZipfText(3, 100_000).equals(genZipfText(3, 100_000))).toBe(true);
    expect(genZipfText(3, 100_000).equals(genZipfText(4, 100_000))).toBe(false);
    expect(genZipfText(1, 0).length).toBe(0);
    expect(genZipfText(1, 1).length).toBe(1);
    const t0 = Date.now();
    const big = genZipfText(1, 10_000_000);
    const ms = Date.now() - t0;
    expect(big.length).toBe(10_000_000);
    expect(ms).toBeLessThan(3000); // typically ~0.4 s; generous for loaded CI machines
    const top = sortCounts(countWords(big.subarray(0, 2_000_000)));
    expect(top[0]![0]).toBe('THE');
    // s ~ 1: rank 1 about twice rank 2
    expect(top[0]![1] / top[1]![1]).toBeGreaterThan(1.6);
    expect(top[0]![1] / top[1]![1]).toBeLessThan(2.5);
    const s = big.subarray(0, 1_000_000).toString('latin1');
    expect(s).toMatch(/\b[A-Z][a-z]+/); // capitals
    expect(s).toMatch(/[a-z]'[a-z]/); // contractions
    expect(s).toMatch(/\n/);
  });

  it('genDpkgStatus: deterministic, realistic, with one very large record', () => {
    const a = genDpkgStatus(5, 100);
    expect(a.equals(genDpkgStatus(5, 100))).toBe(true);
    const text = a.toString('utf8');
    for (const f of [
      'Package:',
      'Status:',
      'Priority:',
      'Section:',
      'Installed-Size:',
      'Maintainer:',
      'Architecture:',
      'Version:',
      'Depends:',
      'Description:',
      'Conffiles:',
    ]) {
      expect(text).toContain(`\n${f}`);
    }
    expect(text).toMatch(/\n \.\n/); // description paragraph separator
    const offs = splitDpkgRecords(a);
    expect(offs.length).toBe(100);
    const sizes = offs.map((o, i) => (offs[i + 1] ?? a.length) - o);
    expect(Math.max(...sizes)).toBeGreaterThan(128 * 1024);
    expect(packageNameAt(a, offs[1]!, offs[2]!)).toMatch(/^[a-z0-9.+-]+$/);
  });
});

describe('word_count', () => {
  it('handles the tokenisation edge cases like the oracle', () => {
    const text = Buffer.from(
      "'Tis the dogs' don't DON'T Don't -- abc123def x café naïve über O'Neil's... rock'n'roll\n\tthe\r\nend''",
      'utf8',
    );
    const exp = countWords(text);
    expect(exp.get('TIS')).toBe(1);
    expect(exp.get("DOGS'")).toBe(1);
    expect(exp.get("DON'T")).toBe(3);
    expect(exp.get('ABC')).toBe(1);
    expect(exp.get('DEF')).toBe(1);
    expect(exp.get('CAF')).toBe(1);
    expect(exp.get('VE')).toBe(1);
    expect(exp.get("END''")).toBe(1);
    expect(exp.get("ROCK'N'ROLL")).toBe(1);
    for (const t of [1, 2, 5]) {
      const { rc, rep } = runWordCount(text, ['--threads', String(t)]);
      expect(rc).toBe(0);
      expect(compareWordCounts(sortCounts(exp), rep.words)).toEqual({ ok: true });
      expect(rep.totalWords).toBe([...exp.values()].reduce((x, y) => x + y, 0));
      expect(rep.scanned).toBe(rep.totalWords);
    }
  });

  it('matches the oracle on generated text with 3 threads, and prints like Phoenix', () => {
    const text = genZipfText(11, 400_000);
    const { m, rc, rep } = runWordCount(text, ['--threads', '3', '--top', '5']);
    expect(rc).toBe(0);
    const exp = sortCounts(countWords(text));
    expect(compareWordCounts(exp, rep.words)).toEqual({ ok: true });
    expect(rep.words).toEqual(exp);
    expect(rep.uniqueWords).toBe(exp.length);
    const out = m.stdout.join('');
    const lines = out.split('\n');
    expect(lines[0]).toBe('Wordcount: Running...');
    expect(lines[1]).toBe(`Wordcount: Results (TOP 5 of ${exp.length}):`);
    for (let i = 0; i < 5; i++) expect(lines[2 + i]).toBe(`${exp[i]![0].padStart(15)} - ${exp[i]![1]}`);
  });

  it('grows its tables with realloc until they are mmapped and mremapped', () => {
    const text = genZipfText(12, 2_500_000);
    const { m, rc, rep } = runWordCount(text, ['--threads', '2', '--top=3']);
    expect(rc).toBe(0);
    expect(compareWordCounts(sortCounts(countWords(text)), rep.words)).toEqual({ ok: true });
    expect(rep.uniqueWords).toBeGreaterThan(16_000);
    expect(m.mremapCalls).toBeGreaterThan(0);
  });

  it('copes with an empty file, more threads than words, and bad arguments', () => {
    const empty = runWordCount(new Uint8Array(0), []);
    expect(empty.rc).toBe(0);
    expect(empty.rep.words).toEqual([]);
    const tiny = runWordCount(Buffer.from('b a b'), ['--threads', '8']);
    expect(tiny.rep.words).toEqual([
      ['B', 2],
      ['A', 1],
    ]);
    const bad = runWordCount(Buffer.from('x'), ['--threads', 'zero']);
    expect(bad.rc).toBe(2);
    const m = makeFakeMachine();
    const u = makeFakeUser(m, wordCount, 1, ['/missing']);
    expect(wordCount.main(u, ['/missing'])).toBe(1);
  });
});

describe('dpkg-status', () => {
  it('rewrites a generated status file byte for byte, through mremapped record buffers', () => {
    const status = genDpkgStatus(21, 300);
    const { m, rc, rep, out } = runDpkg(status);
    expect(rc).toBe(0);
    expect(compareBytes(status, out, rep.recordOffsets)).toEqual({ ok: true });
    expect(rep.kind).toBe('dpkg-status');
    expect(rep.records).toBe(300);
    expect(rep.bytes).toBe(status.length);
    expect(rep.recordOffsets).toEqual(splitDpkgRecords(status));
    expect(m.mremapCalls).toBeGreaterThan(0);
  });

  it('keeps odd formatting exactly: leading blank lines, CRLF, tabs, no final newline', () => {
    const status = Buffer.from(
      '\n\nPackage: a\r\nStatus: install ok installed\n\tcont\n\n\n \nPackage: b\nDescription: x\n .\n y',
      'latin1',
    );
    const { rc, rep, out } = runDpkg(status);
    expect(rc).toBe(0);
    expect(out.equals(status)).toBe(true);
    expect(rep.recordOffsets).toEqual([0, 53]);
    expect(rep.recordOffsets).toEqual(splitDpkgRecords(status));
    const empty = runDpkg(new Uint8Array(0));
    expect(empty.rep.records).toBe(0);
    expect(empty.out.length).toBe(0);
  });
});

describe('oracles', () => {
  it('sortCounts: count desc, ties by bytes asc', () => {
    const m = new Map<string, number>([
      ['B', 2],
      ['A', 2],
      ["A'", 2],
      ['Z', 3],
      ['AB', 1],
    ]);
    expect(sortCounts(m)).toEqual([
      ['Z', 3],
      ['A', 2],
      ["A'", 2],
      ['B', 2],
      ['AB', 1],
    ]);
  });

  it('compareWordCounts names the first difference', () => {
    const exp: Array<[string, number]> = [
      ['THE', 10],
      ['A', 5],
      ['DOG', 2],
    ];
    expect(compareWordCounts(exp, exp)).toEqual({ ok: true });
    expect(
      compareWordCounts(exp, [
        ['THE', 10],
        ['A', 4],
        ['DOG', 2],
      ]).firstDifference,
    ).toBe('word "A": expected count 5, actual 4');
    expect(
      compareWordCounts(exp, [
        ['THE', 10],
        ['A', 5],
      ]).firstDifference,
    ).toBe('missing word "DOG" (expected count 2)');
    expect(compareWordCounts(exp, [...exp, ['CAT', 1]]).firstDifference).toMatch(/^extra word "CAT" \(actual count 1/);
    expect(
      compareWordCounts(exp, [
        ['A', 5],
        ['THE', 10],
        ['DOG', 2],
      ]).firstDifference,
    ).toBe('order differs at index 0: expected "THE" (10), actual "A" (5)');
    expect(
      compareWordCounts(exp, [
        ['THE', 10],
        ['A', 5],
        ['A', 5],
        ['DOG', 2],
      ]).firstDifference,
    ).toMatch(/"A" appears twice/);
    expect(
      compareWordCounts(
        new Map(exp),
        new Map([
          ['THE', 10],
          ['A', 5],
          ['DOG', 3],
        ]),
      ).ok,
    ).toBe(false);
  });

  it('compareBytes finds the offset and names where the wrong bytes came from', () => {
    const status = genDpkgStatus(8, 40);
    const offs = splitDpkgRecords(status);
    expect(compareBytes(status, Buffer.from(status))).toEqual({ ok: true });
    // one entry's bytes appearing in another: copy 100 bytes of record 25 over record 3
    const bad = Buffer.from(status);
    const from = offs[25]! + 40;
    const to = offs[3]! + 50;
    status.copy(bad, to, from, from + 100);
    const r = compareBytes(status, bad, offs);
    expect(r.ok).toBe(false);
    let first = to;
    while (status[first] === bad[first]) first++;
    expect(r.offset).toBe(first);
    expect(r.expectedByte).toBe(status[first]);
    expect(r.actualByte).toBe(bad[first]);
    const name3 = packageNameAt(status, offs[3]!, offs[4]!)!;
    const name25 = packageNameAt(status, offs[25]!, offs[26]!)!;
    expect(r.detail).toContain(`in record 3 (Package: ${name3})`);
    expect(r.detail).toContain(`input bytes of record 25 (Package: ${name25})`);
    // short and long outputs
    const short = compareBytes(status, status.subarray(0, 1000));
    expect(short.offset).toBe(1000);
    expect(short.actualByte).toBeUndefined();
    expect(short.detail).toMatch(/short/);
    const long = compareBytes(status, Buffer.concat([status, Buffer.from('x')]));
    expect(long.offset).toBe(status.length);
    expect(long.detail).toMatch(/long/);
    // bytes that are nowhere in the input
    const junk = Buffer.from(status);
    junk.fill(0xee, 500, 600);
    expect(compareBytes(status, junk).detail).toMatch(/occur nowhere in the input/);
  });
});
