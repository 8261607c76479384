// Tests for src/memory/vm/: the memory component's VMA bookkeeping with Linux semantics.
//
// Errno precedence and placement were measured on the real kernel of the dev machine
// (Linux 6.18, x86-64, vm.mmap_min_addr effective 65536, THP "madvise", shmem THP "never",
// vm.max_map_count 65530, RLIMIT_MEMLOCK 8 MiB), with small C programs calling the raw syscalls
// as an unprivileged user (uid 65534, so no CAP_SYS_RAWIO / CAP_IPC_LOCK):
//   mmap_exp.c   M1..M21   mmap argument checks, hints, top-down placement, THP alignment
//   mmap_exp2/3  S*, F*, G* shared/file/THP placement, file EOVERFLOW, VMA merging
//   mremap_exp.c R1..R34   mremap checks and moves;  misc_exp.c / misc2_exp.c  R9*, V*, D*, H*, X*
//   brk_exp.c    B1..B9    brk;  mprot_exp.c P*, U*, A*  mprotect, munmap, fault si_code / stack growth
//   count_exp.c            vm.max_map_count boundaries for mmap/munmap/mprotect/mremap/brk
// Each expectation below that encodes a measured result names its experiment, e.g. "[R6]".

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  EACCES,
  EAGAIN,
  EEXIST,
  EFAULT,
  EINVAL,
  ENOMEM,
  EOVERFLOW,
  EPERM,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MREMAP_DONTUNMAP,
  MREMAP_FIXED,
  MREMAP_MAYMOVE,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
} from '../src/uapi/abi.ts';
import {
  EOPNOTSUPP,
  INITIAL_STACK_SIZE,
  LegoMm,
  MAP_32BIT,
  MAP_DROPPABLE,
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_SEM,
  STACK_GUARD_GAP,
  VM_ANON,
  VM_GROWSDOWN,
  VM_LOCKED,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  type MmHooks,
  type VmaFile,
} from '../src/memory/vm/mm.ts';

const P = PAGE_SIZE;
const MiB = 1024 * 1024;
const RW = PROT_READ | PROT_WRITE;
const PA = MAP_PRIVATE | MAP_ANONYMOUS;
const MMAP_BASE = 0x7ffff7fff000;
const STACK_TOP = 0x7ffffffff000;
const BRK_START = 0x555555559000;
/** Free address space well away from everything, for MAP_FIXED experiments. */
const FREE = 0x600000000;

type Call = ['move', number, number, number] | ['zap', number, number];

function setup(extra: Partial<ConstructorParameters<typeof LegoMm>[0]> = {}): { mm: LegoMm; calls: Call[] } {
  const calls: Call[] = [];
  const hooks: MmHooks = {
    movePages: (o, n, l) => calls.push(['move', o, n, l]),
    zapPages: (s, l) => calls.push(['zap', s, l]),
  };
  const mm = new LegoMm({ mmapBase: MMAP_BASE, brkStart: BRK_START, stackTop: STACK_TOP, hooks, ...extra });
  return { mm, calls };
}

/** [start, end, prot] of the VMAs intersecting [lo, hi). */
function layout(mm: LegoMm, lo: number, hi: number): Array<[number, number, number]> {
  return mm.vmas.filter((v) => v.end > lo && v.start < hi).map((v) => [v.start, v.end, v.prot]);
}

function fixed(mm: LegoMm, addr: number, pages: number, prot = RW, flags = PA): number {
  const r = mm.mmap(addr, pages * P, prot, flags | MAP_FIXED, null, 0);
  expect(r).toBe(addr);
  return r;
}

const FILE: VmaFile = { path: '/data/file.bin', size: 64 * P };

// =============================================================================================
describe('address-space layout and kernel-chosen addresses', () => {
  it('creates a 132 KiB VM_GROWSDOWN read-write anonymous stack VMA just below stackTop', () => {
    const { mm } = setup();
    expect(mm.vmas).toHaveLength(1);
    const s = mm.vmas[0]!;
    expect([s.start, s.end]).toEqual([STACK_TOP - INITIAL_STACK_SIZE, STACK_TOP]);
    expect(INITIAL_STACK_SIZE).toBe(0x21000);
    expect(s.prot).toBe(RW);
    expect(s.flags & (VM_GROWSDOWN | VM_ANON | VM_READ | VM_WRITE)).toBe(VM_GROWSDOWN | VM_ANON | VM_READ | VM_WRITE);
    expect(s.file).toBeUndefined();
    expect(mm.brk).toBe(BRK_START);
  });

  it('places mappings top-down directly below mmapBase, each below the previous one', () => {
    const { mm } = setup();
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(MMAP_BASE - P);
    expect(mm.mmap(0, 2 * P, PROT_READ, PA, null, 0)).toBe(MMAP_BASE - 3 * P);
    expect(mm.mmap(0, 3 * P, RW, PA, null, 0)).toBe(MMAP_BASE - 6 * P);
    // results look like Linux's (e.g. 0x7fffe5788000 when mmapBase is 0x7fffe5800000 + a few pages)
    const { mm: mm2 } = setup({ mmapBase: 0x7fffe5789000 });
    expect(mm2.mmap(0, P, RW, PA, null, 0)).toBe(0x7fffe5788000);
  });

  it('reuses a freed hole: the highest gap that fits, filled from its top [M15]', () => {
    const { mm } = setup();
    const a1 = mm.mmap(0, P, RW, PA, null, 0);
    const a2 = mm.mmap(0, 2 * P, PROT_READ, PA, null, 0);
    const x = mm.mmap(0, 3 * P, PROT_EXEC, PA, null, 0);
    const a4 = mm.mmap(0, P, PROT_READ, PA, null, 0);
    expect([a1, a2, x, a4]).toEqual([MMAP_BASE - P, MMAP_BASE - 3 * P, MMAP_BASE - 6 * P, MMAP_BASE - 7 * P]);
    expect(mm.munmap(x, 3 * P)).toBe(0);
    // M15: 3P hole at fac3000: a 2P request took fac4000 (top of the hole), then 1P took fac3000
    expect(mm.mmap(0, 2 * P, PROT_NONE, PA, null, 0)).toBe(x + P);
    expect(mm.mmap(0, P, PROT_NONE, PA, null, 0)).toBe(x);
    // hole full: the next one goes below everything
    expect(mm.mmap(0, 2 * P, PROT_NONE, PA, null, 0)).toBe(a4 - 2 * P);
  });

  it('honours a free hint rounded down to a page, ignores occupied ones, raises low hints to mmap_min_addr [M14]', () => {
    const { mm } = setup();
    const a = fixed(mm, 0x200000000, 4);
    expect(mm.mmap(0x300000000, P, RW, PA, null, 0)).toBe(0x300000000); // M14
    expect(mm.mmap(a, P, RW, PA, null, 0)).toBe(MMAP_BASE - P); // M14b: occupied -> top-down
    expect(mm.mmap(0x300100123, P, RW, PA, null, 0)).toBe(0x300100000); // M14c
    expect(mm.mmap(0x1000, P, RW, PA, null, 0)).toBe(0x10000); // M14d: round_hint_to_min
    expect(mm.mmap(a - P, 2 * P, RW, PA, null, 0)).toBe(MMAP_BASE - 3 * P); // M14e: partial overlap
    expect(mm.mmap(TASK_SIZE, P, RW, PA, null, 0)).toBe(MMAP_BASE - 4 * P); // M21: hint beyond TASK_SIZE - len
  });

  it('2 MiB-aligns anonymous private mappings whose length is a multiple of 2 MiB (THP) [M16]', () => {
    const { mm } = setup();
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(0x7ffff7ffe000); // misalign the top
    // M16: highest 2 MiB-aligned slot, leaving the unaligned remainder as a hole above it
    expect(mm.mmap(0, 2 * MiB, RW, PA, null, 0)).toBe(0x7ffff7c00000);
    expect(mm.mmap(0, 4 * MiB, RW, PA, null, 0)).toBe(0x7ffff7800000); // M16b
    expect(mm.mmap(0, 2 * MiB + P, RW, PA, null, 0)).toBe(0x7ffff75ff000); // M16c: not a multiple: unaligned
    expect(mm.mmap(0, 2 * MiB, RW, PA | MAP_STACK, null, 0)).toBe(0x7ffff7200000); // M16d: MAP_STACK too
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(0x7ffff7ffd000); // M16h: the hole above is reused
  });

  it('does not THP-align shared anonymous or hinted anonymous mappings [S1, S4]', () => {
    const { mm } = setup();
    mm.mmap(0, P, RW, PA, null, 0);
    expect(mm.mmap(0, 2 * MiB, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0)).toBe(0x7ffff7ffe000 - 2 * MiB); // S1
    const b = mm.mmap(0, P, RW, PA, null, 0);
    // S4: a (taken) hint disables the THP path, the mapping lands unaligned right below
    expect(mm.mmap(b, 2 * MiB, RW, PA, null, 0)).toBe(b - 2 * MiB);
  });

  it('2 MiB-aligns file mappings that cover an aligned 2 MiB file extent [S2, S2c]', () => {
    const { mm } = setup();
    mm.mmap(0, P, RW, PA, null, 0);
    expect(mm.mmap(0, 2 * MiB, PROT_READ, MAP_PRIVATE, FILE, 0)).toBe(0x7ffff7c00000); // S2
    expect(mm.mmap(0, 4 * P, PROT_READ, MAP_PRIVATE, FILE, 3 * P)).toBe(0x7ffff7ffe000 - 4 * P); // S2c
  });

  it('keeps stack_guard_gap (1 MiB) free below a VM_GROWSDOWN mapping when choosing addresses', () => {
    const { mm } = setup({ mmapBase: STACK_TOP - INITIAL_STACK_SIZE });
    const stackStart = STACK_TOP - INITIAL_STACK_SIZE;
    expect(STACK_GUARD_GAP).toBe(MiB);
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(stackStart - MiB - P);
    // a hint inside the guard gap is not honoured
    expect(mm.mmap(stackStart - 2 * P, P, RW, PA, null, 0)).toBe(stackStart - MiB - 2 * P);
    // MAP_FIXED ignores the gap
    expect(mm.mmap(stackStart - P, P, RW, PA | MAP_FIXED, null, 0)).toBe(stackStart - P);
  });

  it('falls back to a bottom-up search from mmap_legacy_base when nothing fits below mmapBase', () => {
    const { mm } = setup({ mmapBase: 0x20000 });
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(0x1f000);
    expect(mm.mmap(0, 0xf000, PROT_READ, PA, null, 0)).toBe(0x10000); // fills [mmap_min_addr, mmapBase)
    const legacy = Math.ceil(Math.floor(TASK_SIZE / 3) / P) * P; // TASK_UNMAPPED_BASE
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(legacy);
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(legacy + P);
  });

  it('MAP_32BIT allocates bottom-up inside [1 GiB, 2 GiB) and fails with -ENOMEM when that is full [X1, low_exp]', () => {
    const { mm } = setup();
    expect(mm.mmap(0, P, RW, PA | MAP_32BIT, null, 0)).toBe(0x40000000);
    expect(mm.mmap(0, P, RW, PA | MAP_32BIT, null, 0)).toBe(0x40001000);
    fixed(mm, 0x40000000, 0x40000, PROT_NONE);
    expect(mm.mmap(0, P, RW, PA | MAP_32BIT, null, 0)).toBe(-ENOMEM);
    expect(mm.mmap(0x30000000, P, RW, PA | MAP_32BIT, null, 0)).toBe(0x30000000); // free hint honoured
  });

  it('lets MAP_FIXED use the whole 47-bit range up to TASK_SIZE [M7d]', () => {
    const { mm } = setup({ stackTop: 0x7ff000000000 });
    expect(mm.mmap(TASK_SIZE - P, P, RW, PA | MAP_FIXED, null, 0)).toBe(0x7fffffffe000);
    expect(mm.mmap(0x10000, P, RW, PA | MAP_FIXED, null, 0)).toBe(0x10000);
    expect(mm.findVma(TASK_SIZE - 1)?.start).toBe(TASK_SIZE - P);
  });
});

