import { InvalidArgumentError } from '@dlock/core';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  type RedlockProviderOptions,
  createRedlockProvider,
  redlockCapabilities,
  redlockRetryDefaults,
} from '../src/index.js';

const url = (port: number) => `redis://127.0.0.1:${port}`;
const threeUrls = [url(1), url(2), url(3)];

describe('createRedlockProvider options', () => {
  const rejected: Array<[string, unknown]> = [
    ['options', null],
    ['urls', {}],
    ['urls', { urls: threeUrls, clients: [] }],
    ['urls', { urls: [] }],
    ['urls', { urls: [url(1), url(2)] }],
    ['urls', { urls: [url(1), url(1), url(2)] }],
    ['urls', { urls: 'redis://127.0.0.1:1' }],
    ['urls[1]', { urls: [url(1), 'http://127.0.0.1:2', url(3)] }],
    ['urls[2]', { urls: [url(1), url(2), 'not a url'] }],
    ['clients[0]', { clients: [{}] }],
    ['keyPrefix', { urls: threeUrls, keyPrefix: 7 }],
    ['driftFactor', { urls: threeUrls, driftFactor: 1 }],
    ['driftFactor', { urls: threeUrls, driftFactor: -0.1 }],
    ['driftFactor', { urls: threeUrls, driftFactor: Number.NaN }],
    ['connectTimeoutMs', { urls: threeUrls, connectTimeoutMs: 0 }],
    ['commandTimeoutMs', { urls: threeUrls, commandTimeoutMs: Number.POSITIVE_INFINITY }],
    ['defaultTtlMs', { urls: threeUrls, defaultTtlMs: 5 }],
    ['fallbackRecheckMs', { urls: threeUrls, fallbackRecheckMs: -1 }],
    ['identity', { urls: threeUrls, identity: '' }],
    ['settleGraceMs', { urls: threeUrls, settleGraceMs: -1 }],
    ['retry', { urls: threeUrls, retry: 5 }],
    ['retry.outageMs', { urls: threeUrls, retry: { outageMs: Number.NaN } }],
    ['retry.retries', { urls: threeUrls, retry: { retries: 3 } }],
  ];

  it.each(rejected)('rejects a bad %s with InvalidArgumentError naming it', (field, options) => {
    let error: unknown;
    try {
      createRedlockProvider(options as RedlockProviderOptions);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).field).toBe(field);
    expect((error as Error).message).toContain(field);
  });

  it('rejects caller clients without a commandTimeout (a silent node would stall the vote count)', () => {
    const clients = [1, 2, 3].map((port) => new Redis({ port, lazyConnect: true }));
    expect(() => createRedlockProvider({ clients })).toThrow(
      expect.objectContaining({ field: 'clients[0].options.commandTimeout' }),
    );
  });

  it('refuses lock names whose key ends like a waiting line key (keyPrefix included)', async () => {
    const provider = createRedlockProvider({ urls: threeUrls, keyPrefix: 'app:', connectTimeoutMs: 100 });
    try {
      for (const key of [
        'a:lock-queue',
        'a:lock-queue:expiry',
        'a:lock-queue:queue',
        'a:lock-queue:handoff',
      ]) {
        const error = await provider.acquire(key, { ttlMs: 1_000 }).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(InvalidArgumentError);
        expect((error as InvalidArgumentError).field).toBe('key');
        expect((error as Error).message).toContain(':lock-queue');
      }
    } finally {
      await provider.close();
    }
  });

  it('fits the retry defaults to the timeouts: an outage of a few connect-and-command rounds is ridden out', () => {
    expect(redlockRetryDefaults({ connectTimeoutMs: 2_000, commandTimeoutMs: 2_000 })).toEqual({
      outageMs: 15_000,
      closeMs: 8_000,
    });
    expect(redlockRetryDefaults({ connectTimeoutMs: 5_000, commandTimeoutMs: 5_000 }).outageMs).toBe(30_000);
  });

  it('declares no fencing and no fairness, and says why', () => {
    expect(redlockCapabilities).toMatchObject({
      fencing: 'none',
      fairness: 'none',
      wakeup: 'push',
      expiry: 'ttl',
    });
    expect(redlockCapabilities.safety).toContain('How to do distributed locking');
    expect(redlockCapabilities.safety).toContain('Is Redlock safe?');
  });
});
