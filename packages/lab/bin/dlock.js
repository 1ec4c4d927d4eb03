#!/usr/bin/env node
// The `dlock` command. This launcher is committed (not built) so that `pnpm install` can link it as a
// bin before the first build; it loads the built CLI, or says how to build it.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error(
    'dlock: the lab is not built yet. Run `pnpm build` (or `bash scripts/compare.sh`), then try again.',
  );
  process.exit(3);
}
await import(cli.href);