// =============================================================================================
describe('mmap argument checks in Linux order', () => {
  const bad = 0; // MAP_TYPE 0: invalid
  const cases: Array<[string, (mm: LegoMm) => number, number]> = [
    ['[M1] unaligned offset', (mm) => mm.mmap(0, P, RW, PA, null, 1), -EINVAL],
    ['[M2] unaligned offset beats len 0', (mm) => mm.mmap(0, 0, RW, PA, null, 1), -EINVAL],
    ['[M3] len 0 beats a bad MAP_TYPE', (mm) => mm.mmap(0, 0, RW, MAP_ANONYMOUS | bad, null, 0), -EINVAL],
    ['[M4] PAGE_ALIGN(len) overflow beats a bad MAP_TYPE', (mm) => mm.mmap(0, -1, RW, MAP_ANONYMOUS, null, 0), -ENOMEM],
    ['[M4c] len > TASK_SIZE', (mm) => mm.mmap(0, -4096, RW, PA, null, 0), -ENOMEM],
    ['[M20] non-fixed len = TASK_SIZE', (mm) => mm.mmap(0, TASK_SIZE, RW, PA, null, 0), -ENOMEM],
    [
      '[M5] anonymous mappings ignore a huge offset',
      (mm) => mm.mmap(0, 2 * P, RW, PA, null, 0xfffffffffffff000),
      MMAP_BASE - 2 * P,
    ],
    [
      '[M6b] MAP_FIXED below mmap_min_addr: -EPERM beats a bad MAP_TYPE',
      (mm) => mm.mmap(0, P, RW, MAP_ANONYMOUS | MAP_FIXED, null, 0),
      -EPERM,
    ],
    [
      '[M7b] MAP_FIXED at TASK_SIZE: -ENOMEM beats a bad MAP_TYPE',
      (mm) => mm.mmap(TASK_SIZE, P, RW, MAP_ANONYMOUS | MAP_FIXED, null, 0),
      -ENOMEM,
    ],
    [
      '[M7c] MAP_FIXED ending past TASK_SIZE',
      (mm) => mm.mmap(TASK_SIZE - P, 2 * P, RW, PA | MAP_FIXED, null, 0),
      -ENOMEM,
    ],
    ['[M7e] MAP_FIXED len > TASK_SIZE', (mm) => mm.mmap(0x100000, TASK_SIZE + P, RW, PA | MAP_FIXED, null, 0), -ENOMEM],
    ['[M8] MAP_FIXED unaligned address', (mm) => mm.mmap(0x10000001, P, RW, PA | MAP_FIXED, null, 0), -EINVAL],
    ['[M8b] MAP_FIXED unaligned: -EINVAL beats -EPERM', (mm) => mm.mmap(1, P, RW, PA | MAP_FIXED, null, 0), -EINVAL],
    [
      '[M8c] MAP_FIXED unaligned beyond TASK_SIZE: -ENOMEM beats -EINVAL',
      (mm) => mm.mmap(TASK_SIZE + 1, P, RW, PA | MAP_FIXED, null, 0),
      -ENOMEM,
    ],
    [
      '[M8d] MAP_FIXED unaligned beats a bad MAP_TYPE',
      (mm) => mm.mmap(0x10000001, P, RW, MAP_ANONYMOUS | MAP_FIXED, null, 0),
      -EINVAL,
    ],
    ['[M9e] MAP_FIXED_NOREPLACE at 0', (mm) => mm.mmap(0, P, RW, PA | MAP_FIXED_NOREPLACE, null, 0), -EPERM],
    [
      '[M12] MAP_SHARED_VALIDATE is not an anonymous type',
      (mm) => mm.mmap(0, P, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, null, 0),
      -EINVAL,
    ],
    [
      '[M12c] unknown flag bits are ignored for MAP_PRIVATE',
      (mm) => mm.mmap(0, P, RW, PA | 0x200000, null, 0),
      MMAP_BASE - P,
    ],
    [
      '[M13] MAP_DROPPABLE anonymous is accepted',
      (mm) => mm.mmap(0, P, RW, MAP_DROPPABLE | MAP_ANONYMOUS, null, 0),
      MMAP_BASE - P,
    ],
    ['[M13b] MAP_TYPE 0x04', (mm) => mm.mmap(0, P, RW, 0x04 | MAP_ANONYMOUS, null, 0), -EINVAL],
    ['[M13c] MAP_TYPE 0x0f', (mm) => mm.mmap(0, P, RW, 0x0f | MAP_ANONYMOUS, null, 0), -EINVAL],
    ['[M13d] MAP_TYPE 0', (mm) => mm.mmap(0, P, RW, MAP_ANONYMOUS, null, 0), -EINVAL],
    ['[M22] MAP_TYPE 0x09', (mm) => mm.mmap(0, P, RW, 0x09 | MAP_ANONYMOUS, null, 0), -EINVAL],
    [
      '[D1] MAP_DROPPABLE | MAP_LOCKED',
      (mm) => mm.mmap(0, P, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_LOCKED, null, 0),
      -EINVAL,
    ],
    [
      '[D2] MAP_DROPPABLE | MAP_GROWSDOWN',
      (mm) => mm.mmap(0, P, RW, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_GROWSDOWN, null, 0),
      -EINVAL,
    ],
    [
      '[D3] MAP_PRIVATE | MAP_GROWSDOWN anonymous is fine',
      (mm) => mm.mmap(0, P, RW, PA | MAP_GROWSDOWN, null, 0),
      MMAP_BASE - P,
    ],
    [
      '[M18] MAP_SHARED | MAP_GROWSDOWN anonymous',
      (mm) => mm.mmap(0, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN, null, 0),
      -EINVAL,
    ],
    [
      '[M18b] ... but -EPERM from the address comes first',
      (mm) => mm.mmap(0, P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, null, 0),
      -EPERM,
    ],
    ['[H1] MAP_HUGETLB: no huge page pool', (mm) => mm.mmap(0, 2 * MiB, RW, PA | MAP_HUGETLB, null, 0), -ENOMEM],
    ['[H2] MAP_HUGETLB len 0', (mm) => mm.mmap(0, 0, RW, PA | MAP_HUGETLB, null, 0), -EINVAL],
    ['[H3] MAP_HUGETLB MAP_FIXED at 0', (mm) => mm.mmap(0, 2 * MiB, RW, PA | MAP_HUGETLB | MAP_FIXED, null, 0), -EPERM],
    ['[M23] MAP_LOCKED beyond RLIMIT_MEMLOCK', (mm) => mm.mmap(0, 16 * MiB, RW, PA | MAP_LOCKED, null, 0), -EAGAIN],
    [
      '[M23b] ... -EAGAIN beats a bad MAP_TYPE',
      (mm) => mm.mmap(0, 16 * MiB, RW, MAP_ANONYMOUS | MAP_LOCKED, null, 0),
      -EAGAIN,
    ],
    ['[X3] unknown prot bits are ignored by mmap', (mm) => mm.mmap(0, P, PROT_READ | 0x10, PA, null, 0), MMAP_BASE - P],
    ['[F1] file + MAP_DROPPABLE', (mm) => mm.mmap(0, P, RW, MAP_DROPPABLE, FILE, 0), -EINVAL],
    ['[F2] file + MAP_TYPE 0', (mm) => mm.mmap(0, P, RW, 0, FILE, 0), -EINVAL],
    ['[F3] file offset + len > 2^63 - 1', (mm) => mm.mmap(0, P, PROT_READ, MAP_PRIVATE, FILE, 2 ** 63 - P), -EOVERFLOW],
    [
      '[F3b] file offset + len = 2^63 - P is fine',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_PRIVATE, FILE, 2 ** 63 - 2 * P),
      MMAP_BASE - P,
    ],
    ['[F4] file -EOVERFLOW beats a bad MAP_TYPE', (mm) => mm.mmap(0, P, PROT_READ, 0, FILE, 2 ** 63), -EOVERFLOW],
    [
      '[F6] file -EPERM beats -EOVERFLOW',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_PRIVATE | MAP_FIXED, FILE, 2 ** 63),
      -EPERM,
    ],
    [
      '[V1] file MAP_SHARED_VALIDATE with an unknown flag',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_SHARED_VALIDATE | 0x200000, FILE, 0),
      -EOPNOTSUPP,
    ],
    [
      '[V2] file MAP_SHARED_VALIDATE rejects MAP_FIXED_NOREPLACE',
      (mm) => mm.mmap(0x700000000, P, PROT_READ, MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE, FILE, 0),
      -EOPNOTSUPP,
    ],
    [
      '[V5] file -EOVERFLOW beats -EOPNOTSUPP',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_SHARED_VALIDATE | 0x200000, FILE, 2 ** 63),
      -EOVERFLOW,
    ],
    [
      '[V6] file -EOPNOTSUPP beats MAP_GROWSDOWN -EINVAL',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_SHARED_VALIDATE | 0x200000 | MAP_GROWSDOWN, FILE, 0),
      -EOPNOTSUPP,
    ],
    [
      '[F7] file MAP_SHARED ignores unknown flags',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_SHARED | 0x200000, FILE, 0),
      MMAP_BASE - P,
    ],
    [
      '[V7] file MAP_SHARED | MAP_GROWSDOWN',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_SHARED | MAP_GROWSDOWN, FILE, 0),
      -EINVAL,
    ],
    [
      '[F9] file MAP_PRIVATE | MAP_GROWSDOWN',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_PRIVATE | MAP_GROWSDOWN, FILE, 0),
      -EINVAL,
    ],
    [
      '[V8] file MAP_HUGETLB (not hugetlbfs)',
      (mm) => mm.mmap(0, P, PROT_READ, MAP_PRIVATE | MAP_HUGETLB, FILE, 0),
      -EINVAL,
    ],
    [
      '[V9] writable MAP_SHARED of a read-only file',
      (mm) => mm.mmap(0, P, RW, MAP_SHARED, { path: '/ro', size: P, readOnly: true }, 0),
      -EACCES,
    ],
    [
      '[F8] a file mapping may extend past EOF',
      (mm) => mm.mmap(0, 128 * P, PROT_READ, MAP_PRIVATE, FILE, 0),
      MMAP_BASE - 128 * P,
    ],
  ];
  for (const [name, run, want] of cases) {
    it(`${name} -> ${want < 0 ? -want : 'ok'}`, () => {
      const { mm } = setup();
      expect(run(mm)).toBe(want);
    });
  }

  it('MAP_FIXED_NOREPLACE over a mapping is -EEXIST, which beats a bad MAP_TYPE [M9..M9g]', () => {
    const { mm } = setup();
    const a = fixed(mm, 0x200000000, 4);
    expect(mm.mmap(a, P, RW, PA | MAP_FIXED_NOREPLACE, null, 0)).toBe(-EEXIST); // M9
    expect(mm.mmap(a, P, RW, MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, null, 0)).toBe(-EEXIST); // M9b
    expect(mm.mmap(a - P, 2 * P, RW, PA | MAP_FIXED_NOREPLACE, null, 0)).toBe(-EEXIST); // M9c
    expect(mm.mmap(a + 1, P, RW, PA | MAP_FIXED_NOREPLACE, null, 0)).toBe(-EINVAL); // M9d
    expect(mm.mmap(a, P, RW, PA | MAP_FIXED | MAP_FIXED_NOREPLACE, null, 0)).toBe(-EEXIST); // M9g
    expect(mm.mmap(a + 16 * P, P, RW, PA | MAP_FIXED_NOREPLACE, null, 0)).toBe(a + 16 * P); // M9f
    // F5: before -EOVERFLOW
    expect(mm.mmap(a, P, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, FILE, 2 ** 63)).toBe(-EEXIST);
    expect(layout(mm, a, a + 4 * P)).toEqual([[a, a + 4 * P, RW]]);
  });

  it('accepts MAP_POPULATE and MAP_SHARED anonymous mappings', () => {
    const { mm } = setup();
    expect(mm.mmap(FREE, P, RW, PA | MAP_FIXED | MAP_POPULATE, null, 0)).toBe(FREE);
    const s = mm.mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0);
    expect(s).toBe(MMAP_BASE - 2 * P);
    const v = mm.findVma(s)!;
    expect(v.flags & VM_SHARED).toBe(VM_SHARED);
    expect(v.shmemId).toBeDefined();
    expect(v.pgoff).toBe(0);
  });

  it('enforces vm.max_map_count = 65530: mmap works until map_count reaches 65531 [count_exp]', () => {
    const { mm } = setup();
    // count_exp: 65508 single-page mappings on top of 23 existing ones -> map_count 65531, then -ENOMEM
    let i = 0;
    for (; mm.mapCount <= 65530; i++) {
      expect(
        mm.mmap(0x100000000 + 2 * i * P, P, i % 2 ? PROT_READ : PROT_NONE, PA | MAP_FIXED_NOREPLACE, null, 0),
      ).toBeGreaterThan(0);
    }
    expect(mm.mapCount).toBe(65531);
    expect(mm.mmap(0x100000000 + 2 * i * P, P, PROT_READ, PA | MAP_FIXED_NOREPLACE, null, 0)).toBe(-ENOMEM);
    // at 65530 a fresh 3-page mapping is still allowed ...
    expect(mm.munmap(0x100000000, P)).toBe(0);
    const r = mm.mmap(0x200000000, 3 * P, PROT_READ, PA | MAP_FIXED, null, 0);
    expect(r).toBe(0x200000000);
    // ... but at 65531 nothing can split it: munmap/mprotect of its middle/head fail, shrinking works
    expect(mm.munmap(r + P, P)).toBe(-ENOMEM);
    expect(mm.mprotect(r + P, P, RW)).toBe(-ENOMEM);
    expect(mm.mprotect(r, P, RW)).toBe(-ENOMEM);
    expect(mm.mmap(r + P, P, RW, PA | MAP_FIXED, null, 0)).toBe(-ENOMEM);
    expect(mm.mremap(r, 3 * P, P, 0, 0)).toBe(r);
    expect(mm.mremap(r, P, P, 0, 0)).toBe(r); // no-op allowed at the limit
  });
});

