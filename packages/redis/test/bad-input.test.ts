import {
  BackendUnavailableError,
  InvalidArgumentError,
  type LockProvider,
  ProviderClosedError,
} from '@dlock/core';
import { type RedisServer, freePort, startRedis } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisProviderOptions, createRedisProvider } from '../src/index.js';
import { redisFixture, settled } from './servers.js';

const PASSWORD = 'correct horse battery staple';
const redis = redisFixture();
let guarded: RedisServer;
const opened: LockProvider[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  [, guarded] = await Promise.all([redis.start(), startRedis({ password: PASSWORD })]);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await Promise.allSettled(opened.map((provider) => provider.close()));
  await guarded?.stop();
});

function open(options: RedisProviderOptions): LockProvider {
  const provider = createRedisProvider(options);
  opened.push(provider);
  return provider;
}

function invalidField(create: () => unknown): string | undefined {
  try {
    const created = create();
    if (created && typeof created === 'object' && 'close' in created) opened.push(created as LockProvider);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return (error as InvalidArgumentError).field;
  }
  return undefined;
}

describe('createRedisProvider: bad options are InvalidArgumentError naming the field', () => {
  it.each([
    ['url', { url: 'not a url' }],
    ['url', { url: 'http://127.0.0.1:6379' }],
    ['url', { url: 'redis://' }],
    ['url', { url: 'redis://127.0.0.1:6379/not-a-db' }],
    ['url', { url: 'redis://:%zz@127.0.0.1:6379' }],
    ['url', { url: 42 }],
    ['url', {}],
    ['client', { url: 'redis://127.0.0.1:6379', client: new Redis({ lazyConnect: true }) }],
    ['client', { client: { get: () => null } }],
    ['password', { client: new Redis({ lazyConnect: true }), password: 'x' }],
    ['keyPrefix', { url: 'redis://127.0.0.1:6379', keyPrefix: 7 }],
    ['connectTimeoutMs', { url: 'redis://127.0.0.1:6379', connectTimeoutMs: 0 }],
    ['commandTimeoutMs', { url: 'redis://127.0.0.1:6379', commandTimeoutMs: Number.NaN }],
    ['onConnectionLoss', { url: 'redis://127.0.0.1:6379', onConnectionLoss: 'ignore' }],
    ['tls', { url: 'redis://127.0.0.1:6379', tls: 'yes' }],
    ['defaultTtlMs', { url: 'redis://127.0.0.1:6379', defaultTtlMs: 0 }],
    ['options', null],
  ])('%s: %o', (field, options) => {
    expect(invalidField(() => createRedisProvider(options as RedisProviderOptions))).toBe(field);
  });

  it('does not echo a password from a malformed URL', () => {
    try {
      createRedisProvider({ url: 'redis://user:hunter2@' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).not.toContain('hunter2');
    }
  });
});

describe('redis provider: bad calls', () => {
  it('rejects ttl 0, a ttl below 10 ms, a huge key and keys reserved for counters', async () => {
    const provider = redis.provider();
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['ttlMs', () => provider.acquire('k', { ttlMs: 0 })],
      ['ttlMs', () => provider.acquire('k', { ttlMs: 5 })],
      ['key', () => provider.acquire('k'.repeat(5_000))],
      ['key', () => provider.tryAcquire('orders:fence')],
      ['key', () => createRedisProvider({ client: redis.raw(), keyPrefix: 'x:fen' }).holder('ce')],
    ];
    for (const [field, call] of cases) {
      const { error } = await settled(call());
      expect(error, field).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe(field);
    }
  });

  it('rejects use after close with ProviderClosedError', async () => {
    const provider = redis.urlProvider();
    await provider.close();
    await expect(provider.acquire('closed')).rejects.toBeInstanceOf(ProviderClosedError);
  });
});

describe('redis provider: an unusable server is BackendUnavailableError, never a hang', () => {
  it('a wrong password fails at once, naming the address and not the password', async () => {
    const provider = open({
      url: `redis://:wrong-password@127.0.0.1:${guarded.port}`,
      connectTimeoutMs: 2_000,
    });
    const { error, elapsedMs } = await settled(provider.acquire('k', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).address).toBe(`127.0.0.1:${guarded.port}`);
    expect((error as Error).message).toMatch(/WRONGPASS/);
    expect((error as Error).message).not.toContain('wrong-password');
    expect(elapsedMs).toBeLessThan(1_000);
  });

  it('a missing password fails at once; the right one works, from the URL or as an option', async () => {
    const anonymous = open({ url: `redis://127.0.0.1:${guarded.port}` });
    const { error } = await settled(anonymous.tryAcquire('k'));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/NOAUTH/);

    const fromUrl = open({ url: guarded.url });
    await (await fromUrl.acquire('k', { ttlMs: 1_000 })).release();
    const fromOption = open({ url: `redis://:wrong@127.0.0.1:${guarded.port}`, password: PASSWORD });
    await (await fromOption.acquire('k', { ttlMs: 1_000 })).release();
  });

  it('a server that is not there fails within connectTimeoutMs, for every operation', async () => {
    const port = await freePort();
    const provider = open({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 500 });
    for (const call of [
      () => provider.acquire('k', { waitMs: 60_000 }),
      () => provider.tryAcquire('k'),
      () => provider.holder('k'),
    ]) {
      const { error, elapsedMs } = await settled(call());
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as Error).message).toContain(`127.0.0.1:${port}`);
      expect(elapsedMs).toBeLessThan(500 + 400);
    }
  });

  it('a server that goes away after the provider reached it fails within retry.outageMs (plus one connect wait and one back-off), and close() does not hang', async () => {
    const server = await startRedis();
    const connectTimeoutMs = 500;
    const outageMs = 1_500;
    const provider = createRedisProvider({ url: server.url, connectTimeoutMs, retry: { outageMs } });
    await (await provider.acquire('k', { ttlMs: 1_000 })).release();
    await server.stop();
    const { error, elapsedMs } = await settled(provider.acquire('k', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    // Retried as an outage (the provider had reached its server), not failed at the first error.
    expect((error as BackendUnavailableError).tries).toBeGreaterThan(1);
    expect((error as Error).message).toMatch(
      /gave up after \d+ tries.*not connected within connectTimeoutMs=500/,
    );
    // The first failure comes after one connect wait; retries go on until outageMs after it, and the
    // last try started before then ends within one back-off (retry.maxDelayMs, 1 s) and one connect wait.
    expect(elapsedMs).toBeLessThan(connectTimeoutMs + outageMs + 1_000 + connectTimeoutMs + 400);
    const closing = performance.now();
    await provider.close();
    expect(performance.now() - closing).toBeLessThan(500);
  });

  it('a client the application closed is BackendUnavailableError at once, not retried', async () => {
    const client = redis.raw();
    const provider = open({ client });
    await (await provider.acquire('k', { ttlMs: 1_000 })).release();
    await client.quit();
    const { error, elapsedMs } = await settled(provider.acquire('k', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).transient).toBe(false);
    expect((error as Error).message).toMatch(/the connection was closed/);
    expect(elapsedMs).toBeLessThan(500);
  });

  it('left no unhandled rejection behind', async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled.map(String)).toEqual([]);
  });
});
