// execve of another program (processor/syscalls.ts execve, M's handle_p2m_execve, the task starting
// the new main, the host's kThreadExec handshake). The oracle of the machine test is pthread-stress's
// own verdict in the exec'd child: its counters live in the first pages the new image maps, at the
// addresses the old image's first mappings had, so a line of the old image left mapped would show
// through as a wrong count; and its threads are started by the host, which must know the new program.
import { describe, expect, it } from 'vitest';
import { P2M_EXECVE, P2M_MMAP, P2M_PCACHE_FLUSH, P2M_PCACHE_MISS } from '../src/fabric/opcodes.ts';
import { MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../src/uapi/abi.ts';
import { runJson } from './helpers/cli.ts';
import { memoryUnderTest } from './helpers/memory.ts';

const RW = PROT_READ | PROT_WRITE;

describe("M's execve", () => {
  it('a second P2M_EXECVE of a process drops the old mm: its VMAs are returned, its pages and shared objects freed', () => {
    const { mem, call } = memoryUnderTest();
    expect(call(1, P2M_EXECVE, { comm: 'old' }).body).toMatchObject({ oldVmas: [] });
    const priv = (
      call(1, P2M_MMAP, { addr: 0, len: PAGE_SIZE, prot: RW, flags: MAP_PRIVATE | MAP_ANONYMOUS, offset: 0 }).body as {
        ret: number;
      }
    ).ret;
    const shm = (
      call(1, P2M_MMAP, { addr: 0, len: PAGE_SIZE, prot: RW, flags: MAP_SHARED | MAP_ANONYMOUS, offset: 0 }).body as {
        ret: number;
      }
    ).ret;
    const page = new Uint8Array(PAGE_SIZE).fill(5);
    expect(call(1, P2M_PCACHE_FLUSH, undefined, { vaddr: priv, page }).status).toBe(0);
    const tag = call(1, P2M_PCACHE_MISS, undefined, { vaddr: shm }).shm;
    expect(mem.dram.used).toBe(2);
    const rep = call(1, P2M_EXECVE, { comm: 'new', argv: ['new', '-x'] });
    expect(rep.status).toBe(0);
    const old = (rep.body as { oldVmas: Array<[number, number]> }).oldVmas;
    expect(old).toContainEqual([priv, priv + PAGE_SIZE]);
    expect(old).toContainEqual([shm, shm + PAGE_SIZE]);
    expect(mem.dram.used).toBe(0);
    expect(mem.shmem.frameOfTag(tag)).toBeUndefined();
    // the new image starts empty: the old address is no mapping, a fresh mapping reads zeros
    expect(call(1, P2M_PCACHE_MISS, undefined, { vaddr: priv }).status).toBeLessThan(0);
    const fresh = (
      call(1, P2M_MMAP, { addr: 0, len: PAGE_SIZE, prot: RW, flags: MAP_PRIVATE | MAP_ANONYMOUS, offset: 0 }).body as {
        ret: number;
      }
    ).ret;
    expect(fresh).toBe(priv); // the same first address as the old image's
    expect(call(1, P2M_PCACHE_MISS, undefined, { vaddr: fresh }).page?.every((b) => b === 0)).toBe(true);
  });
});

describe('execve on the machine', () => {
  it('fork-stress children exec pthread-stress, whose threads run the new program and whose counts are exact', async () => {
    const { r, j } = await runJson(
      ['run', 'fork-stress', '--iterations', '24', '--procs', '3', '--check', 'syscall'],
      {},
      240_000,
    );
    expect(j.verification).toMatchObject({ ok: true, forks: 24, reaped: 24, childFailures: 0, execs: 3 });
    // -ENOENT, -E2BIG and -EBUSY (with a second thread) all answered as Linux would
    expect(j.verification.selfChecks).toEqual([]);
    expect(j.violationCount).toBe(0);
    expect(r.code).toBe(0);
    // three failing calls of the root and three that became pthread-stress
    expect(j.stats.syscalls.execve).toBe(6);
    // the root's idle thread, then two pthreads in each exec'd image, started with the new program
    expect(j.stats.syscalls.clone).toBe(1 + 3 * 2);
  }, 300_000);
});
