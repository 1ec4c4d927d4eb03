import { eventually, sleep } from '@dlock/conformance';
import { BackendUnavailableError, type Lease, type LockProvider, NotHeldError } from '@dlock/core';
import { startRedis } from '@dlock/testkit';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY_PREFIX, createRedisProvider, redisKeyLayout } from '../src/index.js';
import { lockKeyOf, redisFixture, settled } from './servers.js';

// Issue 11 on one Redis: unknown outcomes and transient faults, each injected for real (the testkit's
// TCP fault proxy, SIGSTOP, SIGKILL and restart). The backend-neutral cases (a release retried, close()
// releasing, withLock keeping its result, the 1 s blip) run in the conformance kit's network section.

const redis = redisFixture();
beforeAll(() => redis.start());

/** Slack on every bound, for a busy machine. */
const SLACK_MS = 1_000;

const fenceKeyOf = (key: string) => redisKeyLayout(key, DEFAULT_KEY_PREFIX).fenceKey;

/**
 * Connects `provider` and gets the server to cache the acquire and release scripts, so that the next
 * request on the wire is the one under test (and not an EVALSHA answered by NOSCRIPT).
 */
async function warmUp(provider: LockProvider): Promise<void> {
  await (await provider.acquire('warm-up', { ttlMs: 5_000 })).release();
}

describe('issue 11 #1: an acquire whose reply is lost (300 ms command timeout)', () => {
  it('a waiting acquire adopts the lock its lost attempt took: full ttl, the token that attempt drew', async () => {
    const { provider, faults } = await redis.proxied({ commandTimeoutMs: 300 });
    const key = 'lost-reply-wait';
    await warmUp(provider);
    const dropped = faults.dropNextReply();
    const outcome = await settled(provider.acquire(key, { ttlMs: 30_000, waitMs: 5_000 }));
    await dropped;
    expect(outcome.error).toBeUndefined();
    const lease = outcome.value!;
    const raw = redis.raw();
    // No second token was drawn and no second lock written: the retry found its own owner prefix at the
    // key and refreshed its ttl. (A retry that did not recognise it would have waited out its waitMs.)
    expect(await raw.get(fenceKeyOf(key))).toBe(String(lease.token));
    expect((await redis.provider().holder(key))?.token).toBe(lease.token);
    expect(await raw.pttl(lockKeyOf(key))).toBeGreaterThan(25_000);
    expect(outcome.elapsedMs).toBeLessThan(2_000 + SLACK_MS);
    await lease.release();
    expect(await raw.exists(lockKeyOf(key))).toBe(0);
  });

  it('tryAcquire rejects BackendUnavailableError and has deleted what its lost attempt took when it does', async () => {
    const { provider, faults } = await redis.proxied({ commandTimeoutMs: 300 });
    const key = 'lost-reply-try';
    await warmUp(provider);
    const dropped = faults.dropNextReply();
    const outcome = await settled(provider.tryAcquire(key, { ttlMs: 30_000 }));
    await dropped;
    expect(outcome.error).toBeInstanceOf(BackendUnavailableError);
    const raw = redis.raw();
    // The attempt ran (it drew a token), and the owner-prefix delete ran before the caller was answered.
    expect(await raw.get(fenceKeyOf(key))).not.toBeNull();
    expect(await raw.exists(lockKeyOf(key))).toBe(0);
    // Anyone else can take it at once.
    const next = await redis.provider().tryAcquire(key, { ttlMs: 5_000 });
    expect(next).not.toBeNull();
    await next!.release();
  });

  it.each([3_000, 300])(
    'a lost reply, then a 1 s outage (connectTimeoutMs %i): the lock is free within ~1 s of the server being reachable again',
    async (connectTimeoutMs) => {
      const { provider, faults } = await redis.proxied({ commandTimeoutMs: 300, connectTimeoutMs });
      const key = `lost-reply-outage-${connectTimeoutMs}`;
      await warmUp(provider);
      const dropped = faults.dropNextReply();
      const outcome = settled(provider.tryAcquire(key, { ttlMs: 30_000 }));
      await dropped;
      faults.outage(1_000);
      await faults.whenListening();
      const reachableAt = performance.now();
      const raw = redis.raw();
      // Polled on a direct connection: the lock the lost attempt took, until its withdrawal lands.
      expect(
        await eventually(async () => (await raw.exists(lockKeyOf(key))) === 0, 1_000 + SLACK_MS, 10),
      ).toBe(true);
      const goneMs = performance.now() - reachableAt;
      console.info(
        `[redis] connectTimeoutMs ${connectTimeoutMs}: reachable again → orphan gone ${goneMs.toFixed(1)} ms`,
      );
      expect((await outcome).error).toBeInstanceOf(BackendUnavailableError);
      // The reconnect back-off (≤ 500 ms), and with a short connect timeout one retry back-off (≤ 1 s).
      expect(goneMs).toBeLessThan(1_500 + SLACK_MS);
    },
  );

  it('tryAcquire against a paused server rejects after its command timeout; the late grant is deleted on resume', async () => {
    const provider = redis.urlProvider({ commandTimeoutMs: 300 });
    const key = 'paused-try';
    const raw = redis.raw();
    const tokenBefore = await raw.get(fenceKeyOf(key));
    await warmUp(provider);
    redis.server.pause();
    let outcome: Awaited<ReturnType<typeof settled<Lease | null>>>;
    try {
      outcome = await settled(provider.tryAcquire(key, { ttlMs: 30_000 }));
    } finally {
      redis.server.resume();
    }
    expect(outcome.error).toBeInstanceOf(BackendUnavailableError);
    // The attempt (300 ms) and the first try of its withdrawal (300 ms, awaited by core).
    expect(outcome.elapsedMs).toBeLessThan(600 + SLACK_MS);
    // On resume Redis ran the queued acquire (it drew a token), then the delete sent after it.
    expect(await eventually(async () => (await raw.get(fenceKeyOf(key))) !== tokenBefore, 2_000)).toBe(true);
    expect(await eventually(async () => (await raw.exists(lockKeyOf(key))) === 0, 2_000)).toBe(true);
  });

  it('an acquire whose waitMs runs out during a server pause is answered within waitMs + settleGraceMs + one command timeout; nothing is left after the resume', async () => {
    const provider = redis.urlProvider({ commandTimeoutMs: 300, settleGraceMs: 500 });
    const key = 'paused-wait';
    await warmUp(provider);
    redis.server.pause();
    let outcome: Awaited<ReturnType<typeof settled<Lease>>>;
    try {
      outcome = await settled(provider.acquire(key, { ttlMs: 30_000, waitMs: 1_000 }));
    } finally {
      redis.server.resume();
    }
    expect(outcome.error).toBeInstanceOf(BackendUnavailableError);
    expect((outcome.error as BackendUnavailableError).tries).toBeGreaterThan(1);
    expect(outcome.elapsedMs).toBeLessThan(1_000 + 500 + 300 + SLACK_MS);
    // Every attempt and the withdrawal after them ran in order once the server resumed.
    expect(await eventually(async () => (await redis.raw().exists(lockKeyOf(key))) === 0, 2_000)).toBe(true);
    expect(await redis.provider().holder(key)).toBeNull();
  });
});