// =============================================================================================
describe('MAP_FIXED replacement and VMA merging', () => {
  it('MAP_FIXED over the middle of a mapping splits it and zaps only the replaced pages', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 8);
    calls.length = 0;
    expect(mm.mmap(a + 2 * P, 3 * P, PROT_READ, PA | MAP_FIXED, null, 0)).toBe(a + 2 * P);
    expect(calls).toEqual([['zap', a + 2 * P, 3 * P]]);
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + 2 * P, RW],
      [a + 2 * P, a + 5 * P, PROT_READ],
      [a + 5 * P, a + 8 * P, RW],
    ]);
  });

  it('MAP_FIXED over several mappings zaps each replaced piece and leaves holes alone', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    fixed(mm, a + 3 * P, 2, PROT_READ);
    calls.length = 0;
    expect(mm.mmap(a + P, 3 * P, PROT_EXEC, PA | MAP_FIXED, null, 0)).toBe(a + P);
    expect(calls).toEqual([
      ['zap', a + P, P],
      ['zap', a + 3 * P, P],
    ]);
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + P, RW],
      [a + P, a + 4 * P, PROT_EXEC],
      [a + 4 * P, a + 5 * P, PROT_READ],
    ]);
  });

  it('merges adjacent anonymous private mappings with equal flags [G1, G13, G14]', () => {
    const { mm } = setup();
    fixed(mm, FREE, 1);
    fixed(mm, FREE + P, 1, RW, PA | MAP_POPULATE);
    expect(layout(mm, FREE, FREE + 4 * P)).toEqual([[FREE, FREE + 2 * P, RW]]);
    fixed(mm, FREE + 0x100000, 1, RW, PA | MAP_GROWSDOWN);
    fixed(mm, FREE + 0x101000, 1, RW, PA | MAP_GROWSDOWN);
    expect(layout(mm, FREE + 0x100000, FREE + 0x102000)).toHaveLength(1);
  });

  it('does not merge across MAP_STACK, MAP_NORESERVE, MAP_LOCKED, MAP_DROPPABLE or two shared anonymous objects [G2, G3, G12, G15, G9]', () => {
    const { mm } = setup();
    const variants = [PA | MAP_STACK, PA | MAP_NORESERVE, PA | MAP_LOCKED, MAP_DROPPABLE | MAP_ANONYMOUS];
    variants.forEach((fl, k) => {
      const m = FREE + k * 0x100000;
      fixed(mm, m, 1);
      fixed(mm, m + P, 1, RW, fl);
      expect(layout(mm, m, m + 2 * P)).toHaveLength(2);
    });
    const m = FREE + 0x1000000;
    fixed(mm, m, 1, RW, MAP_SHARED | MAP_ANONYMOUS);
    fixed(mm, m + P, 1, RW, MAP_SHARED | MAP_ANONYMOUS);
    expect(layout(mm, m, m + 2 * P)).toHaveLength(2);
  });

  it('merges file mappings only when their file offsets are contiguous [G10, G16]', () => {
    const { mm } = setup();
    expect(mm.mmap(FREE, P, PROT_READ, MAP_PRIVATE | MAP_FIXED, FILE, 0)).toBe(FREE);
    expect(mm.mmap(FREE + P, P, PROT_READ, MAP_PRIVATE | MAP_FIXED, FILE, P)).toBe(FREE + P);
    expect(mm.mmap(FREE + 2 * P, P, PROT_READ, MAP_PRIVATE | MAP_FIXED, FILE, 3 * P)).toBe(FREE + 2 * P);
    expect(layout(mm, FREE, FREE + 3 * P)).toEqual([
      [FREE, FREE + 2 * P, PROT_READ],
      [FREE + 2 * P, FREE + 3 * P, PROT_READ],
    ]);
    expect(mm.findVma(FREE + 2 * P)!.pgoff).toBe(3);
    expect(mm.mmap(FREE + 0x100000, P, PROT_READ, MAP_SHARED | MAP_FIXED, FILE, 0)).toBe(FREE + 0x100000);
    expect(mm.mmap(FREE + 0x101000, P, PROT_READ, MAP_SHARED | MAP_FIXED, FILE, P)).toBe(FREE + 0x101000);
    expect(layout(mm, FREE + 0x100000, FREE + 0x102000)).toHaveLength(1);
  });
});

