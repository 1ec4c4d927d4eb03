import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * How a person runs the CLI from the repository (the root package.json's `dlock` script, which runs
 * bin/dlock.js); messages that suggest a command name it this way, so the command works as printed.
 */
export const DLOCK_COMMAND = 'pnpm dlock';

/** packages/lab, whether this code runs from dist/ or (under vitest) from src/. */
export const labPackageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The monorepo root (the directory holding pnpm-workspace.yaml), or the current directory outside one. */
export function workspaceRoot(): string {
  for (let dir = labPackageDir; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml'))) return dir;
    if (dirname(dir) === dir) return process.cwd();
  }
}

/** The lab's working state (`.dlock/` at the repo root): conformance reports, the playground's state file. */
export function stateDir(): string {
  return join(workspaceRoot(), '.dlock');
}

/**
 * The directory of an installed package as Node would find it from `fromDir` (node_modules lookup up
 * the tree), with symlinks resolved. Used instead of import resolution because a package whose dist
 * is missing cannot be resolved, and we still want to say so by name.
 */
export function findPackageDir(name: string, fromDir = labPackageDir): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return realpathSync(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

export interface PackageJson {
  name?: string;
  main?: string;
  exports?: unknown;
  bin?: string | Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

export function readPackageJson(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** The file `import(<package>)` loads (its exports map's "." import target, else main). */
export function packageEntry(dir: string): string {
  const pkg = readPackageJson(dir);
  let target = (pkg.exports as Record<string, unknown> | undefined)?.['.'] ?? pkg.exports;
  if (target && typeof target === 'object') {
    const conditions = target as Record<string, unknown>;
    target = conditions.import ?? conditions.default ?? conditions.node;
  }
  return join(dir, typeof target === 'string' ? target : (pkg.main ?? 'index.js'));
}
