import { sleep } from '@dlock/conformance';
import Redlock from 'redlock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FOREIGN_HOLDER } from '../src/index.js';
import { redisFixture } from './servers.js';

// With keyPrefix '' dlock's lock key is the resource name redlock uses, so each excludes the other.
const redis = redisFixture();
let redlock: Redlock;
beforeAll(async () => {
  await redis.start();
  redlock = new Redlock([redis.raw()], { retryCount: 0 });
});
afterAll(() => redlock?.quit().catch(() => {}));

describe('redis provider and redlock on the same keys', () => {
  it('a redlock lock keeps dlock out until redlock releases it', async () => {
    const provider = redis.provider({ keyPrefix: '', fallbackRecheckMs: 200 });
    const lock = await redlock.acquire(['interop-redlock-first'], 10_000);
    expect(await provider.tryAcquire('interop-redlock-first')).toBeNull();
    expect(await provider.holder('interop-redlock-first')).toEqual(FOREIGN_HOLDER);

    const waiting = provider.acquire('interop-redlock-first', { ttlMs: 5_000, waitMs: 5_000 });
    await sleep(300);
    await lock.release();
    // redlock publishes nothing: the waiter notices at its fallback re-check.
    const lease = await waiting;
    expect((await provider.holder('interop-redlock-first'))?.token).toBe(lease.token);
    await lease.release();
  });

  it('a dlock lock keeps redlock out until dlock releases it', async () => {
    const provider = redis.provider({ keyPrefix: '' });
    const lease = await provider.acquire('interop-dlock-first', { ttlMs: 10_000 });
    await expect(redlock.acquire(['interop-dlock-first'], 5_000)).rejects.toThrow();
    await lease.release();
    const lock = await redlock.acquire(['interop-dlock-first'], 5_000);
    expect(await provider.tryAcquire('interop-dlock-first')).toBeNull();
    await lock.release();
  });

  it('redlock’s lock expiry hands the key to a waiting dlock contender', async () => {
    const provider = redis.provider({ keyPrefix: '', fallbackRecheckMs: 60_000 });
    await redlock.acquire(['interop-expiry'], 400);
    const started = performance.now();
    const lease = await provider.acquire('interop-expiry', { ttlMs: 5_000, waitMs: 5_000 });
    // Woken by the PTTL the failed attempt saw, not by the (disabled) fallback re-check.
    expect(performance.now() - started).toBeLessThan(400 + 300);
    await lease.release();
  });
});
