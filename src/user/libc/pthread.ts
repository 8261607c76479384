// pthread.h: threads are the kernel's (clone/join); libc adds nothing but the names. No state and no
// lock: each call is one syscall by the calling thread, which holds nothing (not the arena lock).
import { Stdio } from './stdio.ts';

export class Pthread extends Stdio {
  // ================================================================================================
  // pthread
  // ================================================================================================

  /** pthread_create: starts the program's thread entry `entry` with arg; returns its tid or -errno. */
  pthreadCreate(entry: string, arg: number): number {
    return this.sys.clone(entry, arg);
  }

  /** pthread_join: the thread's exit value, or -errno. */
  pthreadJoin(tid: number): number {
    return this.sys.join(tid);
  }
}
