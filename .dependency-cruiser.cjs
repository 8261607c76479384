// The house's layers (README "Code map"), bottom to top; a file may import only its own layer and the
// layers below it. `npm run lint` runs this (depcruise), so an upward import fails CI.
//   lib        pure helpers (text, hex)                      imports nothing of ours
//   uapi       the ABI: errno, flags, the Program interface   lib
//   user       libc and the user programs (beside the ABI)   lib, uapi
//   kernel     the common layer: env, printk, sync, layout…  lib, uapi
//   fabric     the simulated InfiniBand (FIT ibapi)          lib, uapi, kernel
//   processor, memory, storage: the components              lib, uapi, kernel, fabric (never each other)
//   racelab    bug catalogue, presets, repro, soak           everything below except user programs
//   host       boot, CLI, summary, the host's oracles        everything
// workers/ are entry points only: they wire a component to what it is handed (the CPU's program
// registry) and may import any layer.
'use strict';
const layer = (name, allowed) => ({
  name: `${name}-imports-downward-only`,
  comment: `src/${name}/ may import only ${allowed.join(', ')} (README "Code map")`,
  severity: 'error',
  from: { path: `^src/${name}/` },
  to: { path: '^src/', pathNot: `^src/(${[name, ...allowed].join('|')})/` },
});
module.exports = {
  forbidden: [
    layer('lib', []),
    layer('uapi', ['lib']),
    layer('user', ['lib', 'uapi']),
    layer('kernel', ['lib', 'uapi']),
    layer('fabric', ['lib', 'uapi', 'kernel']),
    layer('processor', ['lib', 'uapi', 'kernel', 'fabric']),
    layer('memory', ['lib', 'uapi', 'kernel', 'fabric']),
    layer('storage', ['lib', 'uapi', 'kernel', 'fabric']),
    layer('racelab', ['lib', 'uapi', 'kernel', 'fabric', 'processor', 'memory', 'storage']),
    {
      name: 'no-folder-outside-the-layers',
      comment: 'every file of src/ lives in one of the layers named in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(lib|uapi|user|kernel|fabric|processor|memory|storage|racelab|host)/' },
      to: {},
    },
    {
      name: 'src-never-imports-tests',
      severity: 'error',
      from: { path: '^(src|workers|bin)/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-circular',
      comment: 'a cycle hides which file is the lower layer',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.cjs', '.mjs', '.js'] },
  },
};