// =============================================================================================
describe('munmap', () => {
  it('rejects bad arguments with -EINVAL and unmapping nothing is 0 [U1..U8]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 8);
    expect(mm.munmap(a + 1, P)).toBe(-EINVAL); // U1
    expect(mm.munmap(a, 0)).toBe(-EINVAL); // U2
    expect(mm.munmap(TASK_SIZE + P, P)).toBe(-EINVAL); // U3
    expect(mm.munmap(TASK_SIZE, P)).toBe(-EINVAL); // U3b: len > TASK_SIZE - addr
    expect(mm.munmap(TASK_SIZE - P, 2 * P)).toBe(-EINVAL); // U4
    expect(mm.munmap(a, -1)).toBe(-EINVAL); // U6
    expect(mm.munmap(0x10000000, P)).toBe(0); // U5
    expect(mm.munmap(0, P)).toBe(0); // U7
    expect(calls).toEqual([]);
    expect(mm.munmap(a + 7 * P, 1)).toBe(0); // U8: length rounds up to a page
    expect(layout(mm, a, a + 8 * P)).toEqual([[a, a + 7 * P, RW]]);
  });

  it('splits a VMA when unmapping its middle and zaps only that piece', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 8);
    calls.length = 0;
    expect(mm.munmap(a + 3 * P, 2 * P)).toBe(0);
    expect(calls).toEqual([['zap', a + 3 * P, 2 * P]]);
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + 3 * P, RW],
      [a + 5 * P, a + 8 * P, RW],
    ]);
    expect(mm.findVma(a + 5 * P)!.pgoff).toBe(a / P + 5);
  });

  it('unmaps across several VMAs and holes, zapping each removed piece', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 3);
    fixed(mm, a + 4 * P, 3, PROT_READ);
    calls.length = 0;
    expect(mm.munmap(a + 2 * P, 4 * P)).toBe(0);
    expect(calls).toEqual([
      ['zap', a + 2 * P, P],
      ['zap', a + 4 * P, 2 * P],
    ]);
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + 2 * P, RW],
      [a + 6 * P, a + 7 * P, PROT_READ],
    ]);
  });

  it('refuses to split a VMA in three once map_count reaches max_map_count, but trims ends [count_exp]', () => {
    const { mm } = setup({ maxMapCount: 3 });
    const a = fixed(mm, FREE, 4);
    fixed(mm, a + 8 * P, 1, PROT_READ);
    expect(mm.mapCount).toBe(3);
    expect(mm.munmap(a + P, P)).toBe(-ENOMEM);
    expect(mm.munmap(a, P)).toBe(0);
    expect(mm.munmap(a + 3 * P, P)).toBe(0);
    expect(layout(mm, a, a + 4 * P)).toEqual([[a + P, a + 3 * P, RW]]);
  });
});

// =============================================================================================
describe('mremap errno precedence (sys_mremap of Linux 6.18)', () => {
  const M = MREMAP_MAYMOVE;
  const F = MREMAP_FIXED | MREMAP_MAYMOVE;
  const D = MREMAP_DONTUNMAP | MREMAP_MAYMOVE;
  const NOVMA = 0x10000000;

  it('checks flags, alignment and lengths before looking for a VMA [R1..R5, R25, R26b, R34]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 4);
    expect(mm.mremap(a + 1, P, P, 8, 0)).toBe(-EINVAL); // R1 unknown flag
    expect(mm.mremap(a, P, P, 8 | M, 0)).toBe(-EINVAL); // R1b
    expect(mm.mremap(a + 1, P, P, 0, 0)).toBe(-EINVAL); // unaligned old address
    expect(mm.mremap(NOVMA, P, 0, 0, 0)).toBe(-EINVAL); // R2: new_len 0 beats "no vma"
    expect(mm.mremap(NOVMA, P, -1, M, 0)).toBe(-EINVAL); // R26b: PAGE_ALIGN(-1) == 0
    expect(mm.mremap(NOVMA, P, TASK_SIZE + P, 0, 0)).toBe(-EINVAL); // R34b: new_len > TASK_SIZE
    expect(mm.mremap(a, P, TASK_SIZE + P, M, 0)).toBe(-EINVAL); // R34
    expect(mm.mremap(NOVMA, P, P, MREMAP_FIXED, 0x20000000)).toBe(-EINVAL); // R3 FIXED without MAYMOVE
    expect(mm.mremap(a, P, P, MREMAP_FIXED, 0x20000001)).toBe(-EINVAL); // R3b
    expect(mm.mremap(a, P, P, MREMAP_DONTUNMAP, 0)).toBe(-EINVAL); // R4
    expect(mm.mremap(a, P, 2 * P, D, 0)).toBe(-EINVAL); // R4b DONTUNMAP resizing
    expect(mm.mremap(a, P, P, D, 0x20000001)).toBe(-EINVAL); // R4c unaligned hint
    expect(mm.mremap(NOVMA, P, 2 * P, D, 0)).toBe(-EINVAL); // R4e: beats "no vma"
    expect(mm.mremap(NOVMA, P, P, F, 0x20000001)).toBe(-EINVAL); // R5
    expect(mm.mremap(a, -1, P, M, 0)).toBe(-EINVAL); // R25: PAGE_ALIGN(old_len) == 0 on a private mapping
    expect(layout(mm, a, a + 4 * P)).toEqual([[a, a + 4 * P, RW]]);
  });

  it('rejects a destination overlapping the source, or past TASK_SIZE, with -EINVAL even when no VMA is there [R6, R7, R8]', () => {
    // R6 is the interesting one: 6.18 checks overlap in check_mremap_params(), before vma_lookup(),
    // so -EINVAL wins over -EFAULT (older kernels checked it inside mremap_to).
    const { mm } = setup();
    const a = fixed(mm, FREE, 4);
    expect(mm.mremap(NOVMA, 2 * P, 2 * P, F, NOVMA + P)).toBe(-EINVAL); // R6
    expect(mm.mremap(NOVMA, P, 2 * P, F, TASK_SIZE - P)).toBe(-EINVAL); // R7
    expect(mm.mremap(NOVMA, P, TASK_SIZE + P, F, 0)).toBe(-EINVAL); // R7b
    expect(mm.mremap(a, P, 2 * P, F, TASK_SIZE - P)).toBe(-EINVAL); // R7c
    expect(mm.mremap(a, P, P, F, TASK_SIZE)).toBe(-EINVAL); // R7d
    expect(mm.mremap(a, 2 * P, 2 * P, F, a + P)).toBe(-EINVAL); // R8
    expect(mm.mremap(a, 2 * P, 2 * P, F, a)).toBe(-EINVAL); // R8b
  });

  it('returns -EFAULT when no VMA contains the old address, whatever the sizes [R19]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 1);
    expect(mm.mremap(NOVMA, P, P, 0, 0)).toBe(-EFAULT); // R19
    expect(mm.mremap(NOVMA, 2 * P, P, 0, 0)).toBe(-EFAULT); // R19b
    expect(mm.mremap(a - P, P, P, 0, 0)).toBe(-EFAULT); // R19c
    expect(mm.mremap(NOVMA, P, P, F, 0x20000000)).toBe(-EFAULT);
  });

  it('refuses to duplicate a private mapping (old_len 0) with -EINVAL, before touching the destination [R12, R13]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    const b = fixed(mm, a + 0x100000, 1);
    calls.length = 0;
    expect(mm.mremap(a, 0, P, F, b)).toBe(-EINVAL); // R12
    expect(mm.mremap(a, 0, P, M, 0)).toBe(-EINVAL); // R13
    expect(mm.mremap(a, 0, P, 0, 0)).toBe(-EINVAL); // R13b
    expect(mm.mremap(a, 0, 0, 0, 0)).toBe(-EINVAL); // R13c
    expect(calls).toEqual([]);
    expect(layout(mm, b, b + P)).toEqual([[b, b + P, RW]]);
  });

  it('returns -EFAULT for an old range running past its VMA, before unmapping the destination [R10d, R10e, R11, R16]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    fixed(mm, a + 2 * P, 2, PROT_READ);
    const b = fixed(mm, a + 0x100000, 1);
    calls.length = 0;
    expect(mm.mremap(a, 3 * P, 4 * P, F, b)).toBe(-EFAULT); // R11: grow + spanning
    expect(mm.mremap(a, 4 * P, 5 * P, F, b)).toBe(-EFAULT); // R10d
    expect(mm.mremap(a, 4 * P, 3 * P, F, b)).toBe(-EFAULT); // R10e: the kept 3 pages still span 2 VMAs
    expect(mm.mremap(a, 4 * P, 4 * P, D, b)).toBe(-EFAULT); // R10b: DONTUNMAP without FIXED is single-VMA
    expect(mm.mremap(a, 4 * P, 5 * P, 0, 0)).toBe(-EFAULT); // R16
    expect(mm.mremap(a + 2 * P, 3 * P, 4 * P, 0, 0)).toBe(-EFAULT); // R16b
    expect(calls).toEqual([]);
    expect(layout(mm, a, b + P)).toEqual([
      [a, a + 2 * P, RW],
      [a + 2 * P, a + 4 * P, PROT_READ],
      [b, b + P, RW],
    ]);
  });

  it('returns -ENOMEM for growth that cannot happen in place without MREMAP_MAYMOVE [R13e, R14, R15, R26]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 4);
    expect(mm.mremap(a, P, 2 * P, 0, 0)).toBe(-ENOMEM); // R14: range does not end at the VMA end
    const c = fixed(mm, a + 0x100000, 2);
    fixed(mm, c + 2 * P, 1, PROT_READ);
    expect(mm.mremap(c, 2 * P, 3 * P, 0, 0)).toBe(-ENOMEM); // R15: next VMA in the way
    const s = mm.mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0);
    expect(mm.mremap(s, 0, 2 * P, 0, 0)).toBe(-ENOMEM); // R13e
    expect(mm.mremap(a, 4 * P, TASK_SIZE, M, 0)).toBe(-ENOMEM); // R26: no room anywhere
  });

  it('MREMAP_FIXED below mmap_min_addr is -EPERM after the destination was unmapped; the source stays [R20]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 2);
    expect(mm.mremap(a, P, P, F, 0)).toBe(-EPERM);
    expect(layout(mm, a, a + 2 * P)).toEqual([[a, a + 2 * P, RW]]);
  });

  it('checks map_count headroom: MREMAP_FIXED needs map_count + 2 < max - 3, a move needs map_count < max - 3 [count_exp]', () => {
    // count_exp (max 65530): FIXED move -ENOMEM at map_count >= 65525, grow-by-move at >= 65527;
    // in-place growth and no-ops still work at 65531. Scaled here to max_map_count = 20.
    const { mm } = setup({ maxMapCount: 20 });
    const a = fixed(mm, FREE, 1);
    const g = fixed(mm, FREE + 0x10000, 1);
    for (let i = 0; mm.mapCount < 15; i++) fixed(mm, FREE + 0x100000 + 2 * i * P, 1);
    expect(mm.mremap(a, P, P, F, FREE + 0x800000)).toBe(-ENOMEM); // 15 + 2 >= 17
    expect(mm.mremap(a, P, 2 * P, M, 0)).toBe(a); // grows in place
    expect(mm.mremap(a, 2 * P, P, 0, 0)).toBe(a);
    fixed(mm, g + P, 1, PROT_READ);
    expect(mm.mapCount).toBe(16);
    expect(mm.mremap(g, P, 2 * P, M, 0)).toBe(MMAP_BASE - 2 * P); // 16 < 17: may move
    fixed(mm, FREE + 0x900000, 1);
    fixed(mm, MMAP_BASE, 1, PROT_READ); // blocks growth in place of the moved mapping
    expect(mm.mapCount).toBe(18);
    expect(mm.mremap(MMAP_BASE - 2 * P, 2 * P, 3 * P, M, 0)).toBe(-ENOMEM); // 18 >= 17
  });
});