describe('issue 11 #3: a waiting acquire rides out a server outage', () => {
  it('a 3.6 s outage does not reject a waitMs 20 000 waiter; it holds the lock soon after the holder releases', async () => {
    const key = 'outage-proxy';
    const holder = await redis.provider().acquire(key, { ttlMs: 60_000 });
    const { provider, faults } = await redis.proxied();
    expect((await provider.holder(key))?.token).toBe(holder.token);
    const waiting = settled(provider.acquire(key, { ttlMs: 30_000, waitMs: 20_000 }));
    await sleep(200);
    faults.outage(3_600);
    await sleep(3_600);
    await faults.whenListening();
    await sleep(300);
    const releasedAt = performance.now();
    await holder.release();
    const { value: lease, error } = await waiting;
    expect(error).toBeUndefined();
    // Woken by the release notice once the subscriber is back, at worst by the 1 s fallback re-check.
    expect(performance.now() - releasedAt).toBeLessThan(1_000 + SLACK_MS);
    expect(lease!.token > holder.token).toBe(true);
    await lease!.release();
  });

  it('a 3.6 s server restart (SIGKILL, back empty) does not reject the waiter; it holds the lock right after', async () => {
    const server = await startRedis();
    const holderSide = createRedisProvider({ url: server.url });
    const waiterSide = createRedisProvider({ url: server.url });
    try {
      const key = 'outage-restart';
      await holderSide.acquire(key, { ttlMs: 60_000 });
      const waiting = settled(waiterSide.acquire(key, { ttlMs: 30_000, waitMs: 20_000 }));
      await sleep(200);
      await server.kill();
      await sleep(3_600);
      await server.restart();
      const backAt = performance.now();
      const { value: lease, error } = await waiting;
      expect(error).toBeUndefined();
      // The restart forgot the held lock (no persistence): the waiter takes it once it has reconnected.
      expect(performance.now() - backAt).toBeLessThan(1_000 + SLACK_MS);
      await lease!.release();
    } finally {
      await Promise.allSettled([holderSide.close(), waiterSide.close()]);
      await server.stop();
    }
  });
});

