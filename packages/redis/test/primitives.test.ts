import { fileURLToPath } from 'node:url';
import { eventually, sleep } from '@dlock/conformance';
import type { Lease } from '@dlock/core';
import { startFaultProxy, startNodeProcess } from '@dlock/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRedisProvider, permitLayout, redisKeyLayout } from '../src/index.js';
import { PLACE_REFRESH_MS } from '../src/queue-lua.js';
import { redisFixture } from './servers.js';

const waiterScript = fileURLToPath(new URL('./fixtures/permit-waiter.mjs', import.meta.url));
const redis = redisFixture();
beforeAll(() => redis.start());

/**
 * The commands clients send while `work` runs, from MONITOR (which also shows the commands scripts
 * run, tagged "lua": those are left out, as are the monitor's own). MONITOR's feed lags the commands,
 * so the window closes 50 ms after `settled(seen)` holds (awaited for at most 2 s), or 50 ms after
 * `work` without it.
 */
async function clientCommands(
  work: () => Promise<unknown>,
  settled?: (seen: readonly string[]) => boolean,
): Promise<string[]> {
  // Not ioredis' monitor(): its MONITOR reply and the first monitored line can arrive in one read,
  // before ioredis marks the connection as monitoring, and monitor() then rejects with "Command queue
  // state error" (ioredis#1981; bullmq#2505 hit the same). This connection enters MONITOR itself and
  // its error listener (raw()) drops such lines, which come before the window anyway, as do the lines
  // still arriving after disconnect().
  const monitor = redis.raw({ monitor: true, lazyConnect: false });
  // ioredis sets this status (absent from its RedisStatus type) once MONITOR has answered.
  expect(await eventually(() => (monitor.status as string) === 'monitoring', 5_000)).toBe(true);
  const seen: string[] = [];
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source !== 'lua') seen.push(String(args[0]).toLowerCase());
  });
  await sleep(20);
  await work();
  if (settled) await eventually(() => settled(seen), 2_000);
  await sleep(50);
  monitor.disconnect();
  return seen;
}