// =============================================================================================
describe('mremap behaviour', () => {
  const M = MREMAP_MAYMOVE;
  const F = MREMAP_FIXED | MREMAP_MAYMOVE;
  const D = MREMAP_DONTUNMAP | MREMAP_MAYMOVE;

  it('shrinks in place, zapping the tail, even across later VMAs and holes [R17]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    fixed(mm, a + 4 * P, 1, PROT_READ);
    calls.length = 0;
    expect(mm.mremap(a, 5 * P, P, 0, 0)).toBe(a);
    expect(calls).toEqual([
      ['zap', a + P, P],
      ['zap', a + 4 * P, P],
    ]);
    expect(layout(mm, a, a + 8 * P)).toEqual([[a, a + P, RW]]);
  });

  it('treats a same-size resize as a no-op even when the range spans a hole [R18]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 1);
    expect(mm.mremap(a, 100 * P, 100 * P, 0, 0)).toBe(a);
    expect(mm.mremap(a, 100 * P, 100 * P, M, 0)).toBe(a);
    expect(calls).toEqual([]);
  });

  it('grows in place when the range ends its VMA and the gap above is free, merging with the next VMA [R31, R32, R33]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    expect(mm.mremap(a, 2 * P, 4 * P, 0, 0)).toBe(a);
    expect(layout(mm, a, a + 8 * P)).toEqual([[a, a + 4 * P, RW]]);
    const b = fixed(mm, a + 0x100000, 2);
    fixed(mm, b + 3 * P, 1);
    expect(mm.mremap(b, 2 * P, 3 * P, 0, 0)).toBe(b);
    expect(layout(mm, b, b + 8 * P)).toEqual([[b, b + 4 * P, RW]]);
    expect(calls).toEqual([]);
    const { mm: low } = setup({ stackTop: 0x7ff000000000 }); // keep the [stack] away from TASK_SIZE
    fixed(low, TASK_SIZE - 2 * P, 1);
    expect(low.mremap(TASK_SIZE - 2 * P, P, 2 * P, 0, 0)).toBe(TASK_SIZE - 2 * P);
    expect(low.mremap(TASK_SIZE - 2 * P, 2 * P, 3 * P, 0, 0)).toBe(-ENOMEM); // R33b
  });

  it('moves a blocked growing mapping to a kernel-chosen address with MREMAP_MAYMOVE, taking its pages along [R24]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    fixed(mm, a + 2 * P, 1, PROT_READ);
    calls.length = 0;
    const r = mm.mremap(a, 2 * P, 3 * P, M, 0);
    expect(r).toBe(MMAP_BASE - 3 * P);
    expect(calls).toEqual([['move', a, r, 2 * P]]);
    expect(layout(mm, a, a + 3 * P)).toEqual([[a + 2 * P, a + 3 * P, PROT_READ]]);
    expect(layout(mm, r, r + 3 * P)).toEqual([[r, r + 3 * P, RW]]);
    expect(mm.mmap(0, P, RW, PA, null, 0)).toBe(r - P); // R24: next mmap lands right below
  });

  it('moving part of a VMA splits it [R14b]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 4);
    calls.length = 0;
    const r = mm.mremap(a + P, P, 2 * P, M, 0);
    expect(r).toBe(MMAP_BASE - 2 * P);
    expect(calls).toEqual([['move', a + P, r, P]]);
    expect(layout(mm, a, a + 4 * P)).toEqual([
      [a, a + P, RW],
      [a + 2 * P, a + 4 * P, RW],
    ]);
  });

  it('MREMAP_FIXED over an existing mapping unmaps the destination first (zapPages), then moves [R21]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    const b = fixed(mm, a + 0x100000, 4, PROT_READ);
    calls.length = 0;
    expect(mm.mremap(a, 2 * P, 2 * P, F, b + P)).toBe(b + P);
    expect(calls).toEqual([
      ['zap', b + P, 2 * P],
      ['move', a, b + P, 2 * P],
    ]);
    expect(layout(mm, a, a + 2 * P)).toEqual([]);
    expect(layout(mm, b, b + 4 * P)).toEqual([
      [b, b + P, PROT_READ],
      [b + P, b + 3 * P, RW],
      [b + 3 * P, b + 4 * P, PROT_READ],
    ]);
  });

  it('MREMAP_FIXED with a smaller new_len unmaps the source tail and moves the head [R27]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 4);
    const b = a + 0x100000;
    calls.length = 0;
    expect(mm.mremap(a, 4 * P, 2 * P, F, b)).toBe(b);
    expect(calls).toEqual([
      ['zap', a + 2 * P, 2 * P],
      ['move', a, b, 2 * P],
    ]);
    expect(layout(mm, a, b + 4 * P)).toEqual([[b, b + 2 * P, RW]]);
  });

  it('MREMAP_FIXED can move part of a VMA elsewhere into the same VMA [R29, R30]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 8);
    calls.length = 0;
    expect(mm.mremap(a + P, 2 * P, 2 * P, F, a + 5 * P)).toBe(a + 5 * P);
    expect(calls).toEqual([
      ['zap', a + 5 * P, 2 * P],
      ['move', a + P, a + 5 * P, 2 * P],
    ]);
    // Linux shows 4 VMAs here because the moved, touched pages keep their anon_vma/pgoff; this
    // model merges compatible anonymous neighbours (see vma.ts canMerge).
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + P, RW],
      [a + 3 * P, a + 8 * P, RW],
    ]);
    const c = fixed(mm, a + 0x100000, 2);
    expect(mm.mremap(c, P, P, F, c + P)).toBe(c + P); // R30
    expect(layout(mm, c, c + 2 * P)).toEqual([[c + P, c + 2 * P, RW]]);
  });

  it('MREMAP_FIXED of equal length moves every VMA in the range, keeping the gaps [R9, R9b, R9c, R9f, R9h, R10]', () => {
    const { mm, calls } = setup();
    // R9c: source [vma, gap, vma], destination fully mapped: only the pieces opposite VMAs are replaced
    const a = fixed(mm, FREE, 1);
    fixed(mm, a + 2 * P, 1, PROT_READ);
    const b = fixed(mm, a + 0x100000, 4, PROT_EXEC);
    calls.length = 0;
    expect(mm.mremap(a, 3 * P, 3 * P, F, b)).toBe(b);
    expect(calls).toEqual([
      ['zap', b, P],
      ['move', a, b, P],
      ['zap', b + 2 * P, P],
      ['move', a + 2 * P, b + 2 * P, P],
    ]);
    expect(layout(mm, a, a + 4 * P)).toEqual([]);
    expect(layout(mm, b, b + 4 * P)).toEqual([
      [b, b + P, RW],
      [b + P, b + 2 * P, PROT_EXEC],
      [b + 2 * P, b + 3 * P, PROT_READ],
      [b + 3 * P, b + 4 * P, PROT_EXEC],
    ]);
    // R9f: start inside the first VMA, end inside the second
    const c = fixed(mm, FREE + 0x1000000, 2);
    fixed(mm, c + 2 * P, 2, PROT_READ);
    const d = c + 0x100000;
    expect(mm.mremap(c + P, 2 * P, 2 * P, F, d)).toBe(d);
    expect(layout(mm, c, c + 4 * P)).toEqual([
      [c, c + P, RW],
      [c + 3 * P, c + 4 * P, PROT_READ],
    ]);
    expect(layout(mm, d, d + 2 * P)).toEqual([
      [d, d + P, RW],
      [d + P, d + 2 * P, PROT_READ],
    ]);
    // R9 / R9h: a trailing gap is not an error, and the destination opposite it is left alone
    const e = fixed(mm, FREE + 0x2000000, 2);
    const f = e + 0x100000;
    fixed(mm, f + 3 * P, 1, PROT_READ);
    expect(mm.mremap(e, 4 * P, 4 * P, F, f)).toBe(f);
    expect(layout(mm, f, f + 4 * P)).toEqual([
      [f, f + 2 * P, RW],
      [f + 3 * P, f + 4 * P, PROT_READ],
    ]);
  });

  it('MREMAP_FIXED of equal length starting in a hole is -EFAULT [R9d, R9e]', () => {
    const { mm, calls } = setup();
    const a = FREE;
    fixed(mm, a + P, 1);
    calls.length = 0;
    expect(mm.mremap(a, 3 * P, 3 * P, F, a + 0x100000)).toBe(-EFAULT);
    expect(mm.mremap(a + 4 * P, 3 * P, 3 * P, F, a + 0x100000)).toBe(-EFAULT);
    expect(calls).toEqual([]);
  });

  it('MREMAP_DONTUNMAP moves the pages and leaves the old VMA mapped but empty [R22, R9g]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 2);
    const b = a + 0x100000;
    calls.length = 0;
    expect(mm.mremap(a, 2 * P, 2 * P, D | MREMAP_FIXED, b)).toBe(b);
    expect(calls).toEqual([['move', a, b, 2 * P]]);
    expect(layout(mm, a, a + 2 * P)).toEqual([[a, a + 2 * P, RW]]);
    expect(layout(mm, b, b + 2 * P)).toEqual([[b, b + 2 * P, RW]]);
    expect(mm.access(a, true)).toBe('ok');
    // R9g: with MREMAP_FIXED it may span several VMAs
    const c = fixed(mm, FREE + 0x1000000, 2);
    fixed(mm, c + 2 * P, 2, PROT_READ);
    const d = c + 0x100000;
    expect(mm.mremap(c, 4 * P, 4 * P, D | MREMAP_FIXED, d)).toBe(d);
    expect(layout(mm, c, c + 4 * P)).toHaveLength(2);
    expect(layout(mm, d, d + 4 * P)).toEqual([
      [d, d + 2 * P, RW],
      [d + 2 * P, d + 4 * P, PROT_READ],
    ]);
  });

  it('MREMAP_DONTUNMAP without MREMAP_FIXED treats new_address as a hint [R23, R23b, R23c]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 2);
    expect(mm.mremap(a, 2 * P, 2 * P, D, a + 0x100000)).toBe(a + 0x100000); // R23
    expect(mm.mremap(a, 2 * P, 2 * P, D, 0)).toBe(MMAP_BASE - 2 * P); // R23b
    expect(mm.mremap(a, P, P, D, a + P)).toBe(MMAP_BASE - 3 * P); // R23c: hint occupied by the rest of the VMA
  });

  it('old_len 0 on a shared mapping creates a second mapping of the same object [R13d, R13f, R13g]', () => {
    const { mm, calls } = setup();
    const s = mm.mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0);
    calls.length = 0;
    const dup = mm.mremap(s, 0, 2 * P, M, 0);
    expect(dup).toBe(s - 2 * P);
    expect(mm.findVma(dup)!.shmemId).toBe(mm.findVma(s)!.shmemId);
    expect(mm.findVma(s)!.start).toBe(s); // source untouched
    const g = FREE + 0x100000;
    expect(mm.mremap(s, 0, P, F, g)).toBe(g); // R13g
    expect(mm.findVma(g)!.shmemId).toBe(mm.findVma(s)!.shmemId);
    expect(calls).toEqual([]);
  });
});

