import { eventually } from '@dlock/conformance';
import { BackendUnavailableError, LockLostError, type LockProvider } from '@dlock/core';
import { type RedisNodes, type RedisServer, startRedisNodes } from '@dlock/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedlockProviderOptions, createRedlockProvider } from '../src/index.js';
import { restoreNodes } from './support.js';

const CONNECT_TIMEOUT_MS = 500;
const COMMAND_TIMEOUT_MS = 500;
/** Slack for a shared, busy machine on every "no hang" bound. */
const MARGIN_MS = 600;

let cluster: RedisNodes;
const providers: LockProvider[] = [];
let keyCounter = 0;
const freshKey = (label: string) => `quorum-${label}-${process.pid}-${keyCounter++}`;

function open(options: Partial<RedlockProviderOptions> = {}): LockProvider {
  const provider = createRedlockProvider({
    urls: cluster.urls,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    ...options,
  });
  providers.push(provider);
  return provider;
}

const addressOf = (node: RedisServer) => `${node.host}:${node.port}`;

async function outcomeOf<T>(work: Promise<T>): Promise<{ value?: T; error?: unknown; elapsedMs: number }> {
  const started = performance.now();
  try {
    const value = await work;
    return { value, elapsedMs: performance.now() - started };
  } catch (error) {
    return { error, elapsedMs: performance.now() - started };
  }
}

beforeAll(async () => {
  cluster = await startRedisNodes(5);
});

afterEach(async () => {
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  // Every test starts with all five nodes up (and empty of its keys: keys are fresh per test).
  await restoreNodes(cluster);
});

afterAll(async () => {
  await cluster.stop();
});

describe('RedLock with a minority of nodes down', () => {
  it('still acquires, excludes and hands over with 2 of 5 nodes killed', async () => {
    const key = freshKey('minority');
    const [a, b] = [open({ identity: 'a' }), open({ identity: 'b' })];
    await Promise.all([cluster.nodes[3]!.kill(), cluster.nodes[4]!.kill()]);

    const lease = await a.acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
    expect(await b.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
    expect(await b.holder(key)).toEqual({ identity: 'a', token: 0n });

    const waiting = b.acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
    await lease.release();
    const next = await waiting;
    expect((await a.holder(key))?.identity).toBe('b');
    await next.extend();
    await next.release();
    expect(await a.holder(key)).toBeNull();
  });

  it('does not stall on 2 paused nodes: acquire answers at the majority, tryAcquire within the command timeout', async () => {
    const key = freshKey('paused');
    const [a, b] = [open(), open()];
    // Warm the connections so the pause hits established sockets, as in a real stall.
    await a.holder(key);
    await b.holder(key);
    cluster.nodes[0]!.pause();
    cluster.nodes[1]!.pause();

    const acquired = await outcomeOf(a.acquire(key, { ttlMs: 10_000, waitMs: 5_000 }));
    expect(acquired.error).toBeUndefined();
    expect(acquired.elapsedMs).toBeLessThan(MARGIN_MS);
    // A refusal is only "held" once every vote is in, so the paused nodes cost their command timeout.
    const refused = await outcomeOf(b.tryAcquire(key, { ttlMs: 10_000 }));
    expect(refused.error).toBeUndefined();
    expect(refused.value).toBeNull();
    expect(refused.elapsedMs).toBeLessThan(COMMAND_TIMEOUT_MS + MARGIN_MS);
    await acquired.value?.release();
  });
});

describe('RedLock with a majority of nodes down', () => {
  it('rejects acquire with BackendUnavailableError naming the dead nodes, within the connect timeout', async () => {
    const key = freshKey('majority');
    const provider = open();
    const dead = cluster.nodes.slice(2);
    await Promise.all(dead.map((node) => node.kill()));

    const acquired = await outcomeOf(provider.acquire(key, { ttlMs: 10_000, waitMs: 60_000 }));
    expect(acquired.error).toBeInstanceOf(BackendUnavailableError);
    expect(acquired.elapsedMs).toBeLessThan(CONNECT_TIMEOUT_MS + MARGIN_MS);
    const error = acquired.error as BackendUnavailableError;
    expect(error.address.split(',').sort()).toEqual(dead.map(addressOf).sort());
    expect(error.message).toContain('3 of 5 nodes did not answer');

    // "Unreachable" is not "held": tryAcquire and holder must not answer null.
    await expect(provider.tryAcquire(key, { ttlMs: 10_000 })).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(provider.holder(key)).rejects.toBeInstanceOf(BackendUnavailableError);
  });

  it('resumes service once the nodes are back', async () => {
    const key = freshKey('resume');
    const provider = open();
    const dead = cluster.nodes.slice(0, 3);
    await Promise.all(dead.map((node) => node.kill()));
    await expect(provider.tryAcquire(key, { ttlMs: 10_000 })).rejects.toBeInstanceOf(BackendUnavailableError);

    await Promise.all(dead.map((node) => node.restart()));
    const resumed = await eventually(async () => {
      const lease = await provider.tryAcquire(key, { ttlMs: 10_000 }).catch(() => null);
      await lease?.release();
      return lease !== null;
    }, 5_000);
    expect(resumed).toBe(true);
  });

  it('a held lease whose majority goes down: extend is "unknown" (not lost), then the lease lapses at its validity', async () => {
    const key = freshKey('lapse');
    const provider = open();
    const ttlMs = 1_500;
    const lease = await provider.acquire(key, { ttlMs });
    await Promise.all(cluster.nodes.slice(0, 3).map((node) => node.kill()));

    await expect(lease.extend()).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(lease.signal.aborted).toBe(false);
    expect(await eventually(() => lease.signal.aborted, ttlMs + MARGIN_MS)).toBe(true);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    await expect(lease.release()).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});
