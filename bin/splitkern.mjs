#!/usr/bin/env node
// splitkern's entry point: run the TypeScript sources through tsx (registered in this thread; each
// worker registers it again in its own bootstrap, see workers/tsx-boot.cjs).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/host/cli.ts');
let code;
try {
  code = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`splitkern: internal error: ${e && e.stack ? e.stack : e}\n`);
  code = 3;
}
process.exitCode = code;
// Workers are gone by now (Machine.shutdown); anything still holding the event loop is a bug we
// should not hang on.
setTimeout(() => process.exit(code), 1000).unref();