// =============================================================================================
describe('brk', () => {
  it('brk(0) and values below start_brk return the current break [B2]', () => {
    const { mm } = setup();
    expect(mm.brkSet(0)).toBe(BRK_START);
    expect(mm.brkSet(BRK_START - P)).toBe(BRK_START);
    expect(mm.brkSet(1)).toBe(BRK_START);
  });

  it('keeps the break unaligned while the heap VMA ends on a page boundary [B3]', () => {
    const { mm, calls } = setup();
    expect(mm.brkSet(BRK_START + 100)).toBe(BRK_START + 100);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([[BRK_START, BRK_START + P, RW]]);
    expect(mm.brkSet(BRK_START + 5000)).toBe(BRK_START + 5000);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([[BRK_START, BRK_START + 2 * P, RW]]);
    expect(mm.brk).toBe(BRK_START + 5000);
    expect(mm.brkSet(BRK_START + 4096)).toBe(BRK_START + 4096);
    expect(calls).toEqual([['zap', BRK_START + P, P]]);
    expect(mm.brkSet(BRK_START + 1)).toBe(BRK_START + 1); // same page: nothing changes
    expect(mm.brkSet(BRK_START)).toBe(BRK_START);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([]);
  });

  it('grows up to one page below the next mapping and no further [B1]', () => {
    const { mm, calls } = setup();
    const m = fixed(mm, BRK_START + 16 * P, 1, PROT_READ);
    expect(mm.brkSet(m - P)).toBe(m - P); // B1: newbrk + PAGE_SIZE == next->vm_start is allowed
    expect(mm.brkSet(m - P + 1)).toBe(m - P); // B1b
    expect(mm.brkSet(m + 2 * P)).toBe(m - P); // B1c
    calls.length = 0;
    expect(mm.brkSet(m - 2 * P)).toBe(m - 2 * P); // B1d: shrinking zaps
    expect(calls).toEqual([['zap', m - 2 * P, P]]);
  });

  it('keeps stack_guard_gap below a VM_GROWSDOWN mapping [B5]', () => {
    const { mm } = setup();
    const m = fixed(mm, BRK_START + 0x200000, 1, RW, PA | MAP_GROWSDOWN);
    expect(mm.brkSet(m - MiB - P)).toBe(m - MiB - P);
    expect(mm.brkSet(m - MiB)).toBe(m - MiB - P);
    mm.munmap(m, P);
    expect(mm.brkSet(m)).toBe(m);
  });

  it('cannot shrink into a heap the program munmapped, but can grow again [B4]', () => {
    const { mm } = setup();
    mm.brkSet(BRK_START + 4 * P);
    mm.munmap(BRK_START, 4 * P);
    expect(mm.brkSet(BRK_START + P)).toBe(BRK_START + 4 * P);
    expect(mm.brkSet(BRK_START + 8 * P)).toBe(BRK_START + 8 * P);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([[BRK_START + 4 * P, BRK_START + 8 * P, RW]]);
  });

  it('extends the last brk VMA when compatible, otherwise starts a new one [B7, B8]', () => {
    const { mm } = setup();
    mm.brkSet(BRK_START + 2 * P);
    mm.mprotect(BRK_START, P, PROT_READ);
    expect(mm.brkSet(BRK_START + 3 * P)).toBe(BRK_START + 3 * P);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([
      [BRK_START, BRK_START + P, PROT_READ],
      [BRK_START + P, BRK_START + 3 * P, RW],
    ]);
    mm.mprotect(BRK_START + P, 2 * P, PROT_READ);
    expect(mm.brkSet(BRK_START + 4 * P)).toBe(BRK_START + 4 * P);
    expect(layout(mm, BRK_START, BRK_START + MiB)).toEqual([
      [BRK_START, BRK_START + 3 * P, PROT_READ],
      [BRK_START + 3 * P, BRK_START + 4 * P, RW],
    ]);
  });

  it('fails (returning the old break) beyond TASK_SIZE or at max_map_count [B9, count_exp]', () => {
    const { mm } = setup();
    expect(mm.brkSet(TASK_SIZE)).toBe(BRK_START);
    expect(mm.brkSet(TASK_SIZE + P)).toBe(BRK_START);
    const { mm: small } = setup({ maxMapCount: 2 });
    fixed(small, FREE, 1);
    fixed(small, FREE + 2 * P, 1, PROT_READ);
    expect(small.brkSet(BRK_START + P)).toBe(BRK_START); // map_count 3 > 2
  });
});

