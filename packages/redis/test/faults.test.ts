import { fileURLToPath } from 'node:url';
import { eventually, sleep } from '@dlock/conformance';
import { LockLostError, renewInBackground } from '@dlock/core';
import { startNodeProcess } from '@dlock/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { redisFixture } from './servers.js';

const holderScript = fileURLToPath(new URL('./fixtures/holder.mjs', import.meta.url));
const redis = redisFixture();
beforeAll(() => redis.start());

describe('redis provider under faults', () => {
  it('replaces a SIGKILLed holder process within its ttl plus a margin', async () => {
    const ttlMs = 1_000;
    const holder = startNodeProcess(holderScript, [redis.server.url, 'faults-sigkill', String(ttlMs)]);
    const acquired = await holder.waitForLine(/^acquired \d+$/, 10_000);
    const crashedToken = BigInt(acquired.split(' ')[1]!);
    const contender = redis.provider();
    expect(await contender.tryAcquire('faults-sigkill')).toBeNull();

    await holder.kill();
    const killedAt = performance.now();
    const lease = await contender.acquire('faults-sigkill', { ttlMs: 5_000, waitMs: ttlMs + 2_000 });
    expect(performance.now() - killedAt).toBeLessThan(ttlMs + 1_000);
    expect(lease.token > crashedToken).toBe(true);
    await lease.release();
  });

  it("'wait-for-ttl': a restart that loses the lock aborts the lease at its next renewal", async () => {
    const provider = redis.provider({ onConnectionLoss: 'wait-for-ttl' });
    const lease = await provider.acquire('faults-restart', { ttlMs: 1_500 });
    const renewal = renewInBackground(lease, { intervalMs: 200 });
    await redis.server.kill();
    await redis.server.restart();
    // The server came back empty (no persistence): the first extension after the reconnect finds no lock.
    expect(await eventually(() => lease.signal.aborted, 1_400)).toBe(true);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect((lease.signal.reason as Error).message).toMatch(/expired or was deleted/);
    renewal.stop();

    // The counter went with the data, yet the next holder's token is still larger (it is seeded from
    // the server clock), so a resource fenced by the old token rejects the old holder.
    const next = await redis.provider().acquire('faults-restart', { ttlMs: 5_000, waitMs: 5_000 });
    expect(next.token > lease.token).toBe(true);
    await next.release();
  });

  it("'abort' (default): a dropped connection aborts the lease at once", async () => {
    const provider = redis.provider();
    const lease = await provider.acquire('faults-drop', { ttlMs: 10_000 });
    const droppedAt = performance.now();
    await redis.server.kill();
    expect(await eventually(() => lease.signal.aborted, 1_000)).toBe(true);
    expect(performance.now() - droppedAt).toBeLessThan(1_000);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect((lease.signal.reason as Error).message).toMatch(/connection to redis at .* closed/);
    await redis.server.restart();
    // The provider reconnects by itself and works again.
    const again = await provider.acquire('faults-drop-2', { ttlMs: 5_000, waitMs: 5_000 });
    await again.release();
  });

  it("'wait-for-ttl': a short connection blip keeps the lease, and extending after it works", async () => {
    const provider = redis.provider({ onConnectionLoss: 'wait-for-ttl' });
    const lease = await provider.acquire('faults-blip', { ttlMs: 3_000 });
    redis.clientOf(provider).disconnect(true);
    await sleep(300);
    await lease.extend();
    expect(lease.signal.aborted).toBe(false);
    expect((await redis.provider().holder('faults-blip'))?.token).toBe(lease.token);
    await lease.release();
  });
});
