import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    globalSetup: ['./test/global-setup.ts'],
    // The README snippets test writes test files under .snippets/ and runs them with a config of their
    // own; an interrupted run can leave them behind, and this suite must not collect them.
    exclude: [...configDefaults.exclude, '.snippets/**'],
  },
});
