import { fileURLToPath } from 'node:url';
import { type NodeProcess, startNodeProcess } from '@dlock/testkit';
import { expect } from 'vitest';
import { unlessMissing } from '../src/client.js';
import { lockPath, primitiveRoots } from '../src/layout.js';
import type { Inspector } from './support.js';

/** Where the providers of a test file keep a semaphore's or read-write lock's nodes (default roots). */
export function primitivePath(root: string, kind: 'semaphore' | 'read-write', name: string): string {
  const roots = primitiveRoots(root);
  return lockPath(kind === 'semaphore' ? roots.semaphores : roots.readWrite, name);
}

/**
 * The children of `path` as the server lists them, whatever their names, in sequence order (the
 * 10-digit suffix); [] when it does not exist.
 */
export async function childrenOf(inspector: Inspector, path: string): Promise<string[]> {
  const listed = await unlessMissing(inspector.session.calls.getChildren(path));
  const sequence = (name: string) => name.slice(-10);
  return (listed?.children ?? []).sort((a, b) =>
    sequence(a) < sequence(b) ? -1 : sequence(a) > sequence(b) ? 1 : 0,
  );
}

/** `path` and every node below it, parents first; [] when it does not exist. */
export async function tree(inspector: Inspector, path: string): Promise<string[]> {
  const listed = await unlessMissing(inspector.session.calls.getChildren(path));
  if (!listed) return [];
  const below = await Promise.all(listed.children.sort().map((child) => tree(inspector, `${path}/${child}`)));
  return [path, ...below.flat()];
}

/** What a semaphore or read-write lock leaves at the server: its node and everything below it. */
export function primitiveResidue(
  inspector: Inspector,
  root: string,
  kind: 'semaphore' | 'read-write',
  name: string,
): Promise<string[]> {
  return tree(inspector, primitivePath(root, kind, name));
}

const HOLDER_FIXTURE = fileURLToPath(new URL('./fixtures/holder.mjs', import.meta.url));

/**
 * Runs `body` with a holder process (test/fixtures/holder.mjs, 'abort' policy) that has acquired:
 * `kind` is 'semaphore' (with `limit`), 'read' or 'write'. The process is killed afterwards if it is
 * still running.
 */
export async function withHolderProcess(
  connectString: string,
  root: string,
  name: string,
  kind: 'semaphore' | 'read' | 'write',
  body: (child: NodeProcess, token: bigint) => Promise<void>,
  limit = 1,
): Promise<void> {
  const args = [connectString, root, name, '2000', 'abort', kind, String(limit)];
  const child = startNodeProcess(HOLDER_FIXTURE, args);
  try {
    const acquired = await child.waitForLine(/^acquired \d+$/, 20_000);
    await body(child, BigInt(acquired.split(' ')[1] ?? '0'));
  } finally {
    if (child.running) await child.kill();
  }
}

/**
 * SIGSTOPs (or SIGKILLs) the holder `child`, whose lease has `token`, and waits for `takeOver` (other
 * clients' acquires) to resolve: only the server's expiry of the holder's session may let them in, so
 * each gets a larger token, and not before a second has passed. A paused holder is resumed and must
 * report its loss within a second.
 */
export async function takeOverFrom<T extends { readonly token: bigint }>(
  child: NodeProcess,
  token: bigint,
  how: 'pause' | 'kill',
  takeOver: () => Promise<T[]>,
): Promise<T[]> {
  if (how === 'pause') child.pause();
  else await child.kill();
  const stoppedAt = performance.now();
  const leases = await takeOver();
  expect(performance.now() - stoppedAt).toBeGreaterThan(1_000);
  for (const lease of leases) expect(lease.token).toBeGreaterThan(token);
  if (how === 'pause') {
    child.resume();
    const resumedAt = performance.now();
    await child.waitForLine(/^lost /, 5_000);
    expect(performance.now() - resumedAt).toBeLessThan(1_000);
    child.send('exit');
    await child.exited;
  }
  return leases;
}
