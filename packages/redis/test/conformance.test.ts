import { describeLockProvider } from '@dlock/conformance';
import { freePort } from '@dlock/testkit';
import { beforeAll } from 'vitest';
import { createRedisProvider, redisKeyLayout } from '../src/index.js';
import { redisFixture } from './servers.js';

const redis = redisFixture();
beforeAll(() => redis.start());

describeLockProvider('redis', async () => redis.provider({ keyPrefix: '' }), {
  // The kit extends every quarter ttl and withLock's watchdog renews every third, so the ttl sets the
  // lag they tolerate: 1.5 s leaves about a second; 600 ms left 400 ms, and a 2-core machine running a
  // CPU hog beside other suites fell further behind (a redlock lease lapsed in withLock's watchdog).
  ttlMs: 1_500,
  marginMs: 400,
  // Cut the provider's connection without releasing anything, as a crashed process would.
  crash: async (provider) => redis.clientOf(provider).disconnect(),
  forceRelease: async (key) => {
    await redis.raw().del(redisKeyLayout(key, '').lockKey);
  },
  // The fencing counter stays on purpose (tokens must keep growing after the key goes idle); anything
  // else left for the key — the lock itself, a waiter still subscribed to its channel — is residue.
  residue: async (key) => {
    const { lockKey, releaseChannel } = redisKeyLayout(key, '');
    const raw = redis.raw();
    const residue: string[] = [];
    if ((await raw.exists(lockKey)) === 1) residue.push(`lock key ${lockKey}`);
    const [, subscribers] = (await raw.pubsub('NUMSUB', releaseChannel)) as [string, number];
    if (Number(subscribers) > 0) residue.push(`${subscribers} subscriber(s) on ${releaseChannel}`);
    return residue;
  },
  heldAtRawKey: async (key) => (await redis.raw().exists(key)) === 1,
  unreachable: async () =>
    createRedisProvider({ url: `redis://127.0.0.1:${await freePort()}`, connectTimeoutMs: 500 }),
  connectTimeoutMs: 500,
});
