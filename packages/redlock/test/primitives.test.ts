import { eventually } from '@dlock/conformance';
import { BackendUnavailableError, type LockProvider } from '@dlock/core';
import { permitLayout } from '@dlock/redis';
import { permitAcquireScript, permitKeys, runScript } from '@dlock/redis/primitives';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { closeRawClients, rawClients, restoreNodes } from './support.js';

const CONNECT_TIMEOUT_MS = 500;
const COMMAND_TIMEOUT_MS = 1_000;
/** Slack for a shared, busy machine on every "no hang" bound. */
const MARGIN_MS = 600;

let cluster: RedisNodes;
let operator: Redis[];
const providers: LockProvider[] = [];
let counter = 0;
const freshName = (label: string) => `permits-${label}-${process.pid}-${counter++}`;

function open(): LockProvider {
  const provider = createRedlockProvider({
    urls: cluster.urls,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
  });
  providers.push(provider);
  return provider;
}

/** Writes a holder of the whole semaphore straight onto some nodes, as a crashed minority grant would. */
async function occupy(nodes: readonly Redis[], name: string): Promise<void> {
  const layout = permitLayout(name, '', 'semaphore');
  const args = ['f'.repeat(32), 1, 1, 30_000, 0, 'someone else', layout.channel, 0];
  await Promise.all(nodes.map((node) => runScript(node, permitAcquireScript, permitKeys(layout), args)));
}

const stateOn = (nodes: readonly Redis[], name: string) =>
  Promise.all(nodes.map((node) => node.exists(permitLayout(name, '', 'semaphore').stateKey)));

beforeAll(async () => {
  cluster = await startRedisNodes(5);
  operator = rawClients(cluster.urls);
});

afterEach(async () => {
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  await restoreNodes(cluster);
});

afterAll(async () => {
  await closeRawClients(operator);
  await cluster.stop();
});

