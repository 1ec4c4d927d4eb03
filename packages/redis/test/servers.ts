import type { LockProvider } from '@dlock/core';
import { type RedisServer, startRedis } from '@dlock/testkit';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll } from 'vitest';
import { type RedisProviderOptions, createRedisProvider } from '../src/index.js';

/**
 * One real redis-server per test file, plus the raw clients and providers the file opened; all of it
 * is closed in afterAll. Providers made with `provider()` run on a client of their own, which the
 * test can cut (`clientOf(provider).disconnect()`) to make the provider look crashed.
 */
export function redisFixture(options: Parameters<typeof startRedis>[0] = {}) {
  let server: RedisServer | undefined;
  const clients: Redis[] = [];
  const providers: LockProvider[] = [];
  const clientOfProvider = new Map<LockProvider, Redis>();

  afterAll(async () => {
    await Promise.allSettled(providers.map((provider) => provider.close()));
    for (const client of clients) client.disconnect();
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
    /** A provider on its own client (keyPrefix '' unless given). */
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
    clientOf(provider: LockProvider): Redis {
      const client = clientOfProvider.get(provider);
      if (!client) throw new Error('not a provider made by redisFixture.provider()');
      return client;
    },
  };
}
