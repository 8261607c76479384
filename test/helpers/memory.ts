// M driven as P drives it, one request at a time, with the reply's words captured (for tests of the
// memory component's handlers without a machine).
import { Memory } from '../../src/memory/server.ts';
import { Mailbox, type IncomingRequest } from '../../src/fabric/ibapi.ts';
import type { Env } from '../../src/kernel/env.ts';
import { kMboxBytes } from '../../src/kernel/layout.ts';

/** M driven as P drives it, one request at a time, with the reply's words captured. */
export function memoryUnderTest(): {
  mem: Memory;
  call: (
    pid: number,
    opcode: number,
    body?: unknown,
    o?: { vaddr?: number; shm?: number; flags?: number; page?: Uint8Array },
  ) => { status: number; shm: number; body: unknown; page: Uint8Array | undefined };
} {
  const env = { printk: () => {}, bugs: new Set(), sh: { geo: { nrSets: 512 } } } as unknown as Env;
  const mem = new Memory(env, undefined, 1 << 22);
  const call = (
    pid: number,
    opcode: number,
    body: unknown = undefined,
    o: { vaddr?: number; shm?: number; flags?: number; page?: Uint8Array } = {},
  ) => {
    const m = new Mailbox(new SharedArrayBuffer(kMboxBytes), 0);
    if (o.page) m.page.set(o.page);
    const req: IncomingRequest = {
      src: 0,
      opcode,
      pid,
      flags: o.flags ?? 0,
      vaddr: o.vaddr ?? 0,
      shm: o.shm ?? 0,
      mbox: m,
      hasPage: o.page !== undefined,
      bodyLen: 1,
      body: <T>() => body as T,
    };
    const out = { status: 1, shm: -1, body: undefined as unknown, page: undefined as Uint8Array | undefined };
    mem.handle(req, {
      reply: (status, _aux, b, page, shm = 0) => {
        Object.assign(out, { status, shm, body: b, page: page ? Uint8Array.from(page) : undefined });
      },
    });
    return out;
  };
  return { mem, call };
}
