// Which backend an example or a test fixture runs on. Plain JavaScript (typed by backends.d.mts) so the
// TypeScript examples and the .mjs fixtures that run as separate Node processes share one table.
import { existsSync } from 'node:fs';
import { MemoryLockStore, createMemoryProvider } from '@dlock/core';

/**
 * name → the package and how to build a provider from an address (a URL, a comma-separated list of
 * URLs or hosts, or a ZooKeeper connect string). Session timeouts are short so failover shows in seconds.
 */
const backends = {
  redis: {
    module: '@dlock/redis',
    create: (mod, address, options) => mod.createRedisProvider({ url: address, ...options }),
  },
  redlock: {
    module: '@dlock/redlock',
    create: (mod, address, options) => mod.createRedlockProvider({ urls: address.split(','), ...options }),
  },
  zookeeper: {
    module: '@dlock/zookeeper',
    create: (mod, address, options) =>
      mod.createZooKeeperProvider({ connectString: address, sessionTimeoutMs: 2_000, ...options }),
  },
  etcd: {
    module: '@dlock/etcd',
    create: (mod, address, options) =>
      mod.createEtcdProvider({ hosts: address.split(','), sessionTtlSec: 2, ...options }),
  },
};

export const realBackendNames = Object.keys(backends);

/** Whether the backend's package has been built (its dist exists), so it can be imported. */
export function isBuilt(name) {
  return existsSync(new URL(`../packages/${name}/dist/index.js`, import.meta.url));
}

/** A provider for `name` at `address`; `options` are passed through (identity, fallbackRecheckMs, ...). */
export async function createProvider(name, address, options = {}) {
  const backend = backends[name];
  if (!backend) throw new Error(`unknown backend "${name}" (known: memory, ${realBackendNames.join(', ')})`);
  if (!address) throw new Error(`backend "${name}" needs an address (DLOCK_URL)`);
  return backend.create(await import(backend.module), address, options);
}

/**
 * `count` providers standing for `count` instances of a service: on the memory backend they share one
 * store (one "server"); on a real backend each is its own client of the server at DLOCK_URL.
 */
export async function instanceProviders(count, env = process.env) {
  const name = env.DLOCK_BACKEND ?? 'memory';
  if (name === 'memory') {
    const store = new MemoryLockStore();
    return Array.from({ length: count }, () => createMemoryProvider({ store, fallbackRecheckMs: 100 }));
  }
  return Promise.all(
    Array.from({ length: count }, () => createProvider(name, env.DLOCK_URL, { fallbackRecheckMs: 200 })),
  );
}
