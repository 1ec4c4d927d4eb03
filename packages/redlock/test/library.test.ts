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

  it('a redlock client that ignores the waiting line is still excluded while dlock waiters queue', async () => {
    const key = freshKey('line-interop');
    const dlock = Array.from({ length: 4 }, () => open());
    // The library with retries (its own 200 ms delay): it takes the key whenever it finds it free.
    const peers = [0, 1].map(() => {
      const clients = cluster.urls.map(
        (url) => new Redis(url, { commandTimeout: 2_000, maxRetriesPerRequest: 0 }),
      );
      libraryClients.push(...clients);
      return new Redlock(clients, { retryCount: -1 });
    });
    let inside = 0;
    let mostInside = 0;
    const byDlock = dlock.map(() => 0);
    let byPeers = 0;
    const deadline = performance.now() + 1_500;
    const hold = async (release: () => Promise<unknown>) => {
      inside++;
      mostInside = Math.max(mostInside, inside);
      await sleep(1);
      inside--;
      await release();
    };
    await Promise.all([
      ...dlock.map(async (provider, index) => {
        for (let round = 0; round < 500 && performance.now() < deadline; round++) {
          const lease = await provider.acquire(key, { ttlMs: 10_000, waitMs: 20_000 });
          byDlock[index]!++;
          await hold(() => lease.release());
        }
      }),
      ...peers.map(async (redlock) => {
        for (let round = 0; round < 500 && performance.now() < deadline; round++) {
          const lock = await redlock.acquire([key], 10_000);
          byPeers++;
          await hold(() => redlock.release(lock));
          // Some work between locks: back to back, the library's retries can starve the line for long
          // (its release admits nobody, so dlock's head notices at its 1 s place refresh).
          await sleep(5);
        }
      }),
    ]);
    console.log(`[redlock] line interop: dlock contenders ${byDlock.join(', ')}; redlock library ${byPeers}`);
    expect(mostInside).toBe(1);
    expect(byDlock.every((count) => count > 0)).toBe(true);
  }, 30_000);

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
    // Its first attempt wins nodes 4 and 5, fails, and waits in line on nodes 1 to 3. From then on,
    // between attempts, while it still waits, nodes 4 and 5 must be free again.
    const queued = await eventually(async () => {
      const lengths = await Promise.all(
        operator.slice(0, 3).map((client) => client.zcard(`${key}:lock-queue:queue`)),
      );
      return lengths.every((length) => length === 1);
    }, 2_000);
    expect(queued).toBe(true);
    const freeWhileWaiting = await eventually(async () => {
      const values = await Promise.all(operator.slice(3).map((client) => client.get(key)));
      return values.every((value) => value === null) && (await storedValues(operator, key)).length === 3;
    }, 2_000);
    expect(freeWhileWaiting).toBe(true);
    expect(await waiting).toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(await storedValues(operator, key)).toHaveLength(3);
    await Promise.all(operator.map((client) => client.del(key)));
  });

  it('waits in line on every node, listening on its inbox, and leaves no line behind once done', async () => {
    const key = freshKey('line');
    const [holder, waiter] = [open(), open({ identity: 'waiter' })];
    const lease = await holder.acquire(key, { ttlMs: 10_000 });
    const waiting = waiter.acquire(key, { ttlMs: 10_000, waitMs: 60_000 });
    // Awaited below; should an expectation fail first, closing the provider must not leave it unhandled.
    waiting.catch(() => {});
    // Whether the waiter is in each node's line (the holder may be too, on a node its attempt reached
    // after the waiter's, until its release).
    const inLine = () =>
      Promise.all(
        operator.map(async (client) =>
          (await client.zrange(`${key}:lock-queue:queue`, 0, -1)).some((owner) => owner.endsWith(':waiter')),
        ),
      );
    const lineKeys = async () => {
      const counts = await Promise.all(
        operator.map((client) =>
          client.exists(`${key}:lock-queue`, `${key}:lock-queue:expiry`, `${key}:lock-queue:queue`),
        ),
      );
      return counts.reduce((sum, count) => sum + count, 0);
    };
    // The guarantee: a waiter held up by a lease is in every node's line (it joins on its first attempt
    // with the line's script, and keeps its place until it leaves); how soon depends on the machine, so
    // the bound is generous (a place is refreshed at least every second).
    const everywhere = await eventually(async () => (await inLine()).every(Boolean), 15_000);
    // On failure, what each node holds: the key's value and its line.
    const nodes = await Promise.all(
      operator.map(async (client) => [
        await client.get(key),
        await client.zrange(`${key}:lock-queue:queue`, 0, -1),
      ]),
    );
    expect(everywhere, JSON.stringify(nodes)).toBe(true);
    // The waiter's provider listens on one inbox channel on every node (the holder's never waited). Its
    // subscriber connections are opened on its first wait, and on a busy machine a node's SUBSCRIBE may
    // still be on its way when the waiter's places are taken (the places are refreshed every second,
    // so an admit missed meanwhile costs at most that): every node has it soon after.
    const inboxes = async () =>
      (await Promise.all(operator.map((client) => client.pubsub('CHANNELS', 'dlock-redlock-inbox:*')))).map(
        (channels) => (channels as string[]).length,
      );
    expect(await eventually(async () => (await inboxes()).every((count) => count === 1), 10_000)).toBe(true);
    expect(await inboxes()).toEqual([1, 1, 1, 1, 1]);
    await lease.release();
    await (await waiting).release();
    expect(await lineKeys()).toBe(0);
  }, 60_000);

  it('hands the lock to waiters in the order they first tried, waking only the head on each release', async () => {
    const key = freshKey('fifo');
    const holder = open({ identity: 'holder' });
    const lease = await holder.acquire(key, { ttlMs: 10_000 });
    // Admit notices published on one node, whoever they are for.
    const observer = operator[0]!.duplicate();
    const admits: string[] = [];
    observer.on('pmessage', (_pattern: string, _channel: string, message: string) => admits.push(message));
    await observer.psubscribe('dlock-redlock-inbox:*');
    try {
      const order: string[] = [];
      const waiters: Array<Promise<void>> = [];
      for (const name of ['first', 'second', 'third']) {
        const provider = open({ identity: name });
        waiters.push(
          provider.acquire(key, { ttlMs: 10_000, waitMs: 20_000 }).then(async (next) => {
            order.push(name);
            await next.release();
          }),
        );
        // Each is in line on every node before the next one first tries.
        expect(
          await eventually(
            async () =>
              (await Promise.all(operator.map((client) => client.zcard(`${key}:lock-queue:queue`)))).every(
                (length) => length === waiters.length,
              ),
            5_000,
          ),
        ).toBe(true);
      }
      await lease.release();
      await Promise.all(waiters);
      expect(order).toEqual(['first', 'second', 'third']);
      // Admits on this node go to the waiter then at the head only, in turn (the holder's release
      // admits the first, the first's the second, the second's the third; the third's release finds
      // nobody in line). A head admitted before the release reached every node may be admitted again.
      expect(await eventually(async () => admits.length >= 3, 2_000)).toBe(true);
      const admitted = admits.map((message) => message.split(':').at(-1));
      expect(admitted.filter((name, i) => name !== admitted[i - 1])).toEqual(['first', 'second', 'third']);
    } finally {
      observer.disconnect();
    }
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