// =============================================================================================
describe('mprotect', () => {
  it('validates in Linux order [P1..P9c]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 8);
    expect(mm.mprotect(a + 1, P, PROT_READ)).toBe(-EINVAL); // P1
    expect(mm.mprotect(a + 1, 0, PROT_READ)).toBe(-EINVAL); // P7: alignment before len 0
    expect(mm.mprotect(a, 0, 0x10)).toBe(0); // P2: len 0 before prot validation
    expect(mm.mprotect(0x10000000, 0, PROT_READ)).toBe(0); // P2b
    expect(mm.mprotect(a, P, 0x10)).toBe(-EINVAL); // P3
    expect(mm.mprotect(0x10000000, P, 0x10)).toBe(-EINVAL); // P3b: before the VMA lookup
    expect(mm.mprotect(a, P, PROT_SEM | RW)).toBe(0); // P8
    expect(mm.mprotect(0x10000000, P, PROT_READ)).toBe(-ENOMEM); // P4
    expect(mm.mprotect(a, -4096, PROT_READ)).toBe(-ENOMEM); // P6: end wraps
    expect(mm.mprotect(a, -4096, 0x10)).toBe(-ENOMEM); // P6b: before prot validation
    expect(mm.mprotect(a, -1, PROT_READ)).toBe(-ENOMEM); // P6c
    expect(mm.mprotect(TASK_SIZE + P, P, PROT_READ)).toBe(-ENOMEM); // P6d
    expect(mm.mprotect(a, P, PROT_READ | PROT_GROWSDOWN)).toBe(-EINVAL); // P9
    expect(mm.mprotect(a, P, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP)).toBe(-EINVAL); // P9b
    expect(mm.mprotect(a, P, PROT_READ | PROT_GROWSUP)).toBe(-EINVAL); // P9c
    expect(layout(mm, a, a + 8 * P)).toEqual([[a, a + 8 * P, RW]]);
  });

  it('applies to the VMAs before a hole and then fails with -ENOMEM [P5, P5b]', () => {
    const { mm } = setup();
    const a = fixed(mm, FREE, 8);
    mm.munmap(a + 4 * P, P);
    expect(mm.mprotect(a + 2 * P, 4 * P, PROT_READ)).toBe(-ENOMEM);
    expect(layout(mm, a, a + 8 * P)).toEqual([
      [a, a + 2 * P, RW],
      [a + 2 * P, a + 4 * P, PROT_READ],
      [a + 5 * P, a + 8 * P, RW],
    ]);
    expect(mm.mprotect(a + 4 * P, 2 * P, PROT_READ)).toBe(-ENOMEM);
    expect(layout(mm, a + 5 * P, a + 8 * P)).toEqual([[a + 5 * P, a + 8 * P, RW]]);
  });

  it('splits and re-merges VMAs [P10, P11, G4, G5, G6]', () => {
    const { mm, calls } = setup();
    const a = fixed(mm, FREE, 3);
    expect(mm.mprotect(a + P, P, PROT_READ)).toBe(0);
    expect(layout(mm, a, a + 3 * P)).toEqual([
      [a, a + P, RW],
      [a + P, a + 2 * P, PROT_READ],
      [a + 2 * P, a + 3 * P, RW],
    ]);
    expect(mm.mprotect(a + P, P, RW)).toBe(0);
    expect(layout(mm, a, a + 3 * P)).toEqual([[a, a + 3 * P, RW]]); // G5
    const b = fixed(mm, a + 0x100000, 1, PROT_READ);
    fixed(mm, b + P, 1, RW);
    expect(mm.mprotect(b + P, P, PROT_READ)).toBe(0);
    expect(layout(mm, b, b + 2 * P)).toEqual([[b, b + 2 * P, PROT_READ]]); // G6
    expect(mm.mprotect(a, 3 * P, PROT_NONE)).toBe(0);
    expect(mm.mprotect(a, 3 * P, RW)).toBe(0);
    expect(calls).toEqual([]);
  });

  it('PROT_GROWSDOWN extends the range down to the start of a VM_GROWSDOWN VMA [P12]', () => {
    const { mm } = setup();
    const g = fixed(mm, FREE, 2, RW, PA | MAP_GROWSDOWN);
    expect(mm.mprotect(g + P, P, PROT_READ | PROT_GROWSDOWN)).toBe(0);
    expect(layout(mm, g, g + 2 * P)).toEqual([[g, g + 2 * P, PROT_READ]]);
  });

  it('refuses PROT_WRITE on a shared mapping of a read-only file with -EACCES [V9b, V9c]', () => {
    const { mm } = setup();
    const ro: VmaFile = { path: '/ro', size: P, readOnly: true };
    const s = mm.mmap(0, P, PROT_READ, MAP_SHARED, ro, 0);
    expect(mm.mprotect(s, P, RW)).toBe(-EACCES);
    expect(mm.mprotect(s, -4096, RW)).toBe(-ENOMEM);
    const p = mm.mmap(0, P, PROT_READ, MAP_PRIVATE, ro, 0);
    expect(mm.mprotect(p, P, RW)).toBe(0); // private: copy-on-write
  });
});

// =============================================================================================
describe('access(): fault outcome', () => {
  it('follows x86 access_error: reads need any of R/W/X, writes need W [A]', () => {
    const { mm } = setup();
    const x = fixed(mm, FREE, 5, PROT_NONE);
    mm.mprotect(x + P, P, PROT_READ);
    mm.mprotect(x + 2 * P, P, PROT_WRITE);
    mm.mprotect(x + 3 * P, P, PROT_EXEC);
    mm.mprotect(x + 4 * P, P, RW);
    const got = [0, 1, 2, 3, 4].map((i) => [mm.access(x + i * P, false), mm.access(x + i * P, true)]);
    expect(got).toEqual([
      ['accerr', 'accerr'],
      ['ok', 'accerr'],
      ['ok', 'ok'],
      ['ok', 'accerr'],
      ['ok', 'ok'],
    ]);
    expect(mm.access(0x10000000, false)).toBe('maperr');
    expect(mm.access(TASK_SIZE, false)).toBe('maperr');
    expect(mm.access(2 ** 64 - 2 ** 47, false)).toBe('maperr');
  });

  it('grows a VM_GROWSDOWN VMA on faults below it, within the guard gap and RLIMIT_STACK rules [A below growsdown]', () => {
    const { mm } = setup();
    const gs = fixed(mm, 0x530000000, 1, RW, PA | MAP_GROWSDOWN);
    expect(mm.access(gs - P, true)).toBe('ok');
    expect(mm.findVma(gs - P)!.start).toBe(gs - P);
    expect(mm.access(gs - 101 * P, true)).toBe('ok');
    expect(layout(mm, gs - MiB, gs + P)).toEqual([[gs - 101 * P, gs + P, RW]]);
    fixed(mm, gs - 0x200000, 1, PROT_READ);
    expect(mm.access(gs - 0x200000 + P + 0x80000, true)).toBe('maperr'); // within 1 MiB of a readable VMA
    mm.mprotect(gs - 0x200000, P, PROT_NONE);
    expect(mm.access(gs - 0x200000 + P + 0x80000, true)).toBe('ok'); // PROT_NONE neighbour does not count
    const { mm: m2 } = setup();
    const s = STACK_TOP - INITIAL_STACK_SIZE;
    expect(m2.access(s - 8 * MiB, true)).toBe('maperr'); // past RLIMIT_STACK (8 MiB)
    expect(m2.access(STACK_TOP - 8 * MiB, false)).toBe('ok');
  });
});

