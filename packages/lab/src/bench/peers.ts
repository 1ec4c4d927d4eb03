import { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import { Mutex, RedlockMutex, RedlockSemaphore, Semaphore } from 'redis-semaphore';
import Redlock from 'redlock';
import type { ServerSet } from '../servers.js';
import type { LockTaker } from './contention.js';
import { connectRedis } from './floor.js';
import type { PermitTaker } from './semaphore.js';

const PEER_TTL_MS = 10_000;
/** A waiting peer acquire cannot be aborted: this bounds it (it fails as an error after that). */
const PEER_ACQUIRE_TIMEOUT_MS = 10_000;

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

/** `count` clients of a Redis server set, each its own connection to every node. */
function redisClientSets(set: ServerSet, count: number): { sets: Redis[][]; close(): void } {
  const sets = Array.from({ length: count }, () => set.endpoints.map((url) => connectRedis(url)));
  return {
    sets,
    close: () => {
      for (const client of sets.flat()) client.disconnect();
    },
  };
}

/** A peer library's lock under contention: one taker per client (set of connections). */
export interface ContentionPeer {
  readonly name: string;
  readonly takers: readonly LockTaker[];
}

/**
 * The peer locks that wait, for the contention loop: redis-semaphore's `Mutex` (one node) or
 * `RedlockMutex` (several) with its defaults, polling every 10 ms while it waits (the baseline of
 * issue 13's contention goal). Its acquire cannot be aborted: its acquire timeout bounds a wait.
 * etcd3's `client.lock()` is not here: it fails at once on a held lock instead of waiting; the
 * `redlock` library is not either: it retries a fixed number of times, then fails.
 */
export function openContentionPeers(
  set: ServerSet,
  clientCount: number,
): { peers: ContentionPeer[]; close(): void } {
  if (set.kind !== 'redis') return { peers: [], close: () => {} };
  const { sets, close } = redisClientSets(set, clientCount);
  const options = { lockTimeout: PEER_TTL_MS, acquireTimeout: PEER_ACQUIRE_TIMEOUT_MS, refreshInterval: 0 };
  const single = set.endpoints.length === 1;
  const takers = sets.map(
    (clients): LockTaker =>
      async (key) => {
        const mutex =
          single && clients[0]
            ? new Mutex(clients[0], key, options)
            : new RedlockMutex(clients, key, options);
        await mutex.acquire();
        return () => mutex.release();
      },
  );
  return {
    peers: [{ name: single ? 'redis-semaphore Mutex' : 'redis-semaphore RedlockMutex', takers }],
    close,
  };
}

/** A peer library's semaphore on the lab's servers. */
export interface SemaphorePeer {
  readonly name: string;
  /**
   * Takers of the semaphore `key`, one per client (set of connections): contenders are spread over
   * them as over dlock's providers.
   */
  takersFor(key: string): readonly PermitTaker[];
}

/**
 * redis-semaphore's `Semaphore` (one node) or `RedlockSemaphore` (several), with its defaults: it
 * polls every 10 ms while it waits and cannot be aborted, so its acquire timeout bounds a wait.
 * `RedlockSemaphore` grants on a majority of nodes whatever the limit (see @dlock/redlock's README).
 */
export function openSemaphorePeers(
  set: ServerSet,
  limit: number,
  clientCount: number,
): { peers: SemaphorePeer[]; close(): void } {
  if (set.kind !== 'redis') return { peers: [], close: () => {} };
  const { sets, close } = redisClientSets(set, clientCount);
  const options = { lockTimeout: PEER_TTL_MS, acquireTimeout: PEER_ACQUIRE_TIMEOUT_MS, refreshInterval: 0 };
  const single = set.endpoints.length === 1;
  const takersFor = (key: string) =>
    sets.map(
      (clients): PermitTaker =>
        async () => {
          const semaphore =
            single && clients[0]
              ? new Semaphore(clients[0], key, limit, options)
              : new RedlockSemaphore(clients, key, limit, options);
          await semaphore.acquire();
          return () => semaphore.release();
        },
    );
  return {
    peers: [{ name: single ? 'redis-semaphore Semaphore' : 'redis-semaphore RedlockSemaphore', takersFor }],
    close,
  };
}
