import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    benchmark: { include: ['test/**/*.bench.ts'] },
    // End-to-end tests boot worker pools: run files one at a time on 2 cores, tests inside them serially.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
