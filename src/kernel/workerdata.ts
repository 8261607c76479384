// What the host hands every worker at start (structured-cloned; the SharedArrayBuffers are shared).
// It only declares the message shapes and names the host port: it reads or writes no shared word and
// takes no lock (each region's guard is in layout.ts). hostPort() is called from inside a worker only.
import { parentPort, type MessagePort } from 'node:worker_threads';
import type { MachineConfig } from './config.ts';
import type { SharedBuffers } from './layout.ts';

export interface WorkerInit {
  bufs: SharedBuffers;
  config: MachineConfig;
  /** performance.timeOrigin + performance.now() of the host at boot: the dmesg clock's zero */
  bootEpochMs: number;
  /** S only: in-memory files placed on S at boot (generated inputs), path -> bytes */
  memFiles?: Record<string, Uint8Array>;
}

/** Messages workers post to the host (besides the kernel log, which goes through the printk ring). */
export type WorkerMsg =
  | { type: 'online'; who: string }
  /** bytes a user program wrote to fd 1 or 2 (S forwards its console) */
  | { type: 'console'; fd: number; pid: number; data: Uint8Array }
  /** final content of a file the workload created or wrote on S (sent when it is closed and at shutdown) */
  | { type: 'file'; path: string; data: Uint8Array }
  | { type: 'fatal'; who: string; message: string };

/** The BroadcastChannel on which tasks send what user programs write to fd 1 and 2 (P's console). */
export const consoleChannel = (bootEpochMs: number): string => `splitkern-console-${bootEpochMs}`;

/** The port to the host; a component's main runs only in a worker the host started. */
export function hostPort(): MessagePort {
  if (!parentPort) throw new Error('a component worker must be started by the host (no parentPort)');
  return parentPort;
}
