import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each file runs in its own child process, so `stopAll()` in one file never touches another's servers.
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
