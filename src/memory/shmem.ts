// M's shared pages (mm/shmem.c and the page cache of MAP_SHARED file mappings, as far as M needs
// them): one object per shmem segment (a MAP_SHARED|MAP_ANONYMOUS mapping and everything forked or
// mremap-duplicated from it) and one per file mapped MAP_SHARED. An object owns its frames (one
// Dram reference each) by page offset; every mapping of it, in any process, at any address, reads
// and writes those frames, never a copy.
//
// Each page carries a tag, unique for the life of the run: P caches a shared page in a pcache line
// marked with the tag, and a fill of another alias of the page finds that line by it (pcache/fault.ts)
// instead of filling a second line from M; write-backs of shared lines name the page by tag.
//
// Worker-local state only: the registry lives on M's thread and is used one request at a time
// (server.ts); no shared memory, no lock.
import type { Dram } from './dram.ts';

/** What identifies a shared object: a shmem segment, or a file mapped MAP_SHARED. */
export type ShmKey = `shm:${number}` | `file:${string}`;

interface ShmPage {
  frame: number;
  tag: number;
}

/** Tags travel in an Int32 mailbox word and an Int32 line word: 1 .. 2^31 - 1. */
const kMaxTag = 2 ** 31 - 1;

export class ShmemRegistry {
  private readonly objects = new Map<ShmKey, Map<number, ShmPage>>();
  private readonly byTag = new Map<number, number>();
  private nextTag = 1;
  private nextId = 1;

  constructor(private readonly dram: Dram) {}

  /** A new shmem segment's identity (shmem_zero_setup), unique across processes. */
  newShmemId(): number {
    return this.nextId++;
  }

  get size(): number {
    return this.objects.size;
  }

  /** The page at `pgoff` of `key` if it exists. */
  lookup(key: ShmKey, pgoff: number): ShmPage | undefined {
    return this.objects.get(key)?.get(pgoff);
  }

  /**
   * The page at `pgoff` of `key`, created on first touch from a zeroed frame (the caller fills a
   * file's bytes). Returns undefined when M's DRAM is exhausted.
   */
  create(key: ShmKey, pgoff: number): ShmPage | undefined {
    const frame = this.dram.alloc();
    if (frame < 0) return undefined;
    if (this.nextTag > kMaxTag) throw new Error('memory: shared-page tags exhausted (2^31 - 1 per run)');
    const page: ShmPage = { frame, tag: this.nextTag++ };
    let obj = this.objects.get(key);
    if (!obj) this.objects.set(key, (obj = new Map<number, ShmPage>()));
    obj.set(pgoff, page);
    this.byTag.set(page.tag, frame);
    return page;
  }

  /** Forget a page created for a fill that failed (the file read failed). */
  drop(key: ShmKey, pgoff: number): void {
    const obj = this.objects.get(key);
    const page = obj?.get(pgoff);
    if (!obj || !page) return;
    obj.delete(pgoff);
    this.byTag.delete(page.tag);
    this.dram.release(page.frame);
    if (obj.size === 0) this.objects.delete(key);
  }

  /** The frame of a tagged page, or undefined once its object is gone. */
  frameOfTag(tag: number): number | undefined {
    return this.byTag.get(tag);
  }

  /**
   * Free every object no mapping names any more (shmem's last iput; a file's page cache when its
   * last shared mapping goes: splitkern keeps no page cache beyond the mappings). Returns the pages
   * freed.
   */
  collect(live: ReadonlySet<ShmKey>): number {
    let freed = 0;
    for (const [key, obj] of this.objects) {
      if (live.has(key)) continue;
      for (const page of obj.values()) {
        this.byTag.delete(page.tag);
        this.dram.release(page.frame);
        freed++;
      }
      this.objects.delete(key);
    }
    return freed;
  }
}
