import { type NetworkFaults, eventually } from '@dlock/conformance';
import type { Lease, LockProvider } from '@dlock/core';
import {
  type FaultProxy,
  type RedisNodes,
  type RedisServer,
  freePort,
  startFaultProxy,
} from '@dlock/testkit';
import { Redis } from 'ioredis';

/** Plain ioredis clients to look at (or tamper with) the nodes directly, as an operator would. */
export function rawClients(urls: readonly string[]): Redis[] {
  return urls.map((url) => {
    const client = new Redis(url, { commandTimeout: 2_000, connectTimeout: 2_000, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    return client;
  });
}

export async function closeRawClients(clients: readonly Redis[]): Promise<void> {
  await Promise.allSettled(clients.map((client) => client.quit()));
  for (const client of clients) client.disconnect();
}

/** What each node stores at `lockKey`, as `address=value` for the nodes that have it. */
export async function storedValues(clients: readonly Redis[], lockKey: string): Promise<string[]> {
  const values = await Promise.all(clients.map((client) => client.get(lockKey)));
  return values.flatMap((value, index) =>
    value === null ? [] : [`${clients[index]!.options.port}=${value}`],
  );
}

/** URLs of loopback ports nobody listens on. */
export async function deadUrls(count: number): Promise<string[]> {
  const urls: string[] = [];
  for (let i = 0; i < count; i++) urls.push(`redis://127.0.0.1:${await freePort()}`);
  return urls;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * One fault for every node's proxy at once: the kit's network cases fault "the backend", which for
 * RedLock is the quorum. A fault on a minority of nodes is what RedLock absorbs by design (tested in
 * test/network.test.ts); on a majority or on all nodes the quorum itself is cut off, and all nodes is
 * the stronger case (no node's answer can settle the vote).
 */
export function faultsOnEvery(proxies: readonly FaultProxy[]): NetworkFaults {
  return {
    reset: () => {
      for (const proxy of proxies) proxy.reset();
    },
    blackhole: () => {
      for (const proxy of proxies) proxy.blackhole();
    },
    dropNextReply: async (options) => {
      await Promise.all(proxies.map((proxy) => proxy.dropNextReply(options)));
    },
    refuseConnections: (ms) => {
      for (const proxy of proxies) proxy.refuseConnections(ms);
    },
    delay: (ms, direction) => {
      for (const proxy of proxies) proxy.delay(ms, direction);
    },
    outage: (ms) => {
      for (const proxy of proxies) proxy.outage(ms);
    },
    heal: () => {
      for (const proxy of proxies) proxy.heal();
    },
  };
}

/** A fault proxy in front of each node, in node order. */
export function proxyEach(nodes: readonly RedisServer[]): Promise<FaultProxy[]> {
  return Promise.all(nodes.map((node) => startFaultProxy({ target: { host: node.host, port: node.port } })));
}

/**
 * Resolves once `provider` has had answers from a majority (its first operation would otherwise fail
 * fast, like a backend that is down at start, if connecting takes longer than its connect timeout on a
 * busy machine). Rejects after `withinMs`.
 */
export async function connected(provider: LockProvider, withinMs = 15_000): Promise<void> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    try {
      await provider.holder('dlock-test-connected');
      return;
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** Every node up and running again (resumed if paused, restarted if killed), for the next test. */
export async function restoreNodes(cluster: RedisNodes): Promise<void> {
  await Promise.all(
    cluster.nodes.map(async (node) => {
      node.resume();
      if (!node.running) await node.restart();
    }),
  );
}

/**
 * ioredis clients for a provider's `clients` option that also record the subscriber connections the
 * provider opens from them (`client.duplicate()`), so a test can count what all of them keep.
 */
export function recordingClients(urls: readonly string[]): { clients: Redis[]; subscribers: Redis[] } {
  const subscribers: Redis[] = [];
  const clients = urls.map((url) => {
    const client = new Redis(url, { commandTimeout: 2_000, connectTimeout: 2_000, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    const duplicate = client.duplicate.bind(client);
    client.duplicate = (override) => {
      const subscriber = duplicate(override);
      subscribers.push(subscriber);
      return subscriber;
    };
    return client;
  });
  return { clients, subscribers };
}

/** Listeners registered on a client, all events together. */
export const listenersOn = (client: Redis): number =>
  client.eventNames().reduce((sum, name) => sum + client.listenerCount(name), 0);

/**
 * Whether no node stores anything at `key` within `ms`. A read that fails (a node still coming back)
 * counts as "not yet", not as an error.
 */
export function noResidueWithin(clients: readonly Redis[], key: string, ms: number): Promise<boolean> {
  return eventually(
    async () => (await storedValues(clients, key).catch(() => ['unreadable'])).length === 0,
    ms,
  );
}

/** A semaphore (limit 1) or a read-write lock's write lease, for tests run on both primitives. */
export type PermitKind = 'semaphore' | 'write lease';

/** One try for the permit `kind` of `key`: the lease, or null when it is taken. */
export function tryPermit(
  provider: LockProvider,
  kind: PermitKind,
  key: string,
  ttlMs: number,
): Promise<Lease | null> {
  return kind === 'semaphore'
    ? provider.semaphore(key, { limit: 1 }).tryAcquire({ ttlMs })
    : provider.readWriteLock(key).write.tryAcquire({ ttlMs });
}