describe('RedLock semaphore and read-write lock on five nodes', () => {
  it('hold on their quorum: every node stores the permit; 2 of 5 nodes killed stop a limit-2 semaphore but not the rest', async () => {
    const name = freshName('quorum');
    const provider = open();
    const permit = await provider.semaphore(name, { limit: 2 }).acquire({ ttlMs: 10_000 });
    expect(permit.token).toBe(0n);
    // The grant settles at its quorum; the slowest nodes store it a moment later.
    expect(await eventually(async () => (await stateOn(operator, name)).every((n) => n === 1), 2_000)).toBe(
      true,
    );
    await permit.release();
    expect(await stateOn(operator, name)).toEqual([0, 0, 0, 0, 0]);

    // Limit 2 needs 4 of 5 nodes: one node down is tolerated, two are not.
    await cluster.nodes[4]!.kill();
    const other = open();
    const a = await provider.semaphore(name, { limit: 2 }).acquire({ ttlMs: 10_000, waitMs: 5_000 });
    const b = await other.semaphore(name, { limit: 2 }).acquire({ ttlMs: 10_000, waitMs: 5_000 });
    expect(await other.semaphore(name, { limit: 2 }).tryAcquire({ ttlMs: 10_000 })).toBeNull();
    expect(await other.semaphore(name, { limit: 2 }).holders()).toHaveLength(2);
    await Promise.all([a.release(), b.release()]);
    await cluster.nodes[3]!.kill();
    await expect(provider.semaphore(name, { limit: 2 }).tryAcquire({ ttlMs: 10_000 })).rejects.toThrow(
      /limit 2 needs 4 of 5 nodes/,
    );
    // A mutex-like semaphore and the read-write lock need only a majority.
    const only = await provider.semaphore(`${name}-1`, { limit: 1 }).acquire({ ttlMs: 10_000 });
    expect(await other.semaphore(`${name}-1`, { limit: 1 }).tryAcquire({ ttlMs: 10_000 })).toBeNull();
    await only.release();
    const write = other.readWriteLock(name).write.acquire({ ttlMs: 10_000, waitMs: 5_000 });
    const read = await provider.readWriteLock(name).read.acquire({ ttlMs: 10_000 });
    await read.release();
    await (await write).release();
  });

  it('never admits more than the limit, also where a majority per permit would (10 contenders, limit 2)', async () => {
    const name = freshName('limit');
    const contenders = Array.from({ length: 10 }, () => open());
    let inside = 0;
    let most = 0;
    let acquisitions = 0;
    const deadline = performance.now() + 2_000;
    await Promise.all(
      contenders.map(async (provider) => {
        const semaphore = provider.semaphore(name, { limit: 2 });
        while (performance.now() < deadline) {
          const lease = await semaphore.acquire({ ttlMs: 10_000, waitMs: 10_000 });
          most = Math.max(most, ++inside);
          acquisitions++;
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
          inside--;
          await lease.release();
        }
      }),
    );
    expect(acquisitions).toBeGreaterThan(20);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('3 of 5 nodes killed: BackendUnavailableError naming them, within the connect timeout', async () => {
    const provider = open();
    const name = freshName('minority');
    await (await provider.semaphore(name, { limit: 1 }).acquire({ ttlMs: 1_000 })).release();
    await Promise.all([0, 1, 2].map((i) => cluster.nodes[i]!.kill()));
    for (const attempt of [
      () => provider.semaphore(name, { limit: 1 }).tryAcquire({ ttlMs: 1_000 }),
      () => provider.readWriteLock(name).write.tryAcquire({ ttlMs: 1_000 }),
      () => provider.semaphore(name, { limit: 1 }).holders(),
    ]) {
      const started = performance.now();
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(BackendUnavailableError);
      for (const i of [0, 1, 2])
        expect((error as BackendUnavailableError).address).toContain(`:${cluster.nodes[i]!.port}`);
      expect(performance.now() - started).toBeLessThan(CONNECT_TIMEOUT_MS + COMMAND_TIMEOUT_MS + MARGIN_MS);
    }
  });

  it('a failed majority is undone on every node in the background, without waiting for a paused node', async () => {
    const name = freshName('undo');
    await occupy(operator.slice(0, 3), name);
    const provider = open();
    const semaphore = provider.semaphore(name, { limit: 1 });
    await semaphore.holders(); // connected
    cluster.nodes[4]!.pause();
    const started = performance.now();
    // Node 3 grants, nodes 0-2 refuse: no majority is possible, so the answer does not wait for node 4.
    expect(await semaphore.tryAcquire({ ttlMs: 10_000 })).toBeNull();
    expect(performance.now() - started).toBeLessThan(COMMAND_TIMEOUT_MS);
    // The grant on node 3 is undone by owner value in the background.
    expect(await eventually(async () => (await stateOn([operator[3]!], name))[0] === 0, 2_000)).toBe(true);
    cluster.nodes[4]!.resume();
    // And nothing was left on the node that was paused (its undo ran when it came back).
    expect(await eventually(async () => (await stateOn([operator[4]!], name))[0] === 0, 3_000)).toBe(true);
    expect(await stateOn(operator.slice(0, 3), name)).toEqual([1, 1, 1]);
  });

  it('a grant answers at the majority: 2 paused nodes do not delay it', async () => {
    const provider = open();
    const name = freshName('paused');
    await provider.semaphore(name, { limit: 1 }).holders();
    cluster.nodes[0]!.pause();
    cluster.nodes[1]!.pause();
    const started = performance.now();
    const permit = await provider.semaphore(name, { limit: 1 }).acquire({ ttlMs: 10_000 });
    expect(performance.now() - started).toBeLessThan(COMMAND_TIMEOUT_MS);
    await permit.release();
  });

  it('a majority of nodes storing another limit is SemaphoreLimitMismatchError', async () => {
    const name = freshName('mismatch');
    await occupy(operator.slice(0, 3), name);
    const error = await open()
      .semaphore(name, { limit: 3 })
      .tryAcquire({ ttlMs: 1_000 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ code: 'LIMIT_MISMATCH', storedLimit: 1 });
  });
});