describe('issue 11 #4: a released lease is never reported lost', () => {
  it('release() while an extension is in flight right after SCRIPT FLUSH: 10 of 10 leases keep their signal', async () => {
    const provider = redis.provider();
    const raw = redis.raw();
    const ttlMs = 1_000;
    const leases: Lease[] = [];
    for (let trial = 0; trial < 10; trial++) {
      const lease = await provider.acquire(`flushed-${trial}`, { ttlMs });
      leases.push(lease);
      await raw.script('FLUSH');
      // The extension and the release both find the script cache empty (NOSCRIPT, then EVAL).
      const extending = settled(lease.extend());
      await lease.release();
      const extended = await extending;
      if (extended.error !== undefined) expect(extended.error).toBeInstanceOf(NotHeldError);
      await expect(lease.extend()).rejects.toBeInstanceOf(NotHeldError);
    }
    await sleep(ttlMs + 300);
    expect(leases.filter((lease) => lease.signal.aborted).map((lease) => lease.key)).toEqual([]);
    for (let trial = 0; trial < 10; trial++) expect(await raw.exists(lockKeyOf(`flushed-${trial}`))).toBe(0);
  });
});

describe('issue 12 #2: a permit waiter aborted while the connection is down (connectTimeoutMs 10 000)', () => {
  // Before: the semaphore and read-write acquire held the caller's answer until the readiness wait
  // ended (connectTimeoutMs), because the withdrawal of the waiter's place in line waited for a
  // connection. Now the caller is answered at once and core withdraws in the background.
  for (const kind of ['semaphore', 'write lock'] as const) {
    it(`${kind}: rejects with the abort reason well within connectTimeoutMs; its place in line is gone after the outage`, async () => {
      const { provider, faults } = await redis.proxied({ connectTimeoutMs: 10_000 });
      const direct = redis.provider();
      const key = `abort-down-${kind.replace(' ', '-')}`;
      const acquire = (
        from: LockProvider,
        options: Parameters<LockProvider['acquire']>[1],
      ): Promise<Lease> =>
        kind === 'semaphore'
          ? from.semaphore(key, { limit: 1 }).acquire(options)
          : from.readWriteLock(key).write.acquire(options);
      const holder = await acquire(direct, { ttlMs: 30_000 });
      const controller = new AbortController();
      const waiting = settled(acquire(provider, { waitMs: 60_000, signal: controller.signal }));
      await sleep(300);
      faults.outage(20_000);
      await sleep(600);
      const reason = new Error('user abort');
      controller.abort(reason);
      const outcome = await waiting;
      expect(outcome.error).toBe(reason);
      // Measured from before the outage: the abort was 600 ms in; connectTimeoutMs is 10 000.
      expect(outcome.elapsedMs).toBeLessThan(300 + 600 + 3_000);
      faults.heal();
      await faults.whenListening();
      await holder.release();
      // The aborted waiter's place in line is withdrawn once reachable: a new request is admitted.
      let next: Lease | null = null;
      await eventually(async () => {
        next = await (kind === 'semaphore'
          ? direct.semaphore(key, { limit: 1 }).tryAcquire({ ttlMs: 5_000 })
          : direct.readWriteLock(key).write.tryAcquire({ ttlMs: 5_000 }));
        return next !== null;
      }, 10_000);
      expect(next).not.toBeNull();
      await (next as Lease | null)?.release();
    });
  }
});

describe('a lost reply, then refused reconnects: the error says it in dlock terms', () => {
  it("tryAcquire: 'the connection closed before the reply arrived', no ioredis option name; classified as maybe applied", async () => {
    const { provider, faults } = await redis.proxied({ commandTimeoutMs: 300 });
    const key = 'lost-reply-words';
    await warmUp(provider);
    const dropped = faults.dropNextReply().then(() => faults.refuseConnections(1_500));
    const outcome = await settled(provider.tryAcquire(key, { ttlMs: 30_000 }));
    await dropped;
    expect(outcome.error).toBeInstanceOf(BackendUnavailableError);
    const message = (outcome.error as Error).message;
    expect(message).toContain('the connection closed before the reply arrived');
    expect(message).not.toMatch(/maxRetriesPerRequest|max retries|enableOfflineQueue/);
    // Maybe applied: the lock it took is deleted (withdrawn) once the server is reachable again.
    await faults.whenListening();
    expect(await redis.raw().get(fenceKeyOf(key))).not.toBeNull();
    await eventually(async () => (await redis.raw().exists(lockKeyOf(key))) === 0, 10_000, 50);
    expect(await redis.raw().exists(lockKeyOf(key))).toBe(0);
  });
});
