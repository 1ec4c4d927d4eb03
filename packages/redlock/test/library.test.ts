import { eventually } from '@dlock/conformance';
import { KeyConflictError, type LockProvider } from '@dlock/core';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import { Redis } from 'ioredis';
import Redlock, { ExecutionError } from 'redlock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedlockProviderOptions, createRedlockProvider } from '../src/index.js';
import { closeRawClients, noResidueWithin, rawClients, sleep, storedValues } from './support.js';

let cluster: RedisNodes;
let operator: Redis[];
const providers: LockProvider[] = [];
const libraryClients: Redis[] = [];
let keyCounter = 0;
const freshKey = (label: string) => `library-${label}-${process.pid}-${keyCounter++}`;

function open(options: Partial<RedlockProviderOptions> = {}): LockProvider {
  const provider = createRedlockProvider({ urls: cluster.urls, connectTimeoutMs: 2_000, ...options });
  providers.push(provider);
  return provider;
}

/** The `redlock` library used directly, as another application sharing the nodes would. */
function plainRedlock(urls: readonly string[] = cluster.urls): Redlock {
  const clients = urls.map((url) => new Redis(url, { commandTimeout: 2_000, maxRetriesPerRequest: 0 }));
  libraryClients.push(...clients);
  return new Redlock(clients, { retryCount: 0 });
}

beforeAll(async () => {
  cluster = await startRedisNodes(5);
  operator = rawClients(cluster.urls);
});

afterEach(async () => {
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  await closeRawClients(libraryClients.splice(0));
});

afterAll(async () => {
  await closeRawClients(operator);
  await cluster.stop();
});

