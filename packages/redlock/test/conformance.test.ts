import { describeLockProvider } from '@dlock/conformance';
import type { LockProvider } from '@dlock/core';
import { type FaultProxy, type RedisNodes, startRedisNodes } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { closeRawClients, deadUrls, faultsOnEvery, proxyEach, rawClients, storedValues } from './support.js';

const CONNECT_TIMEOUT_MS = 500;
/** The network cases' providers: a 3 s outage (2 × this) must not reject a waiting acquire. */
const NETWORK_CONNECT_TIMEOUT_MS = 1_500;
/** Above the kit's 150 ms each-way delay, short enough that a black-holed release gives up quickly. */
const NETWORK_COMMAND_TIMEOUT_MS = 1_000;

let cluster: RedisNodes;
let operator: Redis[];
// The kit's providers run on clients this file creates, so `crash` can cut their connections.
const connectionsOf = new Map<LockProvider, Redis[]>();
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  cluster = await startRedisNodes(5);
  operator = rawClients(cluster.urls);
});

afterAll(async () => {
  await Promise.allSettled([...connectionsOf.values()].map(closeRawClients));
  await Promise.allSettled(proxies.map((proxy) => proxy.close()));
  await closeRawClients(operator);
  await cluster.stop();
});

async function openProvider(): Promise<LockProvider> {
  const clients = cluster.urls.map((url) => {
    const client = new Redis(url, { commandTimeout: 2_000, connectTimeout: 2_000, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    return client;
  });
  const provider = createRedlockProvider({ clients });
  connectionsOf.set(provider, clients);
  return provider;
}

describeLockProvider('redlock', openProvider, {
  ttlMs: 600,
  marginMs: 400,
  // Like a crashed process: every connection drops at once and nothing is released.
  crash: async (provider) => {
    for (const client of connectionsOf.get(provider) ?? []) client.disconnect();
  },
  forceRelease: async (key) => {
    await Promise.all(operator.map((client) => client.del(key)));
  },
  residue: (key) => storedValues(operator, key),
  heldAtRawKey: async (key) => {
    const present = await Promise.all(operator.map((client) => client.exists(key)));
    return present.filter((exists) => exists === 1).length >= 3;
  },
  unreachable: async () =>
    createRedlockProvider({ urls: await deadUrls(5), connectTimeoutMs: CONNECT_TIMEOUT_MS }),
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  network: {
    // Providers from `urls` (the connections dlock opens itself), each node behind its own proxy.
    connect: async ({ retry } = {}) => {
      const nodeProxies = await proxyEach(cluster.nodes);
      proxies.push(...nodeProxies);
      const provider = createRedlockProvider({
        urls: nodeProxies.map((proxy) => proxy.url('redis')),
        connectTimeoutMs: NETWORK_CONNECT_TIMEOUT_MS,
        commandTimeoutMs: NETWORK_COMMAND_TIMEOUT_MS,
        retry,
      });
      return { provider, faults: faultsOnEvery(nodeProxies) };
    },
    connectTimeoutMs: NETWORK_CONNECT_TIMEOUT_MS,
    flushScriptCache: async () => {
      await Promise.all(operator.map((client) => client.script('FLUSH')));
    },
  },
});
