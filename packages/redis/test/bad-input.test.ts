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
import { redisFixture } from './servers.js';

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

async function failure(work: Promise<unknown>): Promise<{ error: unknown; elapsedMs: number }> {
  const started = performance.now();
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, elapsedMs: performance.now() - started };
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
      const { error } = await failure(call());
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
    const { error, elapsedMs } = await failure(provider.acquire('k', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).address).toBe(`127.0.0.1:${guarded.port}`);
    expect((error as Error).message).toMatch(/WRONGPASS/);
    expect((error as Error).message).not.toContain('wrong-password');
    expect(elapsedMs).toBeLessThan(1_000);
  });

  it('a missing password fails at once; the right one works, from the URL or as an option', async () => {
    const anonymous = open({ url: `redis://127.0.0.1:${guarded.port}` });
    const { error } = await failure(anonymous.tryAcquire('k'));
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
      const { error, elapsedMs } = await failure(call());
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as Error).message).toContain(`127.0.0.1:${port}`);
      expect(elapsedMs).toBeLessThan(500 + 400);
    }
  });

  it('a server that goes away fails within connectTimeoutMs, and close() does not hang', async () => {
    const server = await startRedis();
    const provider = createRedisProvider({ url: server.url, connectTimeoutMs: 500 });
    await (await provider.acquire('k', { ttlMs: 1_000 })).release();
    await server.stop();
    const { error, elapsedMs } = await failure(provider.acquire('k', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(elapsedMs).toBeLessThan(500 + 400);
    const closing = performance.now();
    await provider.close();
    expect(performance.now() - closing).toBeLessThan(500);
  });

  it('left no unhandled rejection behind', async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled.map(String)).toEqual([]);
  });
});
