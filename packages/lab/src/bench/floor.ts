import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { findPackageDir } from '../paths.js';
import type { ServerSet } from '../servers.js';

const FLOOR_TTL_MS = 10_000;
const CONNECT_TIMEOUT_MS = 5_000;

const COMPARE_AND_DELETE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

export interface Floor {
  readonly protocol: string;
  operation(): Promise<void>;
  close(): Promise<void>;
}

export function connectRedis(url: string): Redis {
  const client = new Redis(url, {
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: false,
  });
  client.on('error', () => {
    // Surfaced as rejected commands.
  });
  return client;
}

async function redisFloor(endpoints: readonly string[], key: string): Promise<Floor> {
  const clients = endpoints.map((url) => {
    const client = connectRedis(url);
    client.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE });
    return client as Redis & { compareAndDelete(key: string, value: string): Promise<number> };
  });
  let sequence = 0;
  return {
    protocol:
      endpoints.length === 1
        ? 'SET NX PX + compare-and-delete script'
        : `SET NX PX + compare-and-delete script on ${endpoints.length} nodes in parallel`,
    async operation() {
      const value = `floor-${sequence++}`;
      await Promise.all(clients.map((client) => client.set(key, value, 'PX', FLOOR_TTL_MS, 'NX')));
      await Promise.all(clients.map((client) => client.compareAndDelete(key, value)));
    },
    async close() {
      for (const client of clients) client.disconnect();
    },
  };
}

/** The part of node-zookeeper-client (callback API) the floor uses. */
interface ZooKeeperClient {
  connect(): void;
  close(): void;
  once(event: 'connected', listener: () => void): void;
  mkdirp(path: string, callback: (error: Error | null) => void): void;
  create(
    path: string,
    data: Buffer | null,
    mode: number,
    callback: (error: Error | null, path: string) => void,
  ): void;
  remove(path: string, version: number, callback: (error: Error | null) => void): void;
}
interface ZooKeeperModule {
  createClient(connectString: string, options: { sessionTimeout: number; retries: number }): ZooKeeperClient;
  CreateMode: { EPHEMERAL_SEQUENTIAL: number };
}

/**
 * node-zookeeper-client is a dependency of @dlock/zookeeper, not of the lab; it is loaded from that
 * package's directory so the floor uses the very client library the backend uses.
 */
function loadZooKeeperClient(): ZooKeeperModule | undefined {
  const backendDir = findPackageDir('@dlock/zookeeper');
  if (!backendDir) return undefined;
  try {
    return createRequire(join(backendDir, 'package.json'))('node-zookeeper-client') as ZooKeeperModule;
  } catch {
    return undefined;
  }
}

function callback<T = void>(run: (done: (error: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    run((error, value) => (error ? reject(error) : resolve(value as T))),
  );
}

async function zooKeeperFloor(endpoints: readonly string[], key: string): Promise<Floor | undefined> {
  const zookeeper = loadZooKeeperClient();
  if (!zookeeper) return undefined;
  const client = zookeeper.createClient(endpoints.join(','), { sessionTimeout: 4_000, retries: 0 });
  const connected = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(`ZooKeeper at ${endpoints.join(',')} did not connect within ${CONNECT_TIMEOUT_MS} ms`),
        ),
      CONNECT_TIMEOUT_MS,
    );
    client.once('connected', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  client.connect();
  try {
    await connected;
  } catch (error) {
    client.close();
    throw error;
  }
  const parent = `/dlock-lab-floor/${key}`;
  await callback((done) => client.mkdirp(parent, done));
  return {
    protocol: 'create ephemeral-sequential + delete',
    async operation() {
      const path = await callback<string>((done) =>
        client.create(`${parent}/lock-`, null, zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done),
      );
      await callback((done) => client.remove(path, -1, done));
    },
    async close() {
      client.close();
    },
  };
}

async function etcdFloor(endpoints: readonly string[], key: string): Promise<Floor> {
  const client = new Etcd3({ hosts: [...endpoints], dialTimeout: CONNECT_TIMEOUT_MS });
  let sequence = 0;
  return {
    protocol: 'put + delete',
    async operation() {
      await client.put(key).value(`floor-${sequence++}`);
      await client.delete().key(key);
    },
    async close() {
      client.close();
    },
  };
}

/**
 * The floor: the raw client round trips a lock on these servers cannot avoid, measured in the same run
 * (interleaved with the backends) so a backend's latency can be read as a multiple of it. Undefined
 * when the client library is not reachable.
 */
export async function openFloor(set: ServerSet, key: string): Promise<Floor | undefined> {
  switch (set.kind) {
    case 'redis':
      return redisFloor(set.endpoints, key);
    case 'zookeeper':
      return zooKeeperFloor(set.endpoints, key);
    case 'etcd':
      return etcdFloor(set.endpoints, key);
  }
}