describe('layout shared with the redlock library', () => {
  it('dlock and plain redlock exclude each other on the same key (keyPrefix "")', async () => {
    const key = freshKey('interop');
    const provider = open();
    const redlock = plainRedlock();

    const foreign = await redlock.acquire([key], 10_000);
    expect(await provider.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
    // A plain redlock value carries no identity: holder() shows the value itself.
    expect(await provider.holder(key)).toEqual({ identity: foreign.value, token: 0n });
    await redlock.release(foreign);

    const lease = await provider.acquire(key, { ttlMs: 10_000 });
    await expect(redlock.acquire([key], 10_000)).rejects.toBeInstanceOf(ExecutionError);
    await lease.release();
    // Plain redlock settles the clean-up of its failed acquire (and its release) at the first majority,
    // so a slow node may drop its value a moment later.
    expect(await noResidueWithin(operator, key, 2_000)).toBe(true);
  });

  it('stores "<32 random hex digits>:<identity>" at keyPrefix + key on every node', async () => {
    const key = freshKey('layout');
    const provider = open({ keyPrefix: 'app:', identity: 'worker-7' });
    const lease = await provider.acquire(key, { ttlMs: 10_000 });
    // The lease is granted at the third vote; the last two nodes may answer a moment later.
    const values = () => Promise.all(operator.map((client) => client.get(`app:${key}`)));
    expect(await eventually(async () => !(await values()).includes(null), 2_000)).toBe(true);
    const stored = await values();
    expect(new Set(stored).size).toBe(1);
    expect(stored[0]).toMatch(/^[0-9a-f]{32}:worker-7$/);
    expect(await operator[0]!.exists(key)).toBe(0);
    expect(await provider.holder(key)).toEqual({ identity: 'worker-7', token: 0n });
    await lease.release();
  });
});

describe('validity', () => {
  it('counts a majority that arrives after the validity window as a failure and leaves nothing behind', async () => {
    const key = freshKey('too-late');
    // drift = 0.95 × 40 + 2 = 40 ms: the window is spent before any answer can arrive.
    // A short fallback keeps core's per-wait guard timers few while the attempts fail back to back.
    const provider = open({ driftFactor: 0.95, fallbackRecheckMs: 20 });
    expect(await provider.tryAcquire(key, { ttlMs: 40 })).toBeNull();
    expect(await storedValues(operator, key)).toEqual([]);
    await expect(provider.acquire(key, { ttlMs: 40, waitMs: 200 })).rejects.toMatchObject({
      code: 'LOCK_TIMEOUT',
    });
    expect(await storedValues(operator, key)).toEqual([]);
  });

  it('ends the lease at ttl minus drift measured from before the request', async () => {
    const key = freshKey('window');
    const provider = open({ driftFactor: 0.4 });
    const started = performance.now();
    const lease = await provider.acquire(key, { ttlMs: 1_000 });
    await eventually(() => lease.signal.aborted, 2_000, 5);
    const lifetime = performance.now() - started;
    // 1000 − (0.4 × 1000 + 2) = 598 ms after the request was sent: well before the nodes let go.
    expect(lifetime).toBeGreaterThanOrEqual(590);
    expect(lifetime).toBeLessThan(1_000);
    await lease.release();
  });
});

describe('waiting', () => {
  it('wakes a waiter when a crashed holder expires on a majority, not at the fallback re-check', async () => {
    const key = freshKey('expiry');
    const redlock = plainRedlock();
    // A plain redlock holder that never releases (and publishes nothing), as after a crash.
    await redlock.acquire([key], 700);
    const waiter = open({ fallbackRecheckMs: 10_000 });
    const started = performance.now();
    const lease = await waiter.acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
    expect(performance.now() - started).toBeLessThan(700 + 1_000);
    await lease.release();
  });

  it('gives back what a failed attempt took while it waits, so contenders that split the vote do not block each other', async () => {
    const key = freshKey('split');
    // Two other owners hold 3 of the 5 nodes between them: nobody can win a majority.
    await Promise.all(operator.slice(0, 2).map((client) => client.set(key, 'owner-x', 'PX', 10_000)));
    await operator[2]!.set(key, 'owner-y', 'PX', 10_000);
    const waiter = open({ identity: 'waiter', fallbackRecheckMs: 5_000 });
    const waiting = waiter.acquire(key, { waitMs: 3_000 }).catch((error: unknown) => error);
    // Its first attempt wins nodes 4 and 5, fails, and then it subscribes to release notices. From then
    // on, between attempts, while it still waits, nodes 4 and 5 must be free again.
    const subscribed = await eventually(async () => {
      const counts = await Promise.all(operator.map((client) => client.pubsub('NUMSUB', `${key}:released`)));
      return counts.some((count) => Number(count[1]) > 0);
    }, 2_000);
    expect(subscribed).toBe(true);
    const freeWhileWaiting = await eventually(async () => {
      const values = await Promise.all(operator.slice(3).map((client) => client.get(key)));
      return values.every((value) => value === null) && (await storedValues(operator, key)).length === 3;
    }, 2_000);
    expect(freeWhileWaiting).toBe(true);
    expect(await waiting).toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(await storedValues(operator, key)).toHaveLength(3);
    await Promise.all(operator.map((client) => client.del(key)));
  });

  it('drops its release-notice subscriptions once the waiters are done', async () => {
    const key = freshKey('unsubscribe');
    const [holder, waiter] = [open(), open()];
    const lease = await holder.acquire(key, { ttlMs: 10_000 });
    const waiting = waiter.acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
    const subscribers = async () => {
      const counts = await Promise.all(
        operator.map(async (client) => Number((await client.pubsub('NUMSUB', `${key}:released`))[1])),
      );
      return counts.reduce((sum, count) => sum + count, 0);
    };
    expect(await eventually(async () => (await subscribers()) === 5, 2_000)).toBe(true);
    await lease.release();
    await (await waiting).release();
    expect(await eventually(async () => (await subscribers()) === 0, 2_000)).toBe(true);
  });
});

describe('a lock name that collides with application data (issue 12 #9, on RedLock)', () => {
  it.each([
    ['a string without expiry', (client: Redis, key: string) => client.set(key, '{"x":1}')],
    ['a hash', (client: Redis, key: string) => client.hset(key, 'x', '1')],
  ] as const)(
    '%s on a majority: acquire and holder fail fast with KeyConflictError naming the key and the nodes',
    async (_label, write) => {
      const key = freshKey('collision');
      await Promise.all(operator.slice(0, 3).map((client) => write(client, key)));
      const provider = open();
      const started = performance.now();
      const error = await provider.acquire(key, { waitMs: 5_000 }).catch((caught: unknown) => caught);
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(error).toBeInstanceOf(KeyConflictError);
      expect(error).toMatchObject({ code: 'KEY_CONFLICT', key, backendKey: key });
      const message = (error as Error).message;
      for (const node of cluster.nodes.slice(0, 3)) expect(message).toContain(`127.0.0.1:${node.port}`);
      expect(message).toContain('keyPrefix');
      await expect(provider.holder(key)).rejects.toBeInstanceOf(KeyConflictError);
      // Nothing was taken where the key was free, and the application's data is untouched.
      expect(await Promise.all(operator.slice(3).map((client) => client.exists(key)))).toEqual([0, 0]);
      expect(await operator[0]!.exists(key)).toBe(1);
      await Promise.all(operator.map((client) => client.del(key)));
    },
  );

  it('on a minority only: the majority is still won, and the data is left alone', async () => {
    const key = freshKey('collision-minority');
    await operator[0]!.set(key, '{"x":1}');
    const lease = await open().acquire(key, { waitMs: 1_000 });
    expect(await operator[0]!.get(key)).toBe('{"x":1}');
    await lease.release();
    expect(await operator[0]!.get(key)).toBe('{"x":1}');
    await operator[0]!.del(key);
  });
});

describe('why dlock requires an odd number of nodes', () => {
  it('documents a redlock 5.0.0-beta.2 defect: a 2–2 split over 4 nodes never settles', async () => {
    const key = freshKey('even');
    const redlock = plainRedlock(cluster.urls.slice(0, 4));
    await Promise.all(operator.slice(0, 2).map((client) => client.set(key, 'someone-else', 'PX', 5_000)));
    const settled = await Promise.race([
      redlock.acquire([key], 5_000).then(
        () => 'acquired',
        () => 'rejected',
      ),
      sleep(1_500).then(() => 'still pending'),
    ]);
    expect(settled).toBe('still pending');
    await Promise.all(operator.map((client) => client.del(key)));
  });
});
