import { describeLockProvider } from '@dlock/conformance';
import { freePort } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { beforeAll } from 'vitest';
import { createRedisProvider, permitLayout, redisKeyLayout } from '../src/index.js';
import { listenerCount, redisFixture } from './servers.js';

const redis = redisFixture();
beforeAll(() => redis.start());

/** The soak's server probe: one connection, made once (a new one per probe would count itself). */
let observer: Redis | undefined;

/** Connect timeout of the providers behind the fault proxy: the long-outage case lasts twice this. */
const PROXIED_CONNECT_TIMEOUT_MS = 1_000;

// keyPrefix '' (the redlock layout), so that the raw-key probe sees the key exactly as given.
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
  // else left for the key — the lock itself, a place in its line, a waiter still subscribed to its
  // channel — is residue.
  residue: async (key, kind) => {
    const raw = redis.raw();
    const residue: string[] = [];
    let keys: string[];
    let channel: string;
    if (kind === 'lock') {
      // The lock and its waiting line (whose keys go with the last place in it).
      const { releaseKeys, releaseChannel } = redisKeyLayout(key, '');
      keys = [...releaseKeys];
      channel = releaseChannel;
    } else {
      // A semaphore's or read-write lock's hash and sorted sets go once nobody holds or waits.
      const layout = permitLayout(key, '', kind === 'semaphore' ? 'semaphore' : 'rwlock');
      keys = [layout.stateKey, layout.expiryKey, layout.queueKey];
      channel = layout.channel;
    }
    for (const stored of keys) if ((await raw.exists(stored)) === 1) residue.push(`key ${stored}`);
    const [, subscribers] = (await raw.pubsub('NUMSUB', channel)) as [string, number];
    if (Number(subscribers) > 0) residue.push(`${subscribers} subscriber(s) on ${channel}`);
    return residue;
  },
  heldAtRawKey: async (key) => (await redis.raw().exists(key)) === 1,
  unreachable: async () =>
    createRedisProvider({ url: `redis://127.0.0.1:${await freePort()}`, connectTimeoutMs: 500 }),
  connectTimeoutMs: 500,
  // Churn soak (issue 12 #6): client listeners on each provider's command connection; the server's
  // subscribed channels, connections and keys (fencing counters of the soak's keys exist from its
  // warm-up on, so a growing key count is a leaked lock or counter).
  soak: {
    client: (providers) => ({
      'client listeners': providers.reduce(
        (sum, provider) => sum + listenerCount(redis.clientOf(provider)),
        0,
      ),
    }),
    server: async () => {
      observer ??= redis.raw();
      const raw = observer;
      return {
        'subscribed channels': ((await raw.pubsub('CHANNELS')) as string[]).length,
        connections: ((await raw.client('LIST')) as string).trim().split('\n').length,
        keys: await raw.dbsize(),
      };
    },
  },
  network: {
    connectTimeoutMs: PROXIED_CONNECT_TIMEOUT_MS,
    connect: async ({ retry } = {}) =>
      redis.proxied({ keyPrefix: '', connectTimeoutMs: PROXIED_CONNECT_TIMEOUT_MS, retry }),
    flushScriptCache: async () => {
      await redis.raw().script('FLUSH');
    },
  },
});
