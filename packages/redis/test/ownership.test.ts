import { type HoldInterval, eventually, overlappingHolds, sleep } from '@dlock/conformance';
import { LockLostError, type LockProvider } from '@dlock/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { FOREIGN_HOLDER, createRedisProvider, redisKeyLayout } from '../src/index.js';
import { lockKeyOf, redisFixture } from './servers.js';

const redis = redisFixture();
beforeAll(() => redis.start());

describe('redis provider: ownership', () => {
  it('a non-owner can neither extend nor release the current owner’s lock', async () => {
    // The stale lease still believes it holds the key (its local validity is open), as a holder would
    // after its key was lost in a failover or deleted by an operator.
    const stale = await redis.provider().acquire('own-stale', { ttlMs: 10_000 });
    await redis.raw().del(lockKeyOf('own-stale'));
    const owner = redis.provider();
    const current = await owner.acquire('own-stale', { ttlMs: 10_000, waitMs: 2_000 });

    await expect(stale.extend(20_000)).rejects.toThrow(/another owner holds it now/);
    expect(stale.signal.reason).toBeInstanceOf(LockLostError);
    await stale.release();
    expect((await owner.holder('own-stale'))?.token).toBe(current.token);
    const remainingTtl = await redis.raw().pttl(lockKeyOf('own-stale'));
    expect(remainingTtl).toBeGreaterThan(5_000);
    expect(remainingTtl).toBeLessThanOrEqual(10_000);
    await current.release();
    expect(await owner.holder('own-stale')).toBeNull();
  });

  it('serves 50 waiters on one key, each woken by a release (no wake-up lost)', async () => {
    // With the fallback re-check at 60 s and ttls of 20 s, a waiter whose wake-up was lost would sit out
    // its whole waitMs and fail the test: only release messages (and the post-subscribe re-check) move it.
    const providers = Array.from({ length: 10 }, () => redis.provider({ fallbackRecheckMs: 60_000 }));
    const holds: HoldInterval[] = [];
    const started = performance.now();
    const first = await providers[0]!.acquire('own-fifty', { ttlMs: 20_000 });
    const waiters = Array.from({ length: 50 }, async (_, i) => {
      const lease = await providers[i % providers.length]!.acquire('own-fifty', {
        ttlMs: 20_000,
        waitMs: 15_000,
      });
      const start = performance.now();
      await sleep(Math.random() * 2);
      holds.push({ holder: String(i), start, end: performance.now() });
      await lease.release();
    });
    await sleep(200);
    await first.release();
    await Promise.all(waiters);
    expect(holds).toHaveLength(50);
    expect(overlappingHolds(holds)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(14_000);
  });

  it('wakes a waiter when the holder’s ttl runs out, without waiting for the fallback re-check', async () => {
    const crashed = await redis.provider().acquire('own-expiry', { ttlMs: 400 });
    const started = performance.now();
    const next = await redis.provider({ fallbackRecheckMs: 60_000 }).acquire('own-expiry', { waitMs: 5_000 });
    expect(performance.now() - started).toBeLessThan(400 + 300);
    expect(next.token > crashed.token).toBe(true);
    await next.release();
  });
});

describe('redis provider: key layout', () => {
  it('stores the documented value at <keyPrefix><key>, keeps a counter and publishes releases', async () => {
    const provider = redis.provider({ keyPrefix: 'app:', identity: 'worker-7' });
    const layout = redisKeyLayout('orders', 'app:');
    expect(layout).toEqual({
      lockKey: 'app:orders',
      fenceKey: '{app:orders}:fence',
      releaseChannel: 'app:orders:released',
      scriptKeys: [
        '{app:orders}app:orders:lock-queue',
        '{app:orders}app:orders:lock-queue:expiry',
        '{app:orders}app:orders:lock-queue:queue',
        '{app:orders}:fence',
        'app:orders',
      ],
      releaseKeys: [
        '{app:orders}app:orders:lock-queue',
        '{app:orders}app:orders:lock-queue:expiry',
        '{app:orders}app:orders:lock-queue:queue',
        'app:orders',
      ],
    });
    const subscriber = redis.raw();
    const messages: string[] = [];
    subscriber.on('message', (channel: string, message: string) => messages.push(`${channel} ${message}`));
    await subscriber.subscribe(layout.releaseChannel);

    const lease = await provider.acquire('orders', { ttlMs: 5_000 });
    const raw = redis.raw();
    expect(await raw.get(layout.lockKey)).toMatch(
      new RegExp(`^dlock1:[0-9a-f]{32}:${lease.token}:worker-7$`),
    );
    expect(await raw.pttl(layout.lockKey)).toBeGreaterThan(4_000);
    expect(await raw.get(layout.fenceKey)).toBe(String(lease.token));
    expect(await provider.holder('orders')).toEqual({ identity: 'worker-7', token: lease.token });
    await lease.release();
    // Delivered to another connection: awaited within a bound, then checked whole.
    expect(await eventually(() => messages.length > 0, 2_000)).toBe(true);
    expect(messages).toEqual(['app:orders:released released']);
    expect(await raw.exists(layout.lockKey)).toBe(0);
    expect(await raw.get(layout.fenceKey)).toBe(String(lease.token));
  });

  it('reports a lock another library holds (a redlock value with a ttl) as held, with no token', async () => {
    const provider = redis.provider();
    for (const value of ['0123456789abcdef0123456789abcdef', '0123456789abcdef0123456789abcdef:worker-2']) {
      await redis.raw().set(lockKeyOf('own-foreign'), value, 'PX', 5_000);
      expect(await provider.holder('own-foreign')).toEqual(FOREIGN_HOLDER);
      expect(await provider.tryAcquire('own-foreign')).toBeNull();
    }
  });
});

describe('redis provider: connections', () => {
  it('never quits a client it was given, and quits the one it made from a URL', async () => {
    const client = redis.raw();
    const given = createRedisProvider({ client });
    await (await given.acquire('conn-given', { ttlMs: 5_000 })).release();
    await given.close();
    expect(await client.ping()).toBe('PONG');

    const observer = redis.raw();
    const countClients = async () => ((await observer.client('LIST')) as string).trim().split('\n').length;
    const fromUrl: LockProvider = createRedisProvider({ url: redis.server.url });
    await (await fromUrl.acquire('conn-url', { ttlMs: 5_000 })).release();
    const clientsBefore = await countClients();
    await fromUrl.close();
    expect(await eventually(async () => (await countClients()) <= clientsBefore - 1, 2_000)).toBe(true);
    await sleep(100);
    expect(await countClients()).toBe(clientsBefore - 1);
  });
});
