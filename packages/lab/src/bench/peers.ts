import { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import { Mutex, RedlockMutex } from 'redis-semaphore';
import Redlock from 'redlock';
import type { ServerSet } from '../servers.js';
import { connectRedis } from './floor.js';

const PEER_TTL_MS = 10_000;

export interface Peer {
  readonly name: string;
  operation(): Promise<void>;
}

function redisPeers(clients: Redis[], key: string): Peer[] {
  const redlock = new Redlock(clients, { retryCount: 0 });
  const mutexOptions = {
    lockTimeout: PEER_TTL_MS,
    acquireTimeout: 5_000,
    retryInterval: 5,
    refreshInterval: 0,
  };
  const [single] = clients;
  return [
    {
      name: 'redlock (library)',
      async operation() {
        const lock = await redlock.acquire([`${key}:redlock`], PEER_TTL_MS);
        await lock.release();
      },
    },
    {
      name: clients.length === 1 || !single ? 'redis-semaphore Mutex' : 'redis-semaphore RedlockMutex',
      async operation() {
        const mutex =
          clients.length === 1 && single
            ? new Mutex(single, `${key}:semaphore`, mutexOptions)
            : new RedlockMutex(clients, `${key}:semaphore`, mutexOptions);
        await mutex.acquire();
        await mutex.release();
      },
    },
  ];
}

/**
 * Other libraries doing the same job on the same servers: the raw `redlock` library and
 * redis-semaphore's Mutex on Redis, etcd3's own `client.lock()` on etcd. ZooKeeper has no peer here
 * (its client library ships no lock recipe). Measured interleaved with the backends and the floor.
 */
export function openPeers(set: ServerSet, key: string): { peers: Peer[]; close(): void } {
  if (set.kind === 'redis') {
    const clients = set.endpoints.map((url) => connectRedis(url));
    return {
      peers: redisPeers(clients, key),
      close: () => {
        for (const client of clients) client.disconnect();
      },
    };
  }
  if (set.kind === 'etcd') {
    const client = new Etcd3({ hosts: set.endpoints });
    return {
      peers: [
        {
          name: 'etcd3 client.lock()',
          async operation() {
            const lock = await client
              .lock(`${key}:etcd3`)
              .ttl(PEER_TTL_MS / 1000)
              .acquire();
            await lock.release();
          },
        },
      ],
      close: () => client.close(),
    };
  }
  return { peers: [], close: () => {} };
}
