import {
  InvalidArgumentError,
  LockError,
  type PermitLease,
  SemaphoreLimitMismatchError,
  UnsupportedError,
} from '@dlock/core';
import { describe, expect, it } from 'vitest';
import { createEtcdProvider, permitQueuePrefix, semaphorePrefix } from '../src/index.js';
import { figure, settle, sleep, within } from './etcd.js';
import {
  PUSHED_WAITER,
  describeWaiterEdges,
  etcdHarness,
  serverWatchers,
  txnsStarted,
} from './primitives.js';

const NAMESPACE = 'dlock-semaphore/';
const etcd = etcdHarness();
const open = etcd.open;
let nameCounter = 0;
const freshName = (label: string) => `sem-${label}-${process.pid}-${nameCounter++}`;
const keysOf = (name: string) => etcd.raw.keys(semaphorePrefix(NAMESPACE, name));

/**
 * Starts `count` waiters for one permit each, one after the other, each queued before the next starts.
 * A waiter releases its permit `holdMs` after it got it, unless `holdMs` is undefined.
 */
async function queueWaiters(
  name: string,
  limit: number,
  count: number,
  queuedBefore: number,
  holdMs?: number,
): Promise<Array<Promise<{ value: PermitLease | undefined; error: unknown }>>> {
  const waiting: Array<Promise<{ value: PermitLease | undefined; error: unknown }>> = [];
  for (let i = 0; i < count; i++) {
    const semaphore = open(PUSHED_WAITER).semaphore(name, { limit });
    const acquired = semaphore.acquire({ waitMs: 30_000 }).then(async (lease) => {
      if (holdMs !== undefined) {
        await sleep(holdMs);
        await lease.release();
      }
      return lease;
    });
    waiting.push(settle(acquired));
    await within(
      `waiter ${i} is queued`,
      5_000,
      async () => (await keysOf(name)).length === queuedBefore + i + 1,
    );
  }
  return waiting;
}

