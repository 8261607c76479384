// M's DRAM (the memory component's frames for user pages): allocated on first touch in 16 MiB chunks,
// each frame reference-counted. Worker-local state only: it lives on M's thread and is used one
// request at a time (server.ts); no shared memory, no lock.
import { PAGE_SIZE } from '../uapi/abi.ts';

const kChunkFrames = 4096; // DRAM is allocated in 16 MiB chunks as it is used

/**
 * M's DRAM: frames of 4 KiB, allocated on first touch. A frame is counted once per page table that
 * maps it (page_count): fork shares every page of the parent with the child (copy_page_range), and
 * the last release recycles it.
 */
export class Dram {
  private readonly chunks: Uint8Array[] = [];
  private readonly free: number[] = [];
  private readonly refs: Uint32Array;
  private next = 0;
  readonly maxFrames: number;
  constructor(bytes: number) {
    this.maxFrames = Math.floor(bytes / PAGE_SIZE);
    this.refs = new Uint32Array(this.maxFrames);
  }
  get used(): number {
    return this.next - this.free.length;
  }
  alloc(): number {
    const f = this.free.pop();
    if (f !== undefined) {
      this.page(f).fill(0);
      this.refs[f] = 1;
      return f;
    }
    if (this.next >= this.maxFrames) return -1;
    const n = this.next++;
    if (n % kChunkFrames === 0)
      this.chunks.push(new Uint8Array(Math.min(kChunkFrames, this.maxFrames - n) * PAGE_SIZE));
    this.refs[n] = 1;
    return n;
  }
  /** get_page: one more page table maps frame f */
  get(f: number): number {
    this.refs[f] = (this.refs[f] ?? 0) + 1;
    return f;
  }
  /** page_count */
  count(f: number): number {
    return this.refs[f] ?? 0;
  }
  /** put_page: the frame goes back to the free list with its last reference */
  release(f: number): void {
    const n = this.count(f);
    if (n === 0) throw new Error(`memory: frame ${f} released with no reference`);
    this.refs[f] = n - 1;
    if (n === 1) this.free.push(f);
  }
  page(f: number): Uint8Array {
    const c = this.chunks[Math.floor(f / kChunkFrames)];
    if (c === undefined) throw new RangeError(`memory: frame ${f} was never allocated`);
    const o = (f % kChunkFrames) * PAGE_SIZE;
    return c.subarray(o, o + PAGE_SIZE);
  }
}
