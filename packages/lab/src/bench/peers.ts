import { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import { Mutex, RedlockMutex } from 'redis-semaphore';
import Redlock from 'redlock';
import type { PeerRecord } from '../results.js';
import type { ServerSet } from '../servers.js';
import { connectRedis } from './floor.js';
import { measureLatency } from './histogram.js';

const PEER_TTL_MS = 10_000;

interface Peer {
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
 * Other libraries doing the same job on the same servers in the same run: the raw `redlock` library and
 * redis-semaphore's Mutex on Redis, etcd3's own `client.lock()` on etcd. ZooKeeper has no peer here
 * (its client library ships no lock recipe).
 */
export async function measurePeers(
  set: ServerSet,
  key: string,
  budgetMs: number,
  floorP50Ms: number | null,
  signal: AbortSignal,
  onPeer: (name: string) => void,
): Promise<{ peers: PeerRecord[]; errors: string[] }> {
  const closers: Array<() => void> = [];
  let peers: Peer[] = [];
  if (set.kind === 'redis') {
    const clients = set.endpoints.map((url) => connectRedis(url));
    closers.push(() => {
      for (const client of clients) client.disconnect();
    });
    peers = redisPeers(clients, key);
  } else if (set.kind === 'etcd') {
    const client = new Etcd3({ hosts: set.endpoints });
    closers.push(() => client.close());
    peers = [
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
    ];
  }
  const records: PeerRecord[] = [];
  const errors: string[] = [];
  try {
    for (const peer of peers) {
      onPeer(peer.name);
      try {
        const recorder = await measureLatency(() => peer.operation(), {
          budgetMs: budgetMs / peers.length,
          signal,
          warmup: 10,
        });
        const summary = recorder.summary();
        records.push({
          name: peer.name,
          placement: set.kind,
          serverCount: set.endpoints.length,
          ...summary,
          floorP50Ms,
          ratioToFloorP50: floorP50Ms ? Math.round((summary.p50Ms / floorP50Ms) * 100) / 100 : null,
        });
      } catch (error) {
        signal.throwIfAborted();
        errors.push(`${peer.name}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  } finally {
    for (const close of closers) close();
  }
  return { peers: records, errors };
}
