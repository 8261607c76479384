// Fabric messages decode through their schemas (src/fabric/proto.ts) at the component boundary: a
// body that is not msgpack, or does not carry what its opcode carries, is a MalformedMessage naming
// the message and the field; M answers such a request -EINVAL and says why in its log.
import msgpack from 'msgpack-lite';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { MalformedMessage, Mailbox, type IncomingRequest, type ReplyWriter } from '../src/fabric/ibapi.ts';
import { P2M_EXECVE, P2M_MMAP } from '../src/fabric/opcodes.ts';
import { zAsReply, zMmapReq } from '../src/fabric/proto.ts';
import type { Env } from '../src/kernel/env.ts';
import { kMboxBytes } from '../src/kernel/layout.ts';
import { Memory } from '../src/memory/server.ts';
import { EINVAL } from '../src/uapi/abi.ts';

const mailbox = (): Mailbox => new Mailbox(new SharedArrayBuffer(kMboxBytes), 0);

describe('fabric bodies decode through their schemas', () => {
  it('a well-formed body decodes to its type, unknown keys dropped', () => {
    const m = mailbox();
    const len = m.writePayload({ addr: 0x7f0000000000, len: 4096, prot: 3, flags: 0x22, offset: 0, extra: 'x' });
    expect(m.readPayload(len, zMmapReq, 'P2M_MMAP request from ctx 0')).toEqual({
      addr: 0x7f0000000000,
      len: 4096,
      prot: 3,
      flags: 0x22,
      offset: 0,
    });
  });

  it('an anonymous P2M_MMAP as P sends it (file undefined, which msgpack carries as nil) decodes', () => {
    const m = mailbox();
    const len = m.writePayload({ addr: 0, len: 4096, prot: 3, flags: 0x22, offset: 0, file: undefined });
    expect(m.readPayload(len, zMmapReq, 'P2M_MMAP request from ctx 0').file ?? null).toBeNull();
  });

  it('a field of the wrong type is a MalformedMessage naming the message and the field', () => {
    const m = mailbox();
    const len = m.writePayload({ addr: '0x1000', len: 4096, prot: 3, flags: 0x22, offset: 0 });
    expect(() => m.readPayload(len, zMmapReq, 'P2M_MMAP request from ctx 0')).toThrow(MalformedMessage);
    expect(() => m.readPayload(len, zMmapReq, 'P2M_MMAP request from ctx 0')).toThrow(
      /^fabric: malformed P2M_MMAP request from ctx 0: addr: .*expected number/,
    );
  });

  it('a missing field in a reply names the path into it', () => {
    const m = mailbox();
    const len = m.writePayload({ ret: 0, ops: [{ op: 'move', old: 4096, len: 4096 }] });
    expect(() => m.readPayload(len, zAsReply, 'P2M_MREMAP reply from node 0')).toThrow(
      /^fabric: malformed P2M_MREMAP reply from node 0: ops\.0\.new: /,
    );
  });

  it('bytes that are not msgpack are a MalformedMessage, not a crash in the decoder', () => {
    const m = mailbox();
    m.payload.set([0xc1, 0xc1, 0xc1]); // 0xc1 is never used in msgpack
    expect(() => m.readPayload(3, zAsReply, 'P2M_BRK reply from node 0')).toThrow(
      /^fabric: malformed P2M_BRK reply from node 0: 3 bytes that are not msgpack/,
    );
  });
});

describe('M answers a malformed request -EINVAL and logs why', () => {
  const run = (opcode: number, body: unknown): { status: number; log: string[] } => {
    const log: string[] = [];
    const env = {
      printk: (_level: string, msg: string) => log.push(msg),
      bugs: new Set(),
      sh: { geo: { nrSets: 64 } },
    } as unknown as Env;
    const mem = new Memory(env, undefined, 1 << 20);
    const bytes = msgpack.encode(body);
    const req: IncomingRequest = {
      src: 0,
      opcode,
      pid: 7,
      flags: 0,
      vaddr: 0,
      shm: 0,
      mbox: mailbox(),
      hasPage: false,
      bodyLen: bytes.length,
      body: <T>(schema: z.ZodType<T>): T => {
        const r = schema.safeParse(msgpack.decode(bytes));
        if (!r.success) throw new MalformedMessage('P2M request from ctx 0', r.error.issues[0]?.path.join('.') ?? '');
        return r.data;
      },
    };
    let status = 1;
    const out: ReplyWriter = {
      reply: (s) => {
        status = s;
      },
    };
    mem.handle(req, out);
    return { status, log };
  };

  it('P2M_EXECVE with a comm that is not a string', () => {
    const r = run(P2M_EXECVE, { comm: 42 });
    expect(r.status).toBe(-EINVAL);
    expect(r.log).toEqual(['memory: fabric: malformed P2M request from ctx 0: comm']);
  });

  it('P2M_MMAP on a live process with a length that is not a number; a good one then succeeds', () => {
    const log: string[] = [];
    const env = {
      printk: (_level: string, msg: string) => log.push(msg),
      bugs: new Set(),
      sh: { geo: { nrSets: 64 } },
    } as unknown as Env;
    const mem = new Memory(env, undefined, 1 << 20);
    const send = (opcode: number, body: unknown): number => {
      const bytes = msgpack.encode(body);
      const m = mailbox();
      m.payload.set(bytes);
      let status = 1;
      mem.handle(
        {
          src: 0,
          opcode,
          pid: 7,
          flags: 0,
          vaddr: 0,
          shm: 0,
          mbox: m,
          hasPage: false,
          bodyLen: bytes.length,
          body: (schema) => m.readPayload(bytes.length, schema, 'P2M request from ctx 0'),
        },
        {
          reply: (s) => {
            status = s;
          },
        },
      );
      return status;
    };
    expect(send(P2M_EXECVE, { comm: 'a.out' })).toBe(0);
    expect(send(P2M_MMAP, { addr: 0, len: 'big', prot: 3, flags: 0x22, offset: 0 })).toBe(-EINVAL);
    expect(log.filter((l) => l.includes('malformed'))).toEqual([
      expect.stringMatching(/^memory: fabric: malformed P2M request from ctx 0: len: /),
    ]);
    expect(send(P2M_MMAP, { addr: 0, len: 4096, prot: 3, flags: 0x22, offset: 0 })).toBe(0);
  });
});
