import type { LockProvider } from '@dlock/core';
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@dlock/testkit';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll } from 'vitest';
import {
  DEFAULT_KEY_PREFIX,
  type RedisProviderOptions,
  createRedisProvider,
  redisKeyLayout,
} from '../src/index.js';

/**
 * One real redis-server per test file, plus the raw clients and providers the file opened; all of it
 * is closed in afterAll. Providers made with `provider()` run on a client of their own, which the
 * test can cut (`clientOf(provider).disconnect()`) to make the provider look crashed. Providers made
 * with `proxied()` reach the server through a TCP fault proxy of their own.
 */
export function redisFixture(options: Parameters<typeof startRedis>[0] = {}) {
  let server: RedisServer | undefined;
  const clients: Redis[] = [];
  const providers: LockProvider[] = [];
  const clientOfProvider = new Map<LockProvider, Redis>();
  const proxies: FaultProxy[] = [];

  afterAll(async () => {
    await Promise.allSettled(providers.map((provider) => provider.close()));
    for (const client of clients) client.disconnect();
    await Promise.allSettled(proxies.map((proxy) => proxy.close()));
    await server?.stop();
  });

  return {
    async start(): Promise<RedisServer> {
      server = await startRedis(options);
      return server;
    },
    get server(): RedisServer {
      if (!server) throw new Error('redisFixture: call start() in beforeAll first');
      return server;
    },
    /** A plain ioredis client on the server, closed after the file. */
    raw(overrides: RedisOptions = {}): Redis {
      const client = new Redis(this.server.url, { lazyConnect: true, maxRetriesPerRequest: 1, ...overrides });
      client.on('error', () => {});
      clients.push(client);
      return client;
    },
    /** A provider on its own client (the default keyPrefix, 'dlock:', unless given). */
    provider(options: Omit<RedisProviderOptions, 'url' | 'client'> = {}): LockProvider {
      const client = this.raw();
      const provider = createRedisProvider({ client, ...options });
      clientOfProvider.set(provider, client);
      providers.push(provider);
      return provider;
    },
    /** A provider that creates (and so owns) its connection from the URL. */
    urlProvider(options: Omit<RedisProviderOptions, 'url' | 'client'> = {}): LockProvider {
      const provider = createRedisProvider({ url: this.server.url, ...options });
      providers.push(provider);
      return provider;
    },
    /**
     * A provider that owns its connections (from a URL) and reaches the server through a fault proxy
     * of its own; both are closed after the file.
     */
    async proxied(
      options: Omit<RedisProviderOptions, 'url' | 'client'> = {},
    ): Promise<{ provider: LockProvider; faults: FaultProxy }> {
      const faults = await startFaultProxy({ target: { host: '127.0.0.1', port: this.server.port } });
      proxies.push(faults);
      const provider = createRedisProvider({ url: faults.url('redis'), ...options });
      providers.push(provider);
      return { provider, faults };
    },
    clientOf(provider: LockProvider): Redis {
      const client = clientOfProvider.get(provider);
      if (!client) throw new Error('not a provider made by redisFixture.provider()');
      return client;
    },
  };
}

/** The Redis key of lock `key` under `keyPrefix` (the default prefix unless given). */
export function lockKeyOf(key: string, keyPrefix = DEFAULT_KEY_PREFIX): string {
  return redisKeyLayout(key, keyPrefix).lockKey;
}

/** How `work` settled, and after how long: a test asserts on a rejection without try/catch. */
export async function settled<T>(
  work: Promise<T>,
): Promise<{ value: T | undefined; error: unknown; elapsedMs: number }> {
  const started = performance.now();
  return work.then(
    (value) => ({ value, error: undefined, elapsedMs: performance.now() - started }),
    (error: unknown) => ({ value: undefined, error, elapsedMs: performance.now() - started }),
  );
}

/** Every listener on `client`, over all its events: a leak of one per request shows here. */
export function listenerCount(client: Redis): number {
  return client.eventNames().reduce((sum, name) => sum + client.listenerCount(name), 0);
}