// =============================================================================================
describe('invariants under random operation sequences (fast-check)', () => {
  // A 64-page window straddling mmapBase so that kernel-chosen, hinted and fixed addresses, brk and
  // mremap destinations all collide often.
  const BASE = 0x10000000;
  const WIN = BASE - 40 * P;
  const BRK0 = WIN - 16 * P;
  const pageArb = fc.integer({ min: 0, max: 64 });
  const lenArb = fc.oneof(
    fc.integer({ min: 0, max: 10 }).map((n) => n * P),
    fc.integer({ min: 1, max: 5 * P }),
  );
  const protArb = fc.constantFrom(PROT_NONE, PROT_READ, RW, PROT_EXEC, PROT_READ | PROT_EXEC);
  const addrArb = fc.oneof(
    { weight: 6, arbitrary: pageArb.map((k) => WIN + k * P) },
    { weight: 1, arbitrary: pageArb.map((k) => WIN + k * P + 123) },
  );
  type Op =
    | { k: 'mmap'; addr: number; len: number; prot: number; mode: number; shared: boolean; file: boolean }
    | { k: 'munmap'; addr: number; len: number }
    | {
        k: 'mremap';
        addr: number;
        oldLen: number;
        newLen: number;
        flags: number;
        newAddr: number;
        anchor: number | null;
      }
    | { k: 'mprotect'; addr: number; len: number; prot: number }
    | { k: 'brk'; pages: number }
    | { k: 'touch'; addr: number; len: number }
    | { k: 'access'; addr: number; write: boolean };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant('mmap' as const),
        addr: fc.oneof(fc.constant(0), addrArb),
        len: lenArb,
        prot: protArb,
        mode: fc.constantFrom(0, MAP_FIXED, MAP_FIXED_NOREPLACE),
        shared: fc.boolean(),
        file: fc.boolean(),
      }),
    },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('munmap' as const), addr: addrArb, len: lenArb }) },
    {
      weight: 5,
      arbitrary: fc.record({
        k: fc.constant('mremap' as const),
        addr: addrArb,
        oldLen: lenArb,
        newLen: lenArb,
        flags: fc.constantFrom(
          0,
          MREMAP_MAYMOVE,
          MREMAP_MAYMOVE | MREMAP_FIXED,
          MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
          MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
          MREMAP_FIXED,
        ),
        newAddr: addrArb,
        anchor: fc.option(fc.nat(), { nil: null }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ k: fc.constant('mprotect' as const), addr: addrArb, len: lenArb, prot: protArb }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('brk' as const), pages: fc.integer({ min: -4, max: 30 }) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant('touch' as const),
        addr: addrArb,
        len: fc.integer({ min: 1, max: 24 }).map((n) => n * P),
      }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('access' as const), addr: addrArb, write: fc.boolean() }) },
  );
  /** Start every sequence with a populated, fragmented window so that moves and zaps carry pages. */
  const prologue: Op[] = [
    { k: 'mmap', addr: WIN + 2 * P, len: 6 * P, prot: RW, mode: MAP_FIXED, shared: false, file: false },
    { k: 'mmap', addr: WIN + 9 * P, len: 3 * P, prot: PROT_READ, mode: MAP_FIXED, shared: false, file: false },
    { k: 'mmap', addr: WIN + 12 * P, len: 4 * P, prot: RW, mode: MAP_FIXED, shared: true, file: true },
    { k: 'mmap', addr: 0, len: 5 * P, prot: RW, mode: 0, shared: true, file: false },
    { k: 'brk', pages: 6 },
    { k: 'touch', addr: BRK0, len: 64 * P + (WIN - BRK0) },
  ];

  function run(ops: Op[]): void {
    const shadow = new Map<number, number>(); // page address -> page identity
    let nextId = 1;
    const hooks: MmHooks = {
      movePages(o, n, len) {
        expect((o % P) + (n % P) + (len % P)).toBe(0);
        expect(len).toBeGreaterThan(0);
        const moving: Array<[number, number]> = [];
        for (let off = 0; off < len; off += P) {
          expect(shadow.has(n + off), `move destination ${n + off} not empty`).toBe(false);
          const id = shadow.get(o + off);
          if (id !== undefined) moving.push([n + off, id]);
          shadow.delete(o + off);
        }
        for (const [addr, id] of moving) shadow.set(addr, id);
      },
      zapPages(s, len) {
        expect((s % P) + (len % P)).toBe(0);
        expect(len).toBeGreaterThan(0);
        for (let off = 0; off < len; off += P) shadow.delete(s + off);
      },
    };
    const mm = new LegoMm({ mmapBase: BASE, brkStart: BRK0, stackTop: STACK_TOP, hooks });
    const alignUp = (x: number): number => Math.ceil(x / P) * P;

    /** Mapped pages outside the [stack]: the page-level model the VMA list must agree with. */
    const mappedPages = (): Set<number> => {
      const set = new Set<number>();
      for (const v of mm.vmas) if (v.end !== STACK_TOP) for (let a = v.start; a < v.end; a += P) set.add(a);
      return set;
    };
    const sorted = <T>(it: Iterable<T>): T[] => [...it].sort();

    for (const genOp of [...prologue, ...ops]) {
      let op = genOp;
      const pre = new Map(shadow);
      const preCover = mappedPages();
      // expected pages (identity per address) and expected mapped pages after the operation;
      // undefined = only the weaker checks apply (failed MREMAP_FIXED may have unmapped its destination)
      let expected: Map<number, number> | undefined = new Map(pre);
      let expCover: Set<number> | undefined = new Set(preCover);
      const drop = (from: number, to: number): void => {
        for (let a = from; a < to; a += P) {
          expected?.delete(a);
          expCover?.delete(a);
        }
      };
      const map = (from: number, to: number): void => {
        for (let a = from; a < to; a += P) expCover?.add(a);
      };
      switch (op.k) {
        case 'mmap': {
          const flags = (op.shared ? MAP_SHARED : MAP_PRIVATE) | (op.file ? 0 : MAP_ANONYMOUS) | op.mode;
          const r = mm.mmap(op.addr, op.len, op.prot, flags, op.file ? FILE : null, 0);
          if (r >= 0) {
            drop(r, r + alignUp(op.len));
            map(r, r + alignUp(op.len));
          }
          break;
        }
        case 'munmap':
          if (mm.munmap(op.addr, op.len) === 0) drop(op.addr, op.addr + alignUp(op.len));
          break;
        case 'mprotect':
          mm.mprotect(op.addr, op.len, op.prot);
          break;
        case 'brk': {
          const old = mm.brk;
          const r = mm.brkSet(old + op.pages * P + (op.pages % 2 ? 100 : 0));
          if (r !== old && alignUp(r) < alignUp(old)) drop(alignUp(r), alignUp(old));
          if (r !== old && alignUp(r) > alignUp(old)) map(alignUp(old), alignUp(r));
          break;
        }
        case 'touch': {
          // first-touch faults on every mapped page of the range
          for (let a = op.addr - (op.addr % P); a < op.addr + op.len; a += P) {
            if (mm.findVma(a) && !shadow.has(a)) shadow.set(a, nextId++);
          }
          expected = new Map(shadow);
          break;
        }
        case 'access': {
          const res = mm.access(op.addr, op.write);
          const v = mm.findVma(op.addr);
          if (res !== 'maperr') expect(v).toBeDefined();
          if (res === 'accerr') expect(op.write ? v!.prot & PROT_WRITE : v!.prot).toBe(0);
          break;
        }
        case 'mremap': {
          // anchored: remap (a prefix of) the anchor-th VMA of the window, so that moves succeed often
          const inWin = mm.vmas.filter((v) => v.start >= BRK0 && v.end <= WIN + 64 * P);
          if (op.anchor !== null && inWin.length > 0) {
            const v = inWin[op.anchor % inWin.length]!;
            if (op.flags & MREMAP_FIXED && op.anchor % 2) {
              // equal-length MREMAP_FIXED running past the VMA: a multi-VMA move across gaps
              const len = v.end - v.start + alignUp(op.oldLen);
              op = { ...op, addr: v.start, oldLen: len, newLen: len };
            } else {
              op = {
                ...op,
                addr: v.start,
                oldLen: op.oldLen > 0 && op.oldLen < v.end - v.start ? op.oldLen : v.end - v.start,
              };
            }
          }
          const { addr, flags, newAddr } = op;
          const r = mm.mremap(addr, op.oldLen, op.newLen, flags, newAddr);
          const oldLen = alignUp(op.oldLen);
          const newLen = alignUp(op.newLen);
          if (r < 0) {
            // errors may leave the destination unmapped (MREMAP_FIXED), never anything else changed
            if (flags & MREMAP_FIXED) {
              const outside = (a: number): boolean =>
                !(a >= addr && a < addr + oldLen) && !(a >= newAddr && a < newAddr + newLen);
              for (const [a, id] of pre) if (outside(a)) expect(shadow.get(a)).toBe(id);
              for (const [a, id] of shadow) expect(pre.get(a) === id || !outside(a)).toBe(true);
              const now = mappedPages();
              for (const a of new Set([...preCover, ...now])) if (outside(a)) expect(now.has(a)).toBe(preCover.has(a));
              expected = undefined;
              expCover = undefined;
            }
            break;
          }
          const keep = Math.min(oldLen, newLen);
          if (r === addr) {
            // no move: shrink, grow in place, or no-op
            drop(addr + newLen, addr + oldLen);
            map(addr + oldLen, addr + newLen);
            break;
          }
          const moveOnly = (flags & MREMAP_FIXED) !== 0 && oldLen === newLen;
          const dontunmap = (flags & MREMAP_DONTUNMAP) !== 0;
          drop(addr + keep, addr + oldLen);
          for (let off = 0; off < newLen; off += P) {
            const src = addr + off;
            if (off < keep && preCover.has(src)) {
              // this page of the source moved; the destination page was unmapped first
              const id = pre.get(src);
              expected.delete(src);
              if (id === undefined) expected.delete(r + off);
              else expected.set(r + off, id);
              if (!dontunmap) expCover.delete(src);
              expCover.add(r + off);
            } else if (moveOnly && off < keep) {
              // a gap between source VMAs: the destination opposite it is left alone [R9c]
            } else {
              // newly mapped, empty part of the destination
              expected.delete(r + off);
              expCover.add(r + off);
            }
          }
          break;
        }
      }
      // --- invariants
      const vmas = mm.vmas;
      for (let i = 0; i < vmas.length; i++) {
        const v = vmas[i]!;
        expect(v.start % P).toBe(0);
        expect(v.end % P).toBe(0);
        expect(v.start).toBeLessThan(v.end);
        expect(v.start).toBeGreaterThanOrEqual(65536);
        expect(v.end).toBeLessThanOrEqual(TASK_SIZE);
        expect(v.prot).toBe(v.flags & 7);
        if (i > 0) expect(vmas[i - 1]!.end).toBeLessThanOrEqual(v.start);
        if (!(v.flags & VM_LOCKED) && !(v.flags & VM_GROWSDOWN) && i > 0) {
          // neighbours Linux would have merged never stay apart, except brk's fresh VMA (do_brk_flags never
          // merges forwards)
          const u = vmas[i - 1]!;
          const brkFresh = v.start === alignUp(mm.brkStart) || u.end === alignUp(mm.brkStart);
          if (
            !brkFresh &&
            u.end === v.start &&
            u.flags === v.flags &&
            !u.file &&
            !v.file &&
            u.shmemId === undefined &&
            v.shmemId === undefined
          ) {
            expect.fail(`unmerged compatible neighbours at ${v.start.toString(16)}\n${mm.formatMaps()}`);
          }
        }
      }
      for (const a of shadow.keys()) expect(mm.findVma(a), `page ${a.toString(16)} outside every VMA`).toBeDefined();
      if (expected) expect(sorted(shadow.entries())).toEqual(sorted(expected.entries()));
      if (expCover) expect(sorted(mappedPages())).toEqual(sorted(expCover));
    }
  }

  it('keeps VMAs sorted, disjoint, aligned, inside [mmap_min_addr, TASK_SIZE], and pages consistent with movePages/zapPages', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60, size: 'max' }), (ops) => run(ops)),
      { numRuns: 200 },
    );
  });
});
