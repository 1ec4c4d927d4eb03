import { eventually, sleep } from '@dlock/conformance';
import { InvalidArgumentError } from '@dlock/core';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisProvider, permitLayout, redisKeyLayout } from '../src/index.js';
import { redisFixture } from './servers.js';

// A one-node Redis Cluster (every slot on one server): enough for ioredis' Cluster client, for Redis to
// enforce that one script's keys share a slot (CROSSSLOT otherwise), and for pub/sub through a Cluster
// client. It does not exercise resharding or failover.
const redis = redisFixture({ extraArgs: ['--cluster-enabled', 'yes', '--cluster-announce-ip', '127.0.0.1'] });
let cluster: Cluster;

beforeAll(async () => {
  const server = await redis.start();
  const raw = redis.raw();
  await raw.cluster('ADDSLOTSRANGE', 0, 16_383);
  const ready = await eventually(
    async () => /cluster_state:ok/.test(String(await raw.cluster('INFO'))),
    10_000,
    100,
  );
  if (!ready) throw new Error('the one-node cluster did not reach cluster_state:ok');
  cluster = new Cluster([{ host: '127.0.0.1', port: server.port }], { lazyConnect: true });
  cluster.on('error', () => {});
});
afterAll(() => cluster?.disconnect());

describe('redis provider on a Cluster client', () => {
  it('keeps every fencing counter and waiting line in its lock key’s slot', async () => {
    expect(redisKeyLayout('{user:42}:profile', '').fenceKey).toBe('{user:42}:profile:fence');
    expect(redisKeyLayout('plain', 'ns:').fenceKey).toBe('{ns:plain}:fence');
    const raw = redis.raw();
    for (const key of ['{user:42}:profile', 'plain', 'x{y', 'zamówienia-日本-🔒']) {
      const { lockKey, scriptKeys } = redisKeyLayout(key, 'ns:');
      const slot = await raw.cluster('KEYSLOT', lockKey);
      for (const scriptKey of scriptKeys)
        expect(await raw.cluster('KEYSLOT', scriptKey), scriptKey).toBe(slot);
    }
  });

  it('acquires, hands off by push and releases, with and without hash tags', async () => {
    const provider = createRedisProvider({ client: cluster, keyPrefix: 'ns:' });
    const other = createRedisProvider({ client: cluster, keyPrefix: 'ns:' });
    try {
      for (const key of ['{user:42}:profile', 'plain', 'x{y']) {
        const lease = await provider.acquire(key, { ttlMs: 5_000 });
        expect((await other.holder(key))?.token).toBe(lease.token);
        const waiting = other.acquire(key, {
          ttlMs: 5_000,
          waitMs: 5_000,
          signal: AbortSignal.timeout(5_000),
        });
        await new Promise((resolve) => setTimeout(resolve, 100));
        const releasedAt = performance.now();
        await lease.release();
        const next = await waiting;
        expect(performance.now() - releasedAt).toBeLessThan(500);
        expect(next.token > lease.token).toBe(true);
        await next.release();
      }
    } finally {
      await provider.close();
      await other.close();
    }
    expect(cluster.status).toBe('ready');
  });

  it('lists the held keys under a prefix by scanning every master (read-only, for dlock inspect)', async () => {
    const provider = createRedisProvider({ client: cluster, keyPrefix: 'ns:' });
    try {
      const leases = await Promise.all(
        ['{user:7}:a', 'listed-1', 'listed-2', 'other'].map((key) => provider.acquire(key, { ttlMs: 5_000 })),
      );
      expect(await provider.heldKeys?.('listed-')).toEqual(['listed-1', 'listed-2']);
      expect(await provider.heldKeys?.('{user:7}')).toEqual(['{user:7}:a']);
      const found = await provider.inspect?.('listed-1');
      expect(found?.holder?.token).toBe(leases[1]?.token);
      expect(found?.ttlLeftMs).toBeGreaterThan(0);
      await Promise.all(leases.map((lease) => lease.release()));
      expect(await provider.heldKeys?.('listed-')).toEqual([]);
    } finally {
      await provider.close();
    }
  });

  it('rejects keys whose counter could not share their slot', async () => {
    const provider = createRedisProvider({ client: cluster });
    await expect(provider.tryAcquire('a}b')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(provider.tryAcquire('a{}b')).rejects.toMatchObject({ field: 'key' });
    await provider.close();
  });
});

describe('redis semaphore and read-write lock on a Cluster client', () => {
  it('keeps all of a name’s keys and its fencing counter in one slot, and works through the Cluster client', async () => {
    const raw = redis.raw();
    for (const name of ['{user:42}:profile', 'plain', 'x{y', 'zamówienia-日本-🔒']) {
      for (const primitive of ['semaphore', 'rwlock'] as const) {
        const layout = permitLayout(name, 'ns:', primitive);
        const slot = await raw.cluster('KEYSLOT', layout.fenceKey);
        for (const key of [layout.stateKey, layout.expiryKey, layout.queueKey]) {
          expect(await raw.cluster('KEYSLOT', key), key).toBe(slot);
        }
      }
    }
    const provider = createRedisProvider({ client: cluster });
    const other = createRedisProvider({ client: cluster.duplicate() });
    try {
      for (const name of ['{tenant:7}:jobs', 'jobs']) {
        const permit = await provider.semaphore(name, { limit: 1 }).acquire({ ttlMs: 10_000 });
        const waiting = other.semaphore(name, { limit: 1 }).acquire({ ttlMs: 10_000, waitMs: 5_000 });
        await sleep(100);
        await permit.release();
        await (await waiting).release();
        const read = await provider.readWriteLock(name).read.acquire({ ttlMs: 10_000 });
        const writing = other.readWriteLock(name).write.acquire({ ttlMs: 10_000, waitMs: 5_000 });
        await sleep(100);
        await read.release();
        const write = await writing;
        expect(write.token > read.token).toBe(true);
        await write.release();
      }
    } finally {
      await Promise.all([provider.close(), other.close()]);
    }
  });
});
