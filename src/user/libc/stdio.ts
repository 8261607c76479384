// stdio.h's printf family (unbuffered stdout, as Phoenix's setbuf(stdout, NULL)) and the file
// helpers the programs use, always through the kernel (open/read/fstat/mmap/write). The
// formatting itself is printf.ts. Callers hold nothing: what allocates (the thread's stdout staging
// buffer, fileSize's struct stat, readWholeFile's buffer) takes the arena lock inside malloc/free, and
// no lock is held across a syscall here. The staging buffer (stdioBuf) is this thread's own.
import { EINVAL, ENOMEM, MAP_PRIVATE, O_RDONLY, PROT_READ, STAT_SIZE, STAT_ST_SIZE } from '../../uapi/abi.ts';
import { formatPrintf, type PrintfArg } from './printf.ts';
import { StringH } from './string.ts';

/** A file read into a malloc'd buffer (NUL-terminated; size excludes the NUL). */
export interface FileBuffer {
  va: number;
  size: number;
}

/** A file mmapped with mapFile. */
export interface FileMapping {
  va: number;
  size: number;
  fd: number;
}

export class Stdio extends StringH {
  // ================================================================================================
  // stdio.h: printf family (unbuffered stdout, as Phoenix's setbuf(stdout, NULL))
  // ================================================================================================

  /** sprintf into a JS string; %s takes a JS string or the VA of a C string. */
  format(fmt: string, ...args: PrintfArg[]): string {
    return formatPrintf(fmt, args, (va) => this.cstring(va));
  }

  /** printf(3) to stdout: formats, stages the bytes in emulated memory, sys.write(1, ...). */
  printf(fmt: string, ...args: PrintfArg[]): number {
    return this.dprintf(1, fmt, ...args);
  }

  /** dprintf(3). Returns the bytes written, or -1 (errno set). */
  dprintf(fd: number, fmt: string, ...args: PrintfArg[]): number {
    const bytes = Buffer.from(
      formatPrintf(fmt, args, (va) => this.cstring(va)),
      'latin1',
    );
    if (bytes.length === 0) return 0;
    if (this.stdioBuf === 0) {
      this.stdioBuf = this.malloc(this.stdioSize);
      if (this.stdioBuf === 0) return -1;
    }
    let done = 0;
    while (done < bytes.length) {
      const k = Math.min(bytes.length - done, this.stdioSize);
      this.mmu.write(this.stdioBuf, bytes, done, k);
      let off = 0;
      while (off < k) {
        const r = this.sys.write(fd, this.stdioBuf + off, k - off);
        if (r < 0) {
          this.errno = -r;
          return -1;
        }
        if (r === 0) {
          this.errno = EINVAL;
          return -1;
        }
        off += r;
      }
      done += k;
    }
    return bytes.length;
  }

  // ================================================================================================
  // files (always through the kernel)
  // ================================================================================================

  /** st_size of an open file via fstat into a malloc'd struct stat, or -errno. */
  fileSize(fd: number): number {
    const st = this.malloc(STAT_SIZE);
    if (st === 0) return -ENOMEM;
    const r = this.sys.fstat(fd, st);
    const size = r < 0 ? r : this.mmu.load64(st + STAT_ST_SIZE);
    this.free(st);
    return size;
  }

  /** open + fstat + read into a malloc'd, NUL-terminated buffer; -errno on failure. */
  readWholeFile(path: string): FileBuffer | number {
    const f = this.openSized(path);
    if (typeof f === 'number') return f;
    const { fd, size } = f;
    const buf = this.malloc(size + 1);
    if (buf === 0) {
      this.sys.close(fd);
      return -ENOMEM;
    }
    let got = 0;
    while (got < size) {
      const r = this.sys.read(fd, buf + got, Math.min(size - got, 1 << 20));
      if (r < 0) {
        this.free(buf);
        this.sys.close(fd);
        return r;
      }
      if (r === 0) break;
      got += r;
    }
    this.mmu.store8(buf + got, 0);
    this.sys.close(fd);
    return { va: buf, size: got };
  }

  /** open + fstat + mmap(prot, flags) of the whole file; the fd stays open. -errno on failure. */
  mapFile(path: string, prot = PROT_READ, flags = MAP_PRIVATE): FileMapping | number {
    const f = this.openSized(path);
    if (typeof f === 'number') return f;
    const { fd, size } = f;
    if (size === 0) return { va: 0, size: 0, fd };
    const va = this.sys.mmap(0, size, prot, flags, fd, 0);
    if (va < 0) {
      this.sys.close(fd);
      return va;
    }
    return { va, size, fd };
  }

  /** open(path, O_RDONLY) + fstat: the fd and the file's size, or -errno (the fd closed again). */
  private openSized(path: string): { fd: number; size: number } | number {
    const fd = this.sys.open(path, O_RDONLY);
    if (fd < 0) return fd;
    const size = this.fileSize(fd);
    if (size < 0) {
      this.sys.close(fd);
      return size;
    }
    return { fd, size };
  }

  /** write(2) until all n bytes are written; returns n or -errno. */
  writeAll(fd: number, va: number, n: number): number {
    let off = 0;
    while (off < n) {
      const r = this.sys.write(fd, va + off, Math.min(n - off, 1 << 20));
      if (r < 0) return r;
      if (r === 0) return -EINVAL;
      off += r;
    }
    return n;
  }
}