describe('semaphore key layout', () => {
  it('a permit is the key <ns><escaped name>/<limit>/<session lease hex> on the session lease, valued <permits>:<identity>', async () => {
    const provider = open();
    const name = `${freshName('layout')}/tenant%42`;
    const lease = await provider.semaphore(name, { limit: 3 }).acquire({ permits: 2, identity: 'worker:1' });
    const key = `${permitQueuePrefix(NAMESPACE, name, 3)}${provider.sessionLeaseId}`;
    expect(key).toContain('%2Ftenant%2542/3/');
    expect(await keysOf(name)).toEqual([key]);
    const { kvs } = await etcd.raw.client.kv.range({ key: Buffer.from(key) });
    expect(kvs[0]?.value.toString()).toBe('2:worker:1');
    expect(BigInt(kvs[0]?.lease ?? 0).toString(16)).toBe(provider.sessionLeaseId);
    expect(lease.token).toBe(BigInt(kvs[0]?.create_revision ?? 0));
    expect(await provider.semaphore(name, { limit: 3 }).holders()).toEqual([
      { identity: 'worker:1', token: lease.token, permits: 2 },
    ]);
    await lease.release();
    expect(await keysOf(name)).toEqual([]);
  });

  it('a lock, a semaphore and a read-write lock of one name, and the semaphores "a" and "a/b", are independent', async () => {
    const name = freshName('apart');
    const [one, two, three, four] = [open(), open(), open(), open()];
    const lock = await one.acquire(name);
    const permit = await two.semaphore(name, { limit: 1 }).tryAcquire();
    const write = await three.readWriteLock(name).write.tryAcquire();
    const nested = await four.semaphore(`${name}/b`, { limit: 1 }).tryAcquire();
    expect([permit, write, nested].every((lease) => lease !== null)).toBe(true);
    expect((await one.semaphore(name, { limit: 1 }).holders()).map((holder) => holder.token)).toEqual([
      permit?.token,
    ]);
    await Promise.all([lock, permit, write, nested].map((lease) => lease?.release()));
  });

  it('provider.election has no semaphore, and a semaphore namespace equal to another one is refused', () => {
    const provider = open();
    expect(() => provider.election.semaphore('x', { limit: 1 })).toThrow(UnsupportedError);
    for (const options of [
      { semaphoreNamespace: 'dlock/' },
      { namespace: '', semaphoreNamespace: '' },
      { readWriteNamespace: 'dlock-semaphore/' },
      { semaphoreNamespace: 7 as unknown as string },
    ]) {
      let error: unknown;
      try {
        createEtcdProvider({ hosts: etcd.server.endpoint, ...options });
      } catch (caught) {
        error = caught;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toMatch(/^(semaphoreNamespace|readWriteNamespace)$/);
    }
  });
});

describe('the limit is stored in the keys', () => {
  it('a request with another limit is refused without leaving a key, while anyone holds or waits', async () => {
    const name = freshName('mismatch');
    const holder = await open().semaphore(name, { limit: 2 }).acquire({ permits: 2 });
    const waiting = settle(open().semaphore(name, { limit: 2 }).acquire({ waitMs: 10_000 }));
    await within('the waiter is queued', 5_000, async () => (await keysOf(name)).length === 2);
    const before = await keysOf(name);

    const otherProvider = open();
    const other = otherProvider.semaphore(name, { limit: 5 });
    const error = await other.tryAcquire().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SemaphoreLimitMismatchError);
    expect((error as SemaphoreLimitMismatchError).storedLimit).toBe(2);
    expect(await keysOf(name)).toEqual(before);

    // The holder leaves; the waiter alone still keeps the limit.
    await holder.release();
    const next = (await waiting).value as PermitLease;
    await expect(other.acquire({ waitMs: 200 })).rejects.toBeInstanceOf(SemaphoreLimitMismatchError);
    await next.release();
    // Idle: the next client's limit counts.
    const relimited = await other.acquire({ permits: 5 });
    expect(await keysOf(name)).toEqual([
      `${permitQueuePrefix(NAMESPACE, name, 5)}${otherProvider.sessionLeaseId}`,
    ]);
    await relimited.release();
  });

  it('a key under the name that is not a permit key fails requests with a typed error, and is left alone', async () => {
    const name = freshName('foreign');
    const foreign = `${semaphorePrefix(NAMESPACE, name)}notes`;
    await etcd.raw.client.put(foreign).value('{"x":1}');
    const semaphore = open().semaphore(name, { limit: 2 });
    const error = await semaphore.tryAcquire().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LockError);
    expect((error as LockError).code).toBe('KEY_CONFLICT');
    expect((error as Error).message).toContain(foreign);
    expect(await keysOf(name)).toEqual([foreign]);
    await etcd.raw.client.delete().key(foreign);
  });
});

