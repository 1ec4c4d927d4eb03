import { eventually } from '@dlock/conformance';
import { type Lease, LockLostError, type LockProvider, renewInBackground } from '@dlock/core';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { type PermitKind, closeRawClients, connected, rawClients, sleep, tryPermit } from './support.js';

/**
 * Issue 12 #7: three nodes without persistence, ttl 3000 ms, renewal every 1000 ms. Before, the
 * extension only refreshed the nodes that still had the key: a node that forgot it (FLUSHALL, a
 * restart) stayed empty, so after a second node forgot it too, another client won a majority while the
 * holder still held a valid lease. Now every extension repairs the nodes that lost the key, once a
 * majority has confirmed the lease, and an extension that finds a majority lost aborts the lease at once.
 */
const TTL_MS = 3_000;
const RENEW_EVERY_MS = 1_000;
/** Slack for a shared, busy machine on every "within one renewal" bound. */
const MARGIN_MS = 1_000;

let cluster: RedisNodes;
let operator: Redis[];
const providers: LockProvider[] = [];
let keyCounter = 0;
const freshKey = (label: string) => `repair-${label}-${process.pid}-${keyCounter++}`;

function open(identity: string): LockProvider {
  const provider = createRedlockProvider({ urls: cluster.urls, identity, connectTimeoutMs: 1_000 });
  providers.push(provider);
  return provider;
}

/** Which nodes hold A's value: 'A' or '-' per node, node 1 first. */
async function layout(key: string): Promise<string> {
  const values = await Promise.all(operator.map((client) => client.get(key)));
  return values.map((value) => (value === null ? '-' : value.endsWith(':A') ? 'A' : 'B')).join(' ');
}

async function heldRenewed(key: string): Promise<{ lease: Lease; stop: () => void }> {
  const a = open('A');
  await connected(a);
  const lease = await a.acquire(key, { ttlMs: TTL_MS });
  const renewal = renewInBackground(lease, { intervalMs: RENEW_EVERY_MS });
  expect(await eventually(async () => (await layout(key)) === 'A A A', 1_000)).toBe(true);
  return { lease, stop: () => renewal.stop() };
}

beforeAll(async () => {
  cluster = await startRedisNodes(3);
  operator = rawClients(cluster.urls);
});

afterEach(async () => {
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  await Promise.all(
    cluster.nodes.map(async (node) => {
      if (!node.running) await node.restart();
    }),
  );
  await Promise.all(operator.map((client) => client.flushall()));
});

afterAll(async () => {
  await closeRawClients(operator);
  await cluster.stop();
});

describe('a renewed lease repairs its majority (issue 12 #7)', () => {
  it('a node that forgot the key (FLUSHALL) has it back within one renewal; after a second node forgets, nobody else can win', async () => {
    const key = freshKey('flush');
    const { lease, stop } = await heldRenewed(key);
    const b = open('B');
    await connected(b);

    await operator[0]!.flushall();
    const flushedAt = performance.now();
    expect(await eventually(async () => (await layout(key)) === 'A A A', RENEW_EVERY_MS + MARGIN_MS)).toBe(
      true,
    );
    console.log(`[redlock] FLUSHALL → key back on the node: ${Math.round(performance.now() - flushedAt)} ms`);

    await operator[1]!.flushall();
    // Node 1 was repaired, so A still holds nodes 1 and 3: B cannot win a majority.
    expect(await b.tryAcquire(key, { ttlMs: TTL_MS })).toBeNull();
    expect(lease.signal.aborted).toBe(false);
    expect(await eventually(async () => (await layout(key)) === 'A A A', RENEW_EVERY_MS + MARGIN_MS)).toBe(
      true,
    );
    expect((await b.holder(key))?.identity).toBe('A');
    stop();
    await lease.release();
  });

  it('two nodes forgetting within one renewal: the next extension aborts the lease at once, not at the end of its window, and re-creates nothing', async () => {
    const key = freshKey('majority-lost');
    const { lease, stop } = await heldRenewed(key);
    await Promise.all([operator[0]!.flushall(), operator[1]!.flushall()]);
    const flushedAt = performance.now();
    expect(await eventually(() => lease.signal.aborted, RENEW_EVERY_MS + MARGIN_MS, 5)).toBe(true);
    const abortedAfterMs = performance.now() - flushedAt;
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect((lease.signal.reason as Error).message).toContain(
      '2 of 3 nodes no longer hold it (2 lost the key',
    );
    // Within one renewal of the loss, well before the window the last extension granted would close.
    expect(abortedAfterMs).toBeLessThan(TTL_MS - 200);
    expect(await layout(key)).toBe('- - A');
    stop();
    await lease.release();
    expect(await layout(key)).toBe('- - -');
  });

  it('a node kept out longer than the ttl (3.5 s) and restarted empty is repaired within one renewal', async () => {
    const key = freshKey('restart');
    const { lease, stop } = await heldRenewed(key);
    const node = cluster.nodes[2]!;
    await node.kill();
    await sleep(3_500);
    // Renewed on the two other nodes meanwhile: the lease outlives its ttl with a majority behind it.
    expect(lease.signal.aborted).toBe(false);
    await node.restart();
    const restartedAt = performance.now();
    // The provider reconnects (back-off capped at a quarter of the connect timeout), then the next
    // renewal re-creates the key there.
    expect(await eventually(async () => (await layout(key)) === 'A A A', RENEW_EVERY_MS + MARGIN_MS)).toBe(
      true,
    );
    console.log(`[redlock] restarted empty → repaired: ${Math.round(performance.now() - restartedAt)} ms`);
    expect(lease.signal.aborted).toBe(false);
    stop();
    await lease.release();
  });
});

