import { randomBytes } from 'node:crypto';
import { sleep } from '@dlock/conformance';
import type { Lease } from '@dlock/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { redisKeyLayout } from '../src/index.js';
import { PLACE_MS } from '../src/queue-lua.js';
import { acquireScript, runScript } from '../src/scripts.js';
import { redisFixture } from './servers.js';

// Issue 13: the Redis lock's waiting line. A waiting request that finds the lock busy takes a place in
// a FIFO line beside the lock key; a release wakes only the head of the line, on its provider's inbox.

const redis = redisFixture();
beforeAll(() => redis.start());

const keysOf = (key: string) => redisKeyLayout(key, 'dlock:').scriptKeys;

/** Waiting owners of `key`'s line, first in line first. */
async function line(key: string): Promise<string[]> {
  return redis.raw().zrange(keysOf(key)[2]!, 0, -1);
}

/** Polls (bounded) until `check` holds; fails the test with `what` otherwise. */
async function until(what: string, check: () => Promise<boolean>, withinMs = 10_000): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}`);
    await sleep(20);
  }
}

/** A waiter that joined the line and then went silent (a crashed process): nobody gets its notices. */
async function ghostWaiter(key: string): Promise<string> {
  const owner = `dlock1:${randomBytes(16).toString('hex')}:`;
  await runScript(redis.raw(), acquireScript, keysOf(key), [owner, 5_000, ':ghost', 'ghost:inbox']);
  return owner;
}

describe('redis lock waiting line', () => {
  it('serves waiters of different providers in arrival order, one admit notice per hand-off', async () => {
    const key = 'line-order';
    const holder = await redis.provider().acquire(key, { ttlMs: 10_000 });
    const notices: string[] = [];
    const observer = redis.raw();
    observer.on('pmessage', (_pattern: string, _channel: string, message: string) => notices.push(message));
    await observer.psubscribe('dlock:wake:*');
    const order: number[] = [];
    const done: Promise<void>[] = [];
    for (let index = 0; index < 5; index++) {
      const waiter = redis.provider();
      done.push(
        waiter.acquire(key, { ttlMs: 10_000, waitMs: 20_000 }).then(async (lease) => {
          order.push(index);
          await lease.release();
        }),
      );
      await until(`waiter ${index} in line`, async () => (await line(key)).length === index + 1);
    }
    const queued = await line(key);
    await holder.release();
    await Promise.all(done);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    // The holder's release and four waiters' releases each admitted exactly the next in line; the last
    // release found nobody waiting.
    await until('five notices', async () => notices.length >= 5, 2_000);
    expect(notices).toEqual(queued.map((owner) => `admit:${owner}`));
    expect(await redis.raw().exists(...keysOf(key).slice(0, 3))).toBe(0);
  });

  it('a waiter that stops re-attempting loses its place by the server clock', async () => {
    const key = 'line-ghost';
    const holder = await redis.provider().acquire(key, { ttlMs: 10_000 });
    const ghost = await ghostWaiter(key);
    const waiting = redis.provider().acquire(key, { ttlMs: 10_000, waitMs: 20_000 });
    await until('the waiter behind the ghost', async () => (await line(key)).length === 2);
    expect((await line(key))[0]).toBe(ghost);
    await holder.release();
    // The admit notice went to the ghost; its place lapses PLACE_MS after it joined, and the waiter
    // behind it takes the lock at its next re-attempt.
    const lease = await waiting;
    expect(await line(key)).toEqual([]);
    await lease.release();
  });

  it('tryAcquire never joins the line, and does not overtake a waiter in it', async () => {
    const key = 'line-try';
    const provider = redis.provider();
    const holder = await provider.acquire(key, { ttlMs: 10_000 });
    expect(await provider.tryAcquire(key)).toBeNull();
    expect(await redis.raw().exists(...keysOf(key).slice(0, 3))).toBe(0);
    await ghostWaiter(key);
    await holder.release();
    // Free, but a live place is ahead: the try is answered busy and leaves the line as it was.
    expect(await provider.tryAcquire(key)).toBeNull();
    expect(await line(key)).toHaveLength(1);
    await until('the ghost place lapsed', async () => (await line(key)).length === 0, 3 * PLACE_MS);
    const lease = await provider.tryAcquire(key);
    expect(lease).not.toBeNull();
    await lease?.release();
  });

  it('a waiter that gives up leaves the line; the next one is served', async () => {
    const key = 'line-withdraw';
    const holder = await redis.provider().acquire(key, { ttlMs: 10_000 });
    const gaveUp = new AbortController();
    const first = redis.provider().acquire(key, { ttlMs: 10_000, signal: gaveUp.signal });
    await until('the first waiter in line', async () => (await line(key)).length === 1);
    const second = redis.provider().acquire(key, { ttlMs: 10_000, waitMs: 20_000 });
    await until('the second waiter in line', async () => (await line(key)).length === 2);
    const firstOwner = (await line(key))[0];
    gaveUp.abort();
    await expect(first).rejects.toThrow();
    expect(await line(key)).not.toContain(firstOwner);
    expect(await line(key)).toHaveLength(1);
    await holder.release();
    const lease: Lease = await second;
    await lease.release();
    expect(await redis.raw().exists(...keysOf(key).slice(0, 3))).toBe(0);
  });
});
