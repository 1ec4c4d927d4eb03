import { join } from 'node:path';
import type { Lease } from '@dlock/core';
import { type EtcdCluster, type NodeProcess, startEtcdCluster, startNodeProcess } from '@dlock/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider } from '../src/index.js';
import { openProvider, settle, sleep } from './etcd.js';

/** Long enough to ride out a leader election (about 1 s with the testkit's 500 ms election timeout). */
const SESSION_TTL_SEC = 3;
const fixture = join(import.meta.dirname, 'fixtures', 'holder.mjs');

let cluster: EtcdCluster;
const providers: EtcdLockProvider[] = [];
const children: NodeProcess[] = [];
let keyCounter = 0;
const freshKey = (label: string) => `cluster-${label}-${process.pid}-${keyCounter++}`;

const open = () => {
  const provider = openProvider(cluster.endpoints, { sessionTtlSec: SESSION_TTL_SEC });
  providers.push(provider);
  return provider;
};

/** When a lease stopped being held: its release, or the moment its signal aborted. */
function trackEnd(lease: Lease): { end(): number } {
  let endedAt = Number.POSITIVE_INFINITY;
  lease.signal.addEventListener('abort', () => {
    endedAt = Math.min(endedAt, performance.now());
  });
  const release = lease.release.bind(lease);
  Object.assign(lease, {
    release: async () => {
      endedAt = Math.min(endedAt, performance.now());
      await release();
    },
  });
  return { end: () => endedAt };
}

beforeAll(async () => {
  cluster = await startEtcdCluster(3);
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  // Bring killed members back so every test starts with a full cluster.
  await Promise.all(cluster.members.filter((member) => !member.running).map((member) => member.restart()));
  await cluster.leader();
});

afterAll(async () => {
  await cluster?.stop();
});

describe('etcd on a 3-member cluster', () => {
  it('killing the leader while a lock is held never yields two holders, and service resumes', async () => {
    const key = freshKey('leader');
    const [holder, waiter] = [open(), open()];
    const lease = await holder.acquire(key);
    const held = trackEnd(lease);
    let waiterAt = Number.POSITIVE_INFINITY;
    // Settled into a value at once: a rejection while the test is busy elsewhere is not left unhandled
    // (issue 12 #4: the `.then()` chain awaited only at the end was the second, unhandled promise).
    const waiting = settle(
      waiter.acquire(key, { waitMs: 30_000 }).then((next) => {
        waiterAt = performance.now();
        return next;
      }),
    );
    await sleep(200);

    await (await cluster.leader()).kill();
    await cluster.leader();
    await sleep(SESSION_TTL_SEC * 1000);
    // The holder either kept its session through the election, or was told it lost it.
    if (!lease.signal.aborted) expect(waiterAt).toBe(Number.POSITIVE_INFINITY);
    await lease.release().catch(() => {});

    const { value: next, error } = await waiting;
    expect(error).toBeUndefined();
    if (!next) throw new Error('the waiter got no lease');
    expect(waiterAt).toBeGreaterThanOrEqual(held.end());
    expect(next.token > lease.token).toBe(true);
    await next.release();

    // New work goes through the surviving members.
    const fresh = await open().acquire(freshKey('after-leader'), { waitMs: 10_000 });
    await fresh.release();
  });

  it('killing a follower has no effect on a held lock or on waiters', async () => {
    const key = freshKey('follower');
    const [holder, waiter] = [open(), open()];
    const lease = await holder.acquire(key);
    const [follower] = await cluster.followers();
    await follower?.kill();

    await sleep(SESSION_TTL_SEC * 1000 + 500);
    expect(lease.signal.aborted).toBe(false);
    await lease.extend();
    expect(await waiter.tryAcquire(key)).toBeNull();

    const waiting = waiter.acquire(key, { waitMs: 10_000 });
    await sleep(100);
    const releasedAt = performance.now();
    await lease.release();
    const next = await waiting;
    expect(performance.now() - releasedAt).toBeLessThan(1_000);
    expect(next.token > lease.token).toBe(true);
    await next.release();
  });

  it('a holder stopped (SIGSTOP) past its session ttl sees its signal abort on resuming; the next token is higher', async () => {
    const key = freshKey('sigstop');
    const child = startNodeProcess(fixture, [cluster.endpoints.join(','), key, String(SESSION_TTL_SEC)]);
    children.push(child);
    const stoppedToken = BigInt((await child.waitForLine(/^acquired \d+$/, 15_000)).split(' ')[1] ?? '0');

    const waiter = open();
    const waiting = waiter.acquire(key, { waitMs: 30_000 });
    await sleep(200);
    child.pause();
    const next = await waiting;
    expect(next.token > stoppedToken).toBe(true);

    child.resume();
    const lost = await child.waitForLine(/^lost /, 5_000);
    expect(lost).toMatch(/session lease|keepalive/);
    // The stopped holder's release after resuming cannot touch the new holder's lock.
    child.send('release');
    await child.waitForLine(/^released$/, 5_000);
    expect((await waiter.holder(key))?.token).toBe(next.token);
    await next.release();
  });
});