/** Per node, whether it holds any entry of the semaphore or read-write lock `key`: 'E' or '-'. */
async function permitLayout(key: string): Promise<string> {
  const found = await Promise.all(operator.map((client) => client.keys(`{${key}}*`)));
  return found.map((keys) => (keys.length > 0 ? 'E' : '-')).join(' ');
}

const permitLease = (provider: LockProvider, kind: PermitKind, key: string, limit = 1) =>
  kind === 'semaphore'
    ? provider.semaphore(key, { limit }).acquire({ ttlMs: TTL_MS })
    : provider.readWriteLock(key).write.acquire({ ttlMs: TTL_MS });

describe('a renewed permit repairs its quorum (issue 12 #7, semaphores and read-write locks)', () => {
  it.each<PermitKind>(['semaphore', 'write lease'])(
    '%s: a node that forgot the entry has it back within one renewal; after a second node forgets, nobody else can win',
    async (kind) => {
      const key = freshKey(`permit-${kind.replace(' ', '-')}`);
      const a = open('A');
      const b = open('B');
      await Promise.all([connected(a), connected(b)]);
      const lease = await permitLease(a, kind, key);
      const renewal = renewInBackground(lease, { intervalMs: RENEW_EVERY_MS });
      await operator[0]!.flushall();
      expect(
        await eventually(async () => (await permitLayout(key)) === 'E E E', RENEW_EVERY_MS + MARGIN_MS),
      ).toBe(true);
      await operator[1]!.flushall();
      // Node 1 was repaired, so A still holds nodes 1 and 3: B cannot win a quorum.
      expect(await tryPermit(b, kind, key, TTL_MS)).toBeNull();
      expect(
        await eventually(async () => (await permitLayout(key)) === 'E E E', RENEW_EVERY_MS + MARGIN_MS),
      ).toBe(true);
      expect(lease.signal.aborted).toBe(false);
      renewal.stop();
      await lease.release();
      expect(await permitLayout(key)).toBe('- - -');
    },
  );

  it('a limit-3 semaphore, held on all 3 nodes: extend() re-creates the entries of a node that forgot them, up to the limit', async () => {
    const key = freshKey('permit-limit3');
    const a = open('A');
    await connected(a);
    const semaphore = a.semaphore(key, { limit: 3 });
    const leases = await Promise.all([1, 2, 3].map(() => semaphore.acquire({ ttlMs: TTL_MS })));
    await operator[0]!.flushall();
    // Before, the two nodes that still held it were short of the 3 this limit needs: LockLostError.
    await leases[0]!.extend();
    expect(leases[0]!.signal.aborted).toBe(false);
    expect(await permitLayout(key)).toBe('E E E');
    expect((await semaphore.holders()).length).toBe(1);
    await leases[1]!.extend();
    await leases[2]!.extend();
    expect((await semaphore.holders()).length).toBe(3);
    expect(await semaphore.tryAcquire({ ttlMs: TTL_MS })).toBeNull();
    await Promise.all(leases.map((lease) => lease.release()));
  });

  it('two nodes forgetting a write lease: the next extension rejects LockLostError at once and re-creates nothing', async () => {
    const key = freshKey('permit-majority-lost');
    const a = open('A');
    await connected(a);
    const lease = await permitLease(a, 'write lease', key);
    await Promise.all([operator[0]!.flushall(), operator[1]!.flushall()]);
    await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
    expect(lease.signal.aborted).toBe(true);
    expect(await permitLayout(key)).toBe('- - E');
    await lease.release().catch(() => {});
  });
});
