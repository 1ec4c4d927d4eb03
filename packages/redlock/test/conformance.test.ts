import { describeLockProvider } from '@dlock/conformance';
import type { LockProvider } from '@dlock/core';
import { permitLayout } from '@dlock/redis';
import { type FaultProxy, type RedisNodes, startRedisNodes } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import {
  closeRawClients,
  deadUrls,
  faultsOnEvery,
  listenersOn,
  proxyEach,
  rawClients,
  recordingClients,
  storedValues,
} from './support.js';

const CONNECT_TIMEOUT_MS = 500;
/** The network cases' providers: a 3 s outage (2 × this) must not reject a waiting acquire. */
const NETWORK_CONNECT_TIMEOUT_MS = 1_500;
/** Above the kit's 150 ms each-way delay, short enough that a black-holed release gives up quickly. */
const NETWORK_COMMAND_TIMEOUT_MS = 1_000;

let cluster: RedisNodes;
let operator: Redis[];
// The kit's providers run on clients this file creates, so `crash` can cut their connections and the
// soak can count their listeners.
const connectionsOf = new Map<LockProvider, { clients: Redis[]; subscribers: Redis[] }>();
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  cluster = await startRedisNodes(5);
  operator = rawClients(cluster.urls);
});

afterAll(async () => {
  await Promise.allSettled(
    [...connectionsOf.keys()].map((provider) => closeRawClients(allConnections(provider))),
  );
  await Promise.allSettled(proxies.map((proxy) => proxy.close()));
  await closeRawClients(operator);
  await cluster.stop();
});

async function openProvider(): Promise<LockProvider> {
  const connections = recordingClients(cluster.urls);
  const provider = createRedlockProvider({ clients: connections.clients });
  connectionsOf.set(provider, connections);
  return provider;
}

/** Every connection of a provider: its clients, and the subscriber connections it opened from them. */
const allConnections = (provider: LockProvider): Redis[] => {
  const connections = connectionsOf.get(provider);
  return connections ? [...connections.clients, ...connections.subscribers] : [];
};

/** A count summed over every node. */
async function overNodes(count: (client: Redis) => Promise<number>): Promise<number> {
  return (await Promise.all(operator.map(count))).reduce((sum, value) => sum + value, 0);
}

describeLockProvider('redlock', openProvider, {
  // The kit extends every quarter ttl and withLock's watchdog renews every third, so the ttl sets the
  // lag they tolerate: 1.5 s leaves about a second; 600 ms left 400 ms, and a 2-core machine running a
  // CPU hog beside other suites fell further behind (a redlock lease lapsed in withLock's watchdog).
  ttlMs: 1_500,
  marginMs: 400,
  // Like a crashed process: every connection drops at once and nothing is released.
  crash: async (provider) => {
    for (const client of allConnections(provider)) client.disconnect();
  },
  forceRelease: async (key) => {
    await Promise.all(operator.map((client) => client.del(key)));
  },
  residue: async (key, kind) => {
    if (kind === 'lock') return storedValues(operator, key);
    // A semaphore's or read-write lock's keys, on any node, once nobody holds or waits.
    const layout = permitLayout(key, '', kind === 'semaphore' ? 'semaphore' : 'rwlock');
    const residue: string[] = [];
    for (const client of operator) {
      for (const stored of [layout.stateKey, layout.expiryKey, layout.queueKey]) {
        if ((await client.exists(stored)) === 1) residue.push(`${client.options.port}: ${stored}`);
      }
    }
    return residue;
  },
  heldAtRawKey: async (key) => {
    const present = await Promise.all(operator.map((client) => client.exists(key)));
    return present.filter((exists) => exists === 1).length >= 3;
  },
  unreachable: async () =>
    createRedlockProvider({ urls: await deadUrls(5), connectTimeoutMs: CONNECT_TIMEOUT_MS }),
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  soak: {
    client: (providers) => ({
      'client listeners': providers.reduce(
        (sum, provider) =>
          sum + allConnections(provider).reduce((total, client) => total + listenersOn(client), 0),
        0,
      ),
    }),
    server: async () => ({
      // Not counted: each provider's admit inbox (one channel per node, subscribed on the provider's
      // first wait and kept until close), which a provider may first need during the churn.
      'subscribed channels': await overNodes(
        async (client) =>
          ((await client.pubsub('CHANNELS')) as string[]).filter(
            (name) => !name.startsWith('dlock-redlock-inbox:'),
          ).length,
      ),
      connections: await overNodes(
        async (client) => ((await client.client('LIST')) as string).trim().split('\n').length,
      ),
      keys: await overNodes((client) => client.dbsize()),
    }),
  },
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