describe('redis semaphore and read-write lock: layout and protocol', () => {
  it('keeps them under their own keys, apart from the lock of the same name, with one shared fencing counter', async () => {
    const provider = redis.provider({ keyPrefix: '' });
    const raw = redis.raw();
    const lock = await provider.acquire('jobs', { ttlMs: 10_000 });
    const permit = await provider.semaphore('jobs', { limit: 2 }).acquire({ ttlMs: 10_000 });
    const read = await provider.readWriteLock('jobs').read.acquire({ ttlMs: 10_000 });
    // One counter per name: every grant of the name, whatever the primitive, gets a larger token.
    expect(permit.token > lock.token).toBe(true);
    expect(read.token > permit.token).toBe(true);
    expect(await raw.get(redisKeyLayout('jobs', '').fenceKey)).toBe(String(read.token));

    const semaphore = permitLayout('jobs', '', 'semaphore');
    expect(semaphore).toEqual({
      stateKey: '{jobs}jobs:semaphore',
      expiryKey: '{jobs}jobs:semaphore:expiry',
      queueKey: '{jobs}jobs:semaphore:queue',
      fenceKey: '{jobs}:fence',
      channel: '{jobs}jobs:semaphore:released',
    });
    expect(await raw.type('jobs')).toBe('string');
    expect(await raw.type(semaphore.stateKey)).toBe('hash');
    expect(await raw.type(semaphore.expiryKey)).toBe('zset');
    const state = await raw.hgetall(semaphore.stateKey);
    expect(state['.limit']).toBe('2');
    expect(state['.held']).toBe('1');
    expect(Object.values(state)).toContain(`h:1:${permit.token}:${permit.identity}`);
    const rwlock = permitLayout('jobs', '', 'rwlock');
    expect(rwlock.stateKey).toBe('{jobs}jobs:rwlock');
    expect(await raw.zcard(rwlock.expiryKey)).toBe(1);
    // Entries expire by the server's clock: the score is the server time in ms plus the ttl.
    const [seconds] = await raw.time();
    const score = Number((await raw.zrange(rwlock.expiryKey, 0, 0, 'WITHSCORES'))[1]);
    expect(Math.abs(score - (Number(seconds) * 1_000 + 10_000))).toBeLessThan(2_000);

    await Promise.all([lock.release(), permit.release(), read.release()]);
    for (const key of [semaphore.stateKey, semaphore.expiryKey, rwlock.stateKey, rwlock.expiryKey]) {
      expect(await raw.exists(key), key).toBe(0);
    }
    expect(await raw.exists(semaphore.fenceKey)).toBe(1);
  });

  it('keeps names apart that differ only by braces, and refuses lock keys that end like their keys', async () => {
    expect(permitLayout('x', '', 'semaphore').stateKey).not.toBe(
      permitLayout('{x}', '', 'semaphore').stateKey,
    );
    const provider = redis.provider({ keyPrefix: '' });
    const plain = await provider.semaphore('x', { limit: 1 }).acquire({ ttlMs: 10_000 });
    const braced = await provider.semaphore('{x}', { limit: 1 }).tryAcquire({ ttlMs: 10_000 });
    expect(braced).not.toBeNull();
    await Promise.all([plain.release(), braced?.release()]);
    for (const key of ['{x}x:semaphore', 'a:rwlock:queue', 'b:semaphore:expiry', 'c:fence']) {
      await expect(provider.tryAcquire(key), key).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        field: 'key',
      });
    }
  });

  it('an uncontended acquire is one script call (one round trip), and so is its release', async () => {
    const provider = redis.provider({ keyPrefix: '' });
    const semaphore = provider.semaphore('one-trip', { limit: 3 });
    // Warm up: the first call loads the script into the server's cache (EVALSHA → NOSCRIPT → EVAL).
    await (await semaphore.acquire({ ttlMs: 10_000 })).release();
    const acquires = [
      () => semaphore.acquire({ ttlMs: 10_000, permits: 2 }),
      () => provider.readWriteLock('one-trip').write.acquire({ ttlMs: 10_000 }),
    ];
    for (const acquire of acquires) {
      let lease: Awaited<ReturnType<(typeof acquires)[number]>> | undefined;
      const acquiring = clientCommands(async () => {
        lease = await acquire();
      });
      expect(await acquiring).toEqual(['evalsha']);
      expect(await clientCommands(() => lease!.release())).toEqual(['evalsha']);
    }
  });

  it('a release wakes only the waiter at the head of the queue (no herd), which gets the permit', async () => {
    const name = 'no-herd';
    const semaphore = redis.provider({ keyPrefix: '' }).semaphore(name, { limit: 1 });
    // Loads both scripts into the server's cache, so each call below is one EVALSHA.
    await (await semaphore.acquire({ ttlMs: 10_000 })).release();
    const held = await semaphore.acquire({ ttlMs: 10_000 });
    const order: number[] = [];
    const waiters = Array.from({ length: 5 }, () => redis.provider({ keyPrefix: '' }));
    const observer = redis.raw();
    const inLine = async () => observer.zcard(permitLayout(name, '', 'semaphore').queueKey);
    const granted: Promise<Lease>[] = [];
    let firstJoinedAt = 0;
    for (const [index, provider] of waiters.entries()) {
      // Each waiter is in line before the next starts: a new provider connects first, so a fixed
      // stagger would not fix the order.
      granted.push(
        provider
          .semaphore(name, { limit: 1 })
          .acquire({ ttlMs: 10_000, waitMs: 10_000 })
          .then((lease) => {
            order.push(index);
            return lease;
          }),
      );
      expect(await eventually(async () => (await inLine()) === index + 1, 5_000)).toBe(true);
      if (index === 0) firstJoinedAt = performance.now();
    }
    // Until the head holds and stops listening (well before any waiter's 1 s place refresh): the
    // release itself and the head waiter's one attempt, not one attempt per waiter.
    const sent = await clientCommands(
      () => held.release(),
      (seen) => order.length === 1 && seen.includes('unsubscribe'),
    );
    // A place refresh inside the window would be counted as a herd: the window must have closed
    // before the first waiter's refresh is due.
    expect(performance.now() - firstJoinedAt, 'the window closed before any place refresh').toBeLessThan(
      PLACE_REFRESH_MS,
    );
    expect(sent).toEqual(['evalsha', 'evalsha', 'unsubscribe']);
    expect(order).toEqual([0]);
    for (let i = 0; i < waiters.length; i++) await (await granted[i]!).release();
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it("a SIGKILLed waiter's place in line lapses by the server clock, and the waiters behind it move on", async () => {
    const name = 'crashed-waiter';
    const layout = permitLayout(name, '', 'semaphore');
    const provider = redis.provider({ keyPrefix: '' });
    const held = await provider.semaphore(name, { limit: 2 }).acquire({ ttlMs: 30_000 });
    // Wants both permits: it waits at the head of the queue, and nobody behind may overtake it.
    const waiter = startNodeProcess(waiterScript, [redis.server.url, name, '2', '2']);
    expect(await eventually(async () => (await redis.raw().zcard(layout.queueKey)) === 1, 10_000)).toBe(true);
    await waiter.kill();
    const killedAt = performance.now();
    const behind = redis.provider({ keyPrefix: '' }).semaphore(name, { limit: 2 });
    expect(await behind.tryAcquire({ ttlMs: 10_000 })).toBeNull();
    const lease = await behind.acquire({ ttlMs: 10_000, waitMs: 10_000 });
    const waitedMs = performance.now() - killedAt;
    // The place lasts 2 s after the waiter's last attempt (at most 1 s before the kill).
    expect(waitedMs).toBeLessThan(2_000 + 2_000);
    expect(await redis.raw().zcard(layout.queueKey)).toBe(0);
    await Promise.all([lease.release(), held.release()]);
  });

  it('an acquire whose reply was lost is adopted by its retry: the permit is held once, by the caller', async () => {
    const proxy = await startFaultProxy({ target: `127.0.0.1:${redis.server.port}` });
    try {
      const provider = createRedisProvider({
        url: proxy.url('redis'),
        keyPrefix: '',
        onConnectionLoss: 'wait-for-ttl',
      });
      const semaphore = provider.semaphore('lost-reply', { limit: 2 });
      await (await semaphore.acquire({ ttlMs: 10_000 })).release();
      const dropped = proxy.dropNextReply();
      const lease = await semaphore.acquire({ ttlMs: 10_000, waitMs: 10_000 });
      await dropped;
      const holders = await redis.provider({ keyPrefix: '' }).semaphore('lost-reply', { limit: 2 }).holders();
      expect(holders).toEqual([{ identity: lease.identity, token: lease.token, permits: 1 }]);
      await lease.release();
      expect(await semaphore.holders()).toEqual([]);
      await provider.close();
    } finally {
      await proxy.close();
    }
  });

  it('a waiter that times out or aborts leaves no subscription and no place in line behind', async () => {
    const provider = redis.provider({ keyPrefix: '' });
    const other = redis.provider({ keyPrefix: '' });
    const layout = permitLayout('leaves-nothing', '', 'rwlock');
    const write = await provider.readWriteLock('leaves-nothing').write.acquire({ ttlMs: 10_000 });
    const controller = new AbortController();
    const aborted = other.readWriteLock('leaves-nothing').read.acquire({ signal: controller.signal });
    await expect(
      other.readWriteLock('leaves-nothing').read.acquire({ ttlMs: 10_000, waitMs: 300 }),
    ).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(await redis.raw().zcard(layout.queueKey)).toBe(1);
    controller.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    // The withdrawal's UNSUBSCRIBE is sent, not awaited: what is left must go, within a bound.
    const subscribers = async () =>
      Number(((await redis.raw().pubsub('NUMSUB', layout.channel)) as [string, number])[1]);
    expect(
      await eventually(
        async () => (await redis.raw().zcard(layout.queueKey)) === 0 && (await subscribers()) === 0,
        2_000,
      ),
    ).toBe(true);
    await write.release();
    expect(await redis.raw().exists(layout.stateKey)).toBe(0);
  });
});
