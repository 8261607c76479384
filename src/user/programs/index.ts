// The programs a CPU can run, by the name the CLI and the host use. A constant table: no state, no shared
// memory, no lock (workers/cpu.cjs hands it to each CPU).
import type { Program } from '../../uapi/program.ts';
import { dpkgStatus } from './dpkg_status.ts';
import { forkStress } from './fork_stress.ts';
import { mremapStress } from './mremap_stress.ts';
import { pthreadStress } from './pthread_stress.ts';
import { scriptProgram } from './script.ts';
import { wordCount } from './word_count.ts';

export const programs: Record<string, Program> = {
  word_count: wordCount,
  'dpkg-status': dpkgStatus,
  script: scriptProgram,
  'mremap-stress': mremapStress,
  'pthread-stress': pthreadStress,
  'fork-stress': forkStress,
};
