import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Child-process contenders import the built package; build it once before any test file runs.
    globalSetup: ['test/global-setup.ts'],
  },
});
