import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Etcd3, Range } from 'etcd3';
import { Redis } from 'ioredis';
import { findPackageDir } from '../paths.js';
import { permitQuorum } from '../quorum.js';
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

/** The part of node-zookeeper-client (callback API) the floors use. */
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
  getData(path: string, callback: (error: Error | null, data: Buffer) => void): void;
  getChildren(path: string, callback: (error: Error | null, children: string[]) => void): void;
}
interface ZooKeeperModule {
  createClient(connectString: string, options: { sessionTimeout: number; retries: number }): ZooKeeperClient;
  CreateMode: { PERSISTENT: number; EPHEMERAL_SEQUENTIAL: number };
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

/** A connected bare client of the same library @dlock/zookeeper uses; undefined when it is not reachable. */
async function connectZooKeeper(
  endpoints: readonly string[],
): Promise<{ zookeeper: ZooKeeperModule; client: ZooKeeperClient } | undefined> {
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
  return { zookeeper, client };
}

async function zooKeeperFloor(endpoints: readonly string[], key: string): Promise<Floor | undefined> {
  const connected = await connectZooKeeper(endpoints);
  if (!connected) return undefined;
  const { zookeeper, client } = connected;
  const parent = `/dlock-lab-floor/${key}`;
  await callback((done) => client.mkdirp(parent, done));
  // The Curator lock recipe uncontended, as @dlock/zookeeper's package bench measures its floor
  // (packages/zookeeper/bench/zookeeper.bench.mjs): create, getChildren (lowest, so held), delete.
  return {
    protocol: 'create ephemeral-sequential + getChildren + delete',
    async operation() {
      const path = await callback<string>((done) =>
        client.create(`${parent}/lock-`, null, zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done),
      );
      await callback<string[]>((done) => client.getChildren(parent, done));
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

/* ------------------------------------------------------------------------------------------------
 * Semaphore floors: the round trips an uncontended permit needs on each kind of server, sent by a
 * bare client — what each backend package's own semaphore benchmark calls its floor.
 * ---------------------------------------------------------------------------------------------- */

/**
 * The least a semaphore whose permits expire by the server's clock does in one script: drop expired
 * entries by TIME, count, add if there is room (release is a ZREM).
 */
const PERMIT_IF_ROOM = `local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[2])
return 1`;

/** Resolves once `count` of `promises` have resolved; rejects once that can no longer happen. */
function firstOf(count: number, promises: readonly Promise<unknown>[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let resolved = 0;
    let rejected = 0;
    for (const promise of promises) {
      promise.then(
        () => {
          if (++resolved === count) resolve();
        },
        (error: unknown) => {
          if (++rejected > promises.length - count) reject(error);
        },
      );
    }
  });
}

async function redisSemaphoreFloor(endpoints: readonly string[], key: string, limit: number): Promise<Floor> {
  const clients = endpoints.map((url) => {
    const client = connectRedis(url);
    client.defineCommand('permitIfRoom', { numberOfKeys: 1, lua: PERMIT_IF_ROOM });
    return client as Redis & {
      permitIfRoom(key: string, limit: number, owner: string, ttlMs: number): Promise<number>;
    };
  });
  const quorum = permitQuorum(endpoints.length, limit);
  let sequence = 0;
  return {
    protocol:
      endpoints.length === 1
        ? 'permit-if-room script + ZREM'
        : `permit-if-room script on ${quorum} of ${endpoints.length} nodes + ZREM on all`,
    async operation() {
      const owner = `floor-${sequence++}`;
      await firstOf(
        quorum,
        clients.map((client) => client.permitIfRoom(key, limit, owner, FLOOR_TTL_MS)),
      );
      await Promise.all(clients.map((client) => client.zrem(key, owner)));
    },
    async close() {
      for (const client of clients) client.disconnect();
    },
  };
}

/**
 * Curator's InterProcessSemaphoreV2 layout, as @dlock/zookeeper sends it for an uncontended permit:
 * four pipelined round trips (the semaphore's node, `locks` and the internal mutex node with the
 * reads; the limit, `leases` and the lease node; the lease node's czxid with the mutex given back;
 * the release with the parents it leaves empty).
 */
async function zooKeeperSemaphoreFloor(
  endpoints: readonly string[],
  key: string,
  limit: number,
): Promise<Floor | undefined> {
  const connected = await connectZooKeeper(endpoints);
  if (!connected) return undefined;
  const { zookeeper, client } = connected;
  const { PERSISTENT, EPHEMERAL_SEQUENTIAL } = zookeeper.CreateMode;
  // Expected failures (a parent that exists, or is not empty) are part of the protocol: ignored.
  const send = <T>(run: (done: (error: Error | null, value?: T) => void) => void) =>
    callback<T>(run).catch(() => undefined);
  const root = `/dlock-lab-floor/${key}`;
  await callback((done) => client.mkdirp('/dlock-lab-floor', done));
  const [locks, leases] = [`${root}/locks`, `${root}/leases`];
  const data = Buffer.from('floor');
  let sequence = 0;
  return {
    protocol: 'Curator semaphore layout: 4 pipelined round trips',
    async operation() {
      const id = `${sequence++}`;
      const [, , mutex] = await Promise.all([
        send((done) => client.create(root, Buffer.from(String(limit)), PERSISTENT, done)),
        send((done) => client.create(locks, null, PERSISTENT, done)),
        send<string>((done) => client.create(`${locks}/_c_${id}-lock-`, data, EPHEMERAL_SEQUENTIAL, done)),
        send((done) => client.getData(root, done)),
        send((done) => client.getChildren(leases, done)),
        send((done) => client.getChildren(locks, done)),
      ]);
      const [, , , lease] = await Promise.all([
        send((done) => client.getData(root, done)),
        send((done) => client.getChildren(leases, done)),
        send((done) => client.create(leases, null, PERSISTENT, done)),
        send<string>((done) => client.create(`${leases}/_c_${id}-lease-`, data, EPHEMERAL_SEQUENTIAL, done)),
        send((done) => client.getChildren(leases, done)),
      ]);
      if (typeof mutex !== 'string' || typeof lease !== 'string')
        throw new Error('the floor could not create its nodes');
      await Promise.all([
        send((done) => client.getData(lease, done)),
        send((done) => client.remove(mutex, -1, done)),
        send((done) => client.remove(locks, -1, done)),
      ]);
      await Promise.all([
        send((done) => client.remove(lease, -1, done)),
        send((done) => client.remove(leases, -1, done)),
        send((done) => client.remove(locks, -1, done)),
        send((done) => client.remove(root, -1, done)),
      ]);
    },
    async close() {
      client.close();
    },
  };
}

/**
 * @dlock/etcd's permit: one Txn that puts the request's key if absent and reads the name's keys by
 * create revision, then a delete.
 */
async function etcdSemaphoreFloor(endpoints: readonly string[], key: string): Promise<Floor> {
  const client = new Etcd3({ hosts: [...endpoints], dialTimeout: CONNECT_TIMEOUT_MS });
  const queue = Range.prefix(`${key}/`);
  let sequence = 0;
  return {
    protocol: 'put-if-absent + range Txn, then delete',
    async operation() {
      const permit = `${key}/${sequence++}`;
      await client
        .if(permit, 'Create', '==', 0)
        .then(client.put(permit).value('floor'), {
          request_range: {
            key: queue.start,
            range_end: queue.end,
            sort_target: 'Create',
            sort_order: 'Ascend',
          },
        })
        .commit();
      await client.delete().key(permit);
    },
    async close() {
      client.close();
    },
  };
}

/**
 * The semaphore floor of a server set: the round trips an uncontended permit of a semaphore of
 * `limit` needs there, from a bare client (see each function above). Undefined when the client
 * library is not reachable.
 */
export async function openSemaphoreFloor(
  set: ServerSet,
  key: string,
  limit: number,
): Promise<Floor | undefined> {
  switch (set.kind) {
    case 'redis':
      return redisSemaphoreFloor(set.endpoints, key, limit);
    case 'zookeeper':
      return zooKeeperSemaphoreFloor(set.endpoints, key, limit);
    case 'etcd':
      return etcdSemaphoreFloor(set.endpoints, key);
  }
}
