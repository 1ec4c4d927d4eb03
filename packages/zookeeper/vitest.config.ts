import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    // test/churn.test.ts measures the heap after a full collection.
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
    // Each file runs its own ZooKeeper JVMs; on a small shared machine, one file at a time keeps timing honest.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 90_000,
    globalSetup: ['./test/global-setup.ts'],
  },
});
