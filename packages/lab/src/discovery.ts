import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  type BackendConnectOptions,
  type BackendDescriptor,
  type Capabilities,
  type LockProvider,
  MemoryLockStore,
  UnsupportedError,
  createMemoryProvider,
} from '@dlock/core';
import { findPackageDir, labPackageDir, packageEntry, readPackageJson } from './paths.js';
import type { BackendPlacement, ServerKind } from './results.js';

/** A backend as the lab sees it: a discovered package, core's memory provider, or the teaching baseline. */
export interface LabBackend {
  readonly name: string;
  readonly origin: 'package' | 'reference' | 'baseline';
  readonly packageName: string | null;
  readonly placement: BackendPlacement;
  readonly serverCount: number;
  createProvider(endpoints: readonly string[], options?: BackendConnectOptions): Promise<LockProvider>;
  /** What a contender process imports to find `dlockBackend`; null when the backend cannot cross processes. */
  readonly contenderModule: string | null;
  /** The vitest files that run the conformance kit on this backend, and the package they belong to. */
  readonly conformance: { readonly packageDir: string; readonly testFiles: string[] } | null;
  /** When the code under test was built (ms since epoch): an older conformance report is stale. */
  readonly builtAtMs: number | null;
  /** Expiry decided by comparing client wall clocks, so client clock skew breaks it (the baseline only). */
  readonly wallClockExpiry: boolean;
  /**
   * Only a lock, by design: the lab tries no semaphore or read-write lock on it (the teaching
   * baseline). A package without them is found out when it is connected, and skipped with a note.
   */
  readonly locksOnly: boolean;
}

/** What a provider declares for each of its primitives; null for a primitive it does not have. */
export interface DeclaredCapabilities {
  readonly lock: Capabilities;
  readonly semaphore: Capabilities | null;
  readonly readWrite: Capabilities | null;
  /**
   * Why a primitive is missing: the UnsupportedError message its provider threw (found out by asking,
   * never from a list of backends). Absent for a primitive it has, and for a locks-only baseline.
   */
  readonly unsupported: { readonly semaphore?: string; readonly readWrite?: string };
}

/** Reads every primitive's capabilities (creating a semaphore or read-write lock object sends nothing). */
export function declaredCapabilities(backend: LabBackend, provider: LockProvider): DeclaredCapabilities {
  const unsupported: { semaphore?: string; readWrite?: string } = {};
  const probe = (
    primitive: 'semaphore' | 'readWrite',
    make: () => { readonly capabilities: Capabilities },
  ): Capabilities | null => {
    if (backend.locksOnly) return null;
    try {
      return make().capabilities;
    } catch (error) {
      if (!(error instanceof UnsupportedError)) throw error;
      unsupported[primitive] = error.message;
      return null;
    }
  };
  return {
    lock: provider.capabilities,
    semaphore: probe('semaphore', () => provider.semaphore('lab-capabilities', { limit: 1 })),
    readWrite: probe('readWrite', () => provider.readWriteLock('lab-capabilities')),
    unsupported,
  };
}

export interface Discovery {
  readonly backends: LabBackend[];
  readonly notes: string[];
}

/** Workspace packages the lab itself is built on; none of them is a backend. */
const TOOLING_PACKAGES = new Set(['@dlock/core', '@dlock/conformance', '@dlock/testkit', '@dlock/lab']);
const SERVER_KINDS: readonly ServerKind[] = ['redis', 'zookeeper', 'etcd'];

/** Test files in `<packageDir>/test` that register the conformance kit. */
function conformanceTestFiles(packageDir: string, only?: string): string[] {
  const testDir = join(packageDir, 'test');
  if (!existsSync(testDir)) return [];
  return readdirSync(testDir)
    .filter((file) => /\.test\.[cm]?[jt]s$/.test(file) && (only === undefined || file === only))
    .filter((file) => readFileSync(join(testDir, file), 'utf8').includes('describeLockProvider('))
    .map((file) => join('test', file))
    .sort();
}

function describeShapeProblem(descriptor: unknown): string | undefined {
  if (!descriptor || typeof descriptor !== 'object') return 'is not an object';
  const candidate = descriptor as Partial<BackendDescriptor>;
  if (typeof candidate.name !== 'string' || candidate.name === '') return 'has no name';
  if (typeof candidate.createProvider !== 'function') return 'has no createProvider function';
  const servers = candidate.servers;
  if (!servers || !SERVER_KINDS.includes(servers.kind)) {
    return `declares servers.kind ${JSON.stringify(servers?.kind)} (known: ${SERVER_KINDS.join(', ')})`;
  }
  if (!Number.isInteger(servers.count) || servers.count < 1) return `declares servers.count ${servers.count}`;
  return undefined;
}

