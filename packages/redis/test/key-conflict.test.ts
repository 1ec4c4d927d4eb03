import { LockError, LockLostError } from '@dlock/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_KEY_PREFIX, KeyConflictError, type KeyConflictFound, redisKeyLayout } from '../src/index.js';
import { lockKeyOf, redisFixture, settled } from './servers.js';

// Issue 12 #9: a lock name that lands on application data. Such a key never frees up the way a lock
// does, so the provider fails fast instead of waiting for it.

const redis = redisFixture();
beforeAll(() => redis.start());

describe('a lock key that holds application data', () => {
  it('SET orders:1 \'{"x":1}\' (no ttl): acquire, acquire with no waitMs, tryAcquire and holder fail at once, naming what is there', async () => {
    const raw = redis.raw();
    await raw.set('orders:1', '{"x":1}');
    const provider = redis.provider({ keyPrefix: '' });
    for (const call of [
      () => provider.acquire('orders:1', { waitMs: 1_000 }),
      () => provider.acquire('orders:1'),
      () => provider.tryAcquire('orders:1'),
      () => provider.holder('orders:1'),
    ]) {
      const { error, elapsedMs } = await settled(call());
      expect(error).toBeInstanceOf(KeyConflictError);
      expect(error).toBeInstanceOf(LockError);
      expect((error as KeyConflictError<KeyConflictFound>).code).toBe('KEY_CONFLICT');
      expect((error as KeyConflictError<KeyConflictFound>).key).toBe('orders:1');
      expect((error as KeyConflictError<KeyConflictFound>).backendKey).toBe('orders:1');
      expect((error as KeyConflictError<KeyConflictFound>).found).toEqual({
        type: 'string',
        ttlMs: -1,
        preview: '{"x":1}',
      });
      expect((error as Error).message).toMatch(/"orders:1".*a string with no expiry, value "\{\\"x\\":1\}"/);
      expect((error as Error).message).toMatch(/keyPrefix/);
      // Not a wait: one round trip (generous bound for a busy machine).
      expect(elapsedMs).toBeLessThan(500);
    }
    // The application's data is untouched.
    expect(await raw.get('orders:1')).toBe('{"x":1}');
    expect(await raw.pttl('orders:1')).toBe(-1);
  });

  it('also for another type, a cached string with a ttl, and a lock value someone made persistent', async () => {
    const raw = redis.raw();
    const provider = redis.provider({ keyPrefix: '' });
    await raw.hset('conflict-hash', 'field', 'value');
    await raw.set('conflict-cache', 'cached page', 'PX', 60_000);
    await raw.set('conflict-persisted', '0123456789abcdef0123456789abcdef');
    const cases: Array<[string, { type: string; preview: string; persistent: boolean }]> = [
      ['conflict-hash', { type: 'hash', preview: '', persistent: true }],
      ['conflict-cache', { type: 'string', preview: 'cached page', persistent: false }],
      [
        'conflict-persisted',
        { type: 'string', preview: '0123456789abcdef0123456789abcdef', persistent: true },
      ],
    ];
    for (const [key, expected] of cases) {
      const { error } = await settled(provider.acquire(key, { waitMs: 5_000 }));
      expect(error, key).toBeInstanceOf(KeyConflictError);
      const { found } = error as KeyConflictError<KeyConflictFound>;
      expect(found.type, key).toBe(expected.type);
      expect(found.preview, key).toBe(expected.preview);
      expect(found.ttlMs < 0, key).toBe(expected.persistent);
    }
    expect(await raw.hget('conflict-hash', 'field')).toBe('value');
  });

  it('a long value is shown by its first 64 bytes only', async () => {
    await redis.raw().set('conflict-long', 'x'.repeat(10_000));
    const { error } = await settled(redis.provider({ keyPrefix: '' }).tryAcquire('conflict-long'));
    expect((error as KeyConflictError<KeyConflictFound>).found.preview).toBe('x'.repeat(64));
    expect((error as Error).message.length).toBeLessThan(600);
  });

  it('a fencing counter overwritten with data is a conflict naming the counter, and is left alone', async () => {
    const provider = redis.provider();
    const { fenceKey, lockKey } = redisKeyLayout('counter-clash', DEFAULT_KEY_PREFIX);
    const raw = redis.raw();
    await raw.set(fenceKey, 'not a number');
    const { error } = await settled(provider.acquire('counter-clash', { waitMs: 1_000 }));
    expect(error).toBeInstanceOf(KeyConflictError);
    expect((error as KeyConflictError<KeyConflictFound>).backendKey).toBe(fenceKey);
    expect(await raw.get(fenceKey)).toBe('not a number');
    expect(await raw.exists(lockKey)).toBe(0);
  });

  it('a held lock overwritten by the application: extend reports it lost, release leaves the data alone', async () => {
    const provider = redis.provider();
    const lease = await provider.acquire('overwritten', { ttlMs: 10_000 });
    const raw = redis.raw();
    await raw.del(lockKeyOf('overwritten'));
    await raw.hset(lockKeyOf('overwritten'), 'field', 'value');
    await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    await lease.release();
    expect(await raw.hget(lockKeyOf('overwritten'), 'field')).toBe('value');
  });

  it("with the default keyPrefix ('dlock:') the same lock name never touches the application's key", async () => {
    const raw = redis.raw();
    await raw.set('orders:2', '{"x":2}');
    const provider = redis.provider();
    const lease = await provider.acquire('orders:2', { ttlMs: 5_000, waitMs: 1_000 });
    expect(await raw.exists('dlock:orders:2')).toBe(1);
    expect(await raw.get('orders:2')).toBe('{"x":2}');
    await lease.release();
    expect(await raw.get('orders:2')).toBe('{"x":2}');
  });
});
