import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The smoke test runs the built CLI and contender script, so the lab is built before any test. */
export default function buildLab(): void {
  const labDir = join(dirname(fileURLToPath(import.meta.url)), '..');
  const tsc = createRequire(join(labDir, 'package.json')).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: labDir, stdio: 'inherit' });
}
