import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    // Each file runs its own ZooKeeper JVMs; on a small shared machine, one file at a time keeps timing honest.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 90_000,
    globalSetup: ['./test/global-setup.ts'],
  },
});