describe('waiting without a herd', () => {
  it('a release wakes only the first waiter; its admission wakes the one behind it, and so on', async () => {
    const name = freshName('no-herd');
    const holders = open({ sessionTtlSec: 6 });
    const [a, b] = [
      await holders.semaphore(name, { limit: 2 }).acquire(),
      await holders.semaphore(name, { limit: 2 }).acquire(),
    ];
    const watchersBefore = await serverWatchers(etcd.server.endpoint);
    const [first] = await queueWaiters(name, 2, 1, 2);
    if (!first) throw new Error('no waiter was queued');
    const rest = await queueWaiters(name, 2, 4, 3, 20);
    // Five waiters, one watch each: the first on the queue, every other on the key just ahead. A
    // waiter's watch is created after its key (its own watch stream), so the count is awaited, then
    // held for 300 ms: a sixth watch would be a herd.
    const watches = async () => (await serverWatchers(etcd.server.endpoint)) - watchersBefore;
    await within('one watch per waiter', 5_000, async () => (await watches()) >= 5);
    await sleep(300);
    expect(await watches()).toBe(5);

    const txnsBefore = await txnsStarted(etcd.server.endpoint);
    const releasedAt = performance.now();
    await a.release();
    const firstLease = (await first).value as PermitLease;
    figure('permit hand-off (release → first waiter holds)', performance.now() - releasedAt);
    await sleep(500);
    // The release, the first waiter's attempt and its touch, and the second waiter's re-check (it
    // is now first in line): nothing else. A herd would be an attempt per waiter.
    expect((await txnsStarted(etcd.server.endpoint)) - txnsBefore).toBeLessThanOrEqual(4);

    // Every later hand-off is pushed too (the fallback re-check is a minute away): each of the four
    // holds for 20 ms, then lets the next in.
    const chainStartedAt = performance.now();
    await Promise.all([b.release(), firstLease.release()]);
    for (const { error } of await Promise.all(rest)) expect(error).toBeUndefined();
    figure('four pushed hand-offs along the chain', performance.now() - chainStartedAt);
    expect(performance.now() - chainStartedAt).toBeLessThan(10_000);
    expect(await keysOf(name)).toEqual([]);
    await within(
      'no watch is left',
      5_000,
      async () => (await serverWatchers(etcd.server.endpoint)) === watchersBefore,
    );
  });

  it('a big request is not overtaken, and one release admits it and the small one behind it', async () => {
    const name = freshName('big');
    const full = await open().semaphore(name, { limit: 3 }).acquire({ permits: 2 });
    const big = settle(
      open(PUSHED_WAITER).semaphore(name, { limit: 3 }).acquire({ permits: 2, waitMs: 20_000 }),
    );
    await within('the big request is queued', 5_000, async () => (await keysOf(name)).length === 2);
    const small = open(PUSHED_WAITER).semaphore(name, { limit: 3 });
    // One permit is free, but the big request ahead comes first (no barging).
    expect(await small.tryAcquire()).toBeNull();
    const smallWaiting = settle(small.acquire({ waitMs: 20_000 }));
    await within('the small request is queued', 5_000, async () => (await keysOf(name)).length === 3);

    const releasedAt = performance.now();
    await full.release();
    const [bigLease, smallLease] = await Promise.all([big, smallWaiting]);
    expect(performance.now() - releasedAt).toBeLessThan(5_000);
    expect((bigLease.value as PermitLease).token < (smallLease.value as PermitLease).token).toBe(true);
    await Promise.all([bigLease.value?.release(), smallLease.value?.release()]);
  });
});

describe('a holder in another process', () => {
  it('killed (SIGKILL): the waiter is woken by its session expiry, not by the fallback re-check', async () => {
    const name = freshName('sigkill');
    const child = etcd.holderProcess(name, 'permit:1');
    await child.waitForLine(/^acquired \d+$/, 15_000);
    const waiting = settle(open(PUSHED_WAITER).semaphore(name, { limit: 1 }).acquire({ waitMs: 30_000 }));
    await sleep(200);
    const killedAt = performance.now();
    await child.kill();
    const { value, error } = await waiting;
    expect(error).toBeUndefined();
    const recoveredMs = performance.now() - killedAt;
    figure('holder SIGKILLed → waiter holds (session ttl 2 s)', recoveredMs);
    // The session ttl (2 s) plus etcd's expiry check, far below the one-minute fallback.
    expect(recoveredMs).toBeLessThan(10_000);
    await (value as PermitLease).release();
  });
});

describeWaiterEdges(etcd, {
  lease: 'permit',
  fixtureKind: 'permit:1',
  hold: (provider, name) => provider.semaphore(name, { limit: 1 }).acquire(),
  contend: (provider, name, options) => provider.semaphore(name, { limit: 1 }).acquire(options),
  holderTokens: async (provider, name) =>
    (await provider.semaphore(name, { limit: 1 }).holders()).map((holder) => holder.token),
  keysOf: (raw, name) => raw.keys(semaphorePrefix(NAMESPACE, name)),
});
