// string.h (memcpy, memmove, memset, memcmp, strlen, strcmp, strcpy, strdup) and stdlib.h's qsort
// over emulated memory, plus the C-string helpers the programs use. Strings are byte strings: JS
// strings crossing the boundary (cstring/putCString) use latin1, one char per byte, so byte order
// equals JS code-unit order. Copies go through this thread's bounce buffers (base.ts). No lock is taken
// but the arena lock inside malloc (strdup, newCString); callers hold nothing.
import { PAGE_SIZE } from '../../uapi/abi.ts';
import { BOUNCE } from './base.ts';
import { Malloc } from './malloc.ts';
import { at } from '../../lib/at.ts';

export class StringH extends Malloc {
  // ================================================================================================
  // string.h
  // ================================================================================================

  /** memcpy(3): bulk copy through a bounce buffer (one translation per page). Returns dst. */
  memcpy(dst: number, src: number, n: number): number {
    const b = this.bounce;
    for (let o = 0; o < n;) {
      const k = Math.min(n - o, BOUNCE);
      this.mmu.read(src + o, b, 0, k);
      this.mmu.write(dst + o, b, 0, k);
      o += k;
    }
    return dst;
  }

  /** memmove(3): correct for overlapping ranges. Returns dst. */
  memmove(dst: number, src: number, n: number): number {
    if (dst <= src || dst >= src + n) return this.memcpy(dst, src, n);
    const b = this.bounce;
    for (let end = n; end > 0;) {
      const k = Math.min(end, BOUNCE);
      const s = end - k;
      this.mmu.read(src + s, b, 0, k);
      this.mmu.write(dst + s, b, 0, k);
      end = s;
    }
    return dst;
  }

  /** memset(3). Returns dst. */
  memset(dst: number, c: number, n: number): number {
    if (n > 0) this.mmu.fill(dst, c & 0xff, n);
    return dst;
  }

  /** memcmp(3): <0, 0, >0 by the first differing unsigned byte. */
  memcmp(a: number, b: number, n: number): number {
    const x = this.bounce;
    const y = this.bounce2;
    for (let o = 0; o < n;) {
      const k = Math.min(n - o, BOUNCE);
      this.mmu.read(a + o, x, 0, k);
      this.mmu.read(b + o, y, 0, k);
      for (let i = 0; i < k; i++) if (x[i] !== y[i]) return (x[i] ?? 0) - (y[i] ?? 0);
      o += k;
    }
    return 0;
  }

  /** strlen(3): reads in growing pieces that never cross past the page holding the terminator. */
  strlen(va: number): number {
    const b = this.bounce;
    let n = 0;
    let step = 32;
    for (;;) {
      const a = va + n;
      const k = Math.min(step, PAGE_SIZE - (a % PAGE_SIZE));
      this.mmu.read(a, b, 0, k);
      const z = b.subarray(0, k).indexOf(0);
      if (z >= 0) return n + z;
      n += k;
      if (step < PAGE_SIZE) step *= 2;
    }
  }

  /** strcmp(3) on two emulated C strings (unsigned bytes), page-safe like glibc's word-at-a-time. */
  strcmp(a: number, b: number): number {
    const x = this.bounce;
    const y = this.bounce2;
    let n = 0;
    let step = 16;
    for (;;) {
      const pa = a + n;
      const pb = b + n;
      const k = Math.min(step, PAGE_SIZE - (pa % PAGE_SIZE), PAGE_SIZE - (pb % PAGE_SIZE));
      this.mmu.read(pa, x, 0, k);
      this.mmu.read(pb, y, 0, k);
      for (let i = 0; i < k; i++) {
        const c = x[i] ?? 0;
        const d = y[i] ?? 0;
        if (c !== d) return c - d;
        if (c === 0) return 0;
      }
      n += k;
      if (step < PAGE_SIZE) step *= 2;
    }
  }

  /** strcmp of the emulated C string at va against `len` bytes of a JS array followed by a NUL. */
  strcmpBytes(va: number, bytes: Uint8Array, len = bytes.length): number {
    const x = this.bounce;
    let n = 0;
    for (;;) {
      const pa = va + n;
      const k = Math.min(len + 1 - n, PAGE_SIZE - (pa % PAGE_SIZE));
      this.mmu.read(pa, x, 0, k);
      for (let i = 0; i < k; i++) {
        const c = x[i] ?? 0;
        const d = n + i < len ? (bytes[n + i] ?? 0) : 0;
        if (c !== d) return c - d;
        if (c === 0) return 0;
      }
      n += k;
    }
  }

  /** strcpy(3). Returns dst. */
  strcpy(dst: number, src: number): number {
    return this.memcpy(dst, src, this.strlen(src) + 1);
  }

  /** strdup(3): 0 on ENOMEM. */
  strdup(src: number): number {
    const n = this.strlen(src) + 1;
    const p = this.malloc(n);
    return p === 0 ? 0 : this.memcpy(p, src, n);
  }

  /** The bytes of the NUL-terminated string at va (without the NUL). */
  cstringBytes(va: number): Uint8Array {
    const n = this.strlen(va);
    const out = new Uint8Array(n);
    if (n > 0) this.mmu.read(va, out);
    return out;
  }

  /** The NUL-terminated string at va as a JS string (latin1: one char per byte). */
  cstring(va: number): string {
    return Buffer.from(this.cstringBytes(va)).toString('latin1');
  }

  /** Writes s (latin1) and a NUL at va; returns the number of bytes written excluding the NUL. */
  putCString(va: number, s: string): number {
    const b = Buffer.from(s, 'latin1');
    const out = new Uint8Array(b.length + 1);
    out.set(b);
    this.mmu.write(va, out);
    return b.length;
  }

  /** malloc + putCString; 0 on ENOMEM. */
  newCString(s: string): number {
    const p = this.malloc(Buffer.byteLength(s, 'latin1') + 1);
    if (p !== 0) this.putCString(p, s);
    return p;
  }

  // ================================================================================================
  // stdlib.h: qsort
  // ================================================================================================

  /**
   * qsort(3): sorts n elements of `size` bytes at base; cmp gets the VAs of two elements. Like
   * glibc's indirect msort it is stable: it sorts the element indices with cmp (the elements stay in
   * place meanwhile), then permutes the array with bulk reads and writes.
   */
  qsort(base: number, n: number, size: number, cmp: (a: number, b: number) => number): void {
    if (n < 2 || size <= 0) return;
    const order = new Array<number>(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((i, j) => cmp(base + i * size, base + j * size));
    let moved = false;
    for (let i = 0; i < n; i++)
      if (order[i] !== i) {
        moved = true;
        break;
      }
    if (!moved) return;
    const total = n * size;
    const src = new Uint8Array(total);
    this.mmu.read(base, src);
    const dst = new Uint8Array(total);
    for (let i = 0; i < n; i++) {
      const s = at(order, i) * size;
      dst.set(src.subarray(s, s + size), i * size);
    }
    this.mmu.write(base, dst);
  }
}
