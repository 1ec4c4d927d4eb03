import { describeLockProvider } from '@dlock/conformance';
import type { LockProvider } from '@dlock/core';
import { permitLayout } from '@dlock/redis';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { closeRawClients, deadUrls, rawClients, storedValues } from './support.js';

const CONNECT_TIMEOUT_MS = 500;

let cluster: RedisNodes;
let operator: Redis[];
// The kit's providers run on clients this file creates, so `crash` can cut their connections.
const connectionsOf = new Map<LockProvider, Redis[]>();

beforeAll(async () => {
  cluster = await startRedisNodes(5);
  operator = rawClients(cluster.urls);
});

afterAll(async () => {
  await Promise.allSettled([...connectionsOf.values()].map(closeRawClients));
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
});