/**
 * Every `@dlock/*` package the lab depends on that exports a `dlockBackend` descriptor. A backend added
 * later shows up once it is listed in the lab's package.json and built; a package that is not built yet,
 * fails to load, or exports no descriptor is skipped with a note saying why.
 */
async function discoverPackages(notes: string[]): Promise<LabBackend[]> {
  const lab = readPackageJson(labPackageDir);
  const names = Object.keys({ ...lab.dependencies, ...lab.devDependencies })
    .filter((name) => name.startsWith('@dlock/') && !TOOLING_PACKAGES.has(name))
    .sort();
  const found: LabBackend[] = [];
  for (const packageName of names) {
    const packageDir = findPackageDir(packageName);
    if (!packageDir) {
      notes.push(`${packageName}: not installed (run pnpm install); skipped`);
      continue;
    }
    const entry = packageEntry(packageDir);
    if (!existsSync(entry)) {
      notes.push(`${packageName}: not built yet (no ${entry.slice(packageDir.length + 1)}); skipped`);
      continue;
    }
    let descriptor: unknown;
    try {
      descriptor = ((await import(packageName)) as { dlockBackend?: unknown }).dlockBackend;
    } catch (error) {
      notes.push(
        `${packageName}: failed to load (${error instanceof Error ? error.message : error}); skipped`,
      );
      continue;
    }
    if (descriptor === undefined) {
      notes.push(`${packageName}: exports no dlockBackend descriptor yet; skipped`);
      continue;
    }
    const problem = describeShapeProblem(descriptor);
    if (problem) {
      notes.push(`${packageName}: its dlockBackend ${problem}; skipped`);
      continue;
    }
    const backend = descriptor as BackendDescriptor;
    const testFiles = conformanceTestFiles(packageDir);
    if (testFiles.length === 0) notes.push(`${packageName}: no conformance test file found under test/`);
    found.push({
      name: backend.name,
      origin: 'package',
      packageName,
      placement: backend.servers.kind,
      serverCount: backend.servers.count,
      createProvider: (endpoints, options) => backend.createProvider(endpoints, options),
      contenderModule: packageName,
      conformance: testFiles.length > 0 ? { packageDir, testFiles } : null,
      builtAtMs: statSync(entry).mtimeMs,
      wallClockExpiry: false,
      locksOnly: false,
    });
  }
  return found;
}

/** Core's in-process provider: the no-network reference point for benchmarks (it cannot cross processes). */
function memoryReference(): LabBackend {
  const store = new MemoryLockStore();
  const conformanceDir = findPackageDir('@dlock/conformance');
  const testFiles = conformanceDir ? conformanceTestFiles(conformanceDir, 'memory.test.ts') : [];
  return {
    name: 'memory',
    origin: 'reference',
    packageName: '@dlock/core',
    placement: 'in-process',
    serverCount: 0,
    createProvider: async (_endpoints, options) =>
      createMemoryProvider({ store, identity: options?.identity }),
    contenderModule: null,
    conformance: conformanceDir && testFiles.length > 0 ? { packageDir: conformanceDir, testFiles } : null,
    builtAtMs: null,
    wallClockExpiry: false,
    locksOnly: false,
  };
}

async function setnxGetsetBaseline(): Promise<LabBackend> {
  const module = new URL('./baseline/setnx-getset.js', import.meta.url);
  const { dlockBackend } = (await import(module.href)) as { dlockBackend: BackendDescriptor };
  return {
    name: dlockBackend.name,
    origin: 'baseline',
    packageName: null,
    placement: dlockBackend.servers.kind,
    serverCount: dlockBackend.servers.count,
    createProvider: (endpoints, options) => dlockBackend.createProvider(endpoints, options),
    contenderModule: module.href,
    conformance: null,
    builtAtMs: null,
    wallClockExpiry: true,
    locksOnly: true,
  };
}

/** The memory reference first, then discovered packages by name, then the teaching baseline. */
export async function discoverBackends(): Promise<Discovery> {
  const notes: string[] = [];
  const packages = await discoverPackages(notes);
  return { backends: [memoryReference(), ...packages, await setnxGetsetBaseline()], notes };
}
