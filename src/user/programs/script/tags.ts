// Self-describing page tags: the page format `fill` writes and `check` verifies, shared with
// mremap-stress (a page that holds another region's or another index's tag is a misplaced page). Pure
// encoders and decoders (no state, no lock); writeTaggedPage stores through the caller's MMU into a
// page the caller owns.
import { PAGE_SIZE } from '../../../uapi/abi.ts';
import type { Mmu } from '../../../uapi/program.ts';
import { hex } from '../../../lib/text.ts';

// Page patterns: a 32-byte self-describing tag at the start of every page, the rest derived from it.
//
//   +0  u32 magic "SKPG"      +4  u32 region id (FNV-1a of the region name)   +8  u32 page index in region
//   +12 u32 generation        +16 u32 writer (scenario thread index)
//   +20 u32, +24 u32          page number (va / 4096) where it was written, low and high halves
//   +28 u32 FNV-1a of bytes 0..27; bytes 32.. are an xorshift32 stream seeded by it.
// A page moved by mremap keeps its tag, so the tag says where its content came from; a page that holds
// another region's or another index's tag is a misplaced page.

export const kTagMagic = 0x47504b53; // bytes 53 4b 50 47 = "SKPG"
export const kTagBytes = 32;

export interface PageTag {
  /** region id: regionId(name) */
  region: number;
  /** page index within the region */
  page: number;
  generation: number;
  /** scenario thread index of the writer */
  thread: number;
}

export type PageContent =
  | { kind: 'tag'; tag: PageTag; writtenAt: number; intact: boolean; firstBadOffset?: number }
  | { kind: 'zeros' }
  | { kind: 'byte'; byte: number }
  | { kind: 'garbage'; firstBytes: string };

export function fnv1a(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ (bytes[i] ?? 0), 0x01000193) >>> 0;
  return h;
}

/** The id stored in tags for a region name. */
export const regionId = (name: string): number => fnv1a(new TextEncoder().encode(name));

/** Fills bytes [kTagBytes, end) of a page from its tag checksum. (32-bit ops on data words, not addresses.) */
export function tagBody(seed: number, out: DataView, end: number): void {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let o = kTagBytes; o + 4 <= end; o += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out.setUint32(o, x, true);
  }
}

/** The 4 KiB content of a tagged page written at `writtenAt`. */
export function encodeTaggedPage(tag: PageTag, writtenAt: number): Uint8Array {
  const b = new Uint8Array(PAGE_SIZE);
  const dv = new DataView(b.buffer);
  const vpn = Math.floor(writtenAt / PAGE_SIZE);
  dv.setUint32(0, kTagMagic, true);
  dv.setUint32(4, tag.region >>> 0, true);
  dv.setUint32(8, tag.page >>> 0, true);
  dv.setUint32(12, tag.generation >>> 0, true);
  dv.setUint32(16, tag.thread >>> 0, true);
  dv.setUint32(20, vpn % 2 ** 32, true);
  dv.setUint32(24, Math.floor(vpn / 2 ** 32), true);
  const sum = fnv1a(b, 0, 28);
  dv.setUint32(28, sum, true);
  tagBody(sum, dv, PAGE_SIZE);
  return b;
}

/** Write one tagged page at page-aligned `va` (records `va` in the tag as where it was written). */
export function writeTaggedPage(mmu: Mmu, va: number, tag: PageTag): void {
  mmu.write(va, encodeTaggedPage(tag, va));
}

/** Classify the content of a page (or of its first bytes; the body is checked as far as given). */
export function decodePageTag(bytes: Uint8Array): PageContent {
  if (bytes.length >= kTagBytes) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) === kTagMagic && dv.getUint32(28, true) === fnv1a(bytes, 0, 28)) {
      const tag: PageTag = {
        region: dv.getUint32(4, true),
        page: dv.getUint32(8, true),
        generation: dv.getUint32(12, true),
        thread: dv.getUint32(16, true),
      };
      const writtenAt = (dv.getUint32(20, true) + dv.getUint32(24, true) * 2 ** 32) * PAGE_SIZE;
      const want = new Uint8Array(bytes.length);
      tagBody(dv.getUint32(28, true), new DataView(want.buffer), bytes.length);
      for (let o = kTagBytes; o + 4 <= bytes.length; o++) {
        if (bytes[o] !== want[o]) return { kind: 'tag', tag, writtenAt, intact: false, firstBadOffset: o };
      }
      return { kind: 'tag', tag, writtenAt, intact: true };
    }
  }
  const b0 = bytes[0] ?? 0;
  if (bytes.every((x) => x === b0)) return b0 === 0 ? { kind: 'zeros' } : { kind: 'byte', byte: b0 };
  const firstBytes = Array.from(bytes.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ');
  return { kind: 'garbage', firstBytes };
}

/** Human description of a page's content, naming regions by the names a scenario gave them. */
export function describePageContent(c: PageContent, regionNames?: ReadonlyMap<number, string>): string {
  switch (c.kind) {
    case 'zeros':
      return 'zeros';
    case 'byte':
      return `bytes ${hex(c.byte)} throughout`;
    case 'garbage':
      return `garbage (no valid tag; first bytes ${c.firstBytes})`;
    case 'tag': {
      const name = regionNames?.get(c.tag.region);
      const region = name !== undefined ? `region ${name}` : `region #${hex(c.tag.region)}`;
      const s =
        `${region} page ${c.tag.page} generation ${c.tag.generation} written by thread ${c.tag.thread}` +
        ` at ${hex(c.writtenAt)}`;
      return c.intact
        ? s
        : `${s}, but its bytes from offset ${hex(c.firstBadOffset ?? 0)} do not match its tag` +
            ' (torn or overwritten)';
    }
  }
}
