// Benchmark of the @dlock/redlock semaphore on five local redis-server nodes, beside a floor with the
// same round trips and redis-semaphore's RedlockSemaphore (the peer of issue 14), in the same run.
// Bounded in count and time. Run with:   pnpm --filter @dlock/redlock bench:semaphore
import { randomBytes } from 'node:crypto';
import { startRedisNodes } from '@dlock/testkit';
import hdr from 'hdr-histogram-js';
import { Redis } from 'ioredis';
import { RedlockSemaphore } from 'redis-semaphore';
import { createRedlockProvider } from '../dist/index.js';

const ROUNDS = 8;
const PER_ROUND = 150;
const LIMIT = 4;
const CONTENDERS = 32;
const CONTENTION_MS = 3_000;
const HOLD_MS = 1;
const TTL_MS = 10_000;

/** The floor: per node, drop expired entries by the server clock, count, add; release is ZREM. */
const FLOOR_ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const latencies = () => hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
const add = (h, ms) => h.recordValue(Math.max(1, Math.round(ms * 1_000)));
const f = (micros) => (micros / 1_000).toFixed(3).padStart(9);
const row = (label, h, floor) =>
  `  ${label.padEnd(38)}${f(h.getValueAtPercentile(50))}${f(h.getValueAtPercentile(99))}${f(h.maxValue)}` +
  (floor ? `   ${(h.getValueAtPercentile(50) / floor.getValueAtPercentile(50)).toFixed(2)}x floor at p50` : '');
const connectAll = (urls) =>
  urls.map((url) => {
    const client = new Redis(url, { commandTimeout: 2_000, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    return client;
  });

/** Resolves once `count` of the promises have fulfilled with 1 (or all have settled). */
function majority(promises, count) {
  return new Promise((resolve) => {
    let granted = 0;
    let settled = 0;
    for (const promise of promises) {
      promise.then(
        (value) => {
          settled++;
          if (value === 1) granted++;
          if (granted === count || settled === promises.length) resolve(granted >= count);
        },
        () => {
          settled++;
          if (settled === promises.length) resolve(granted >= count);
        },
      );
    }
  });
}

async function contention(acquirers) {
  const waits = latencies();
  let acquisitions = 0;
  let inside = 0;
  let mostInside = 0;
  const deadline = performance.now() + CONTENTION_MS;
  await Promise.all(
    acquirers.map(async (acquire) => {
      while (performance.now() < deadline) {
        const started = performance.now();
        const release = await acquire();
        add(waits, performance.now() - started);
        acquisitions++;
        mostInside = Math.max(mostInside, ++inside);
        await sleep(HOLD_MS);
        inside--;
        await release();
      }
    }),
  );
  return { acquisitions, waits, mostInside };
}

const contendedRow = (label, c) =>
  `  ${label.padEnd(30)}${String(Math.round(c.acquisitions / (CONTENTION_MS / 1_000))).padStart(6)}/s` +
  `${f(c.waits.getValueAtPercentile(50))}${f(c.waits.getValueAtPercentile(99))}${f(c.waits.maxValue)}   most inside: ${c.mostInside}`;

const cluster = await startRedisNodes(5);
const opened = [];
try {
  const floorClients = connectAll(cluster.urls);
  const peerClients = connectAll(cluster.urls);
  opened.push(...floorClients, ...peerClients);
  const shas = await Promise.all(floorClients.map((client) => client.script('LOAD', FLOOR_ACQUIRE)));
  const dlock = createRedlockProvider({ urls: cluster.urls });
  const semaphore = dlock.semaphore('bench:dlock', { limit: LIMIT });
  const cycles = {
    floor: async () => {
      const owner = randomBytes(16).toString('hex');
      await majority(
        floorClients.map((client, i) => client.evalsha(shas[i], 1, 'bench:floor', LIMIT, owner, TTL_MS)),
        3,
      );
      await Promise.allSettled(floorClients.map((client) => client.zrem('bench:floor', owner)));
    },
    dlock: async () => (await semaphore.acquire({ ttlMs: TTL_MS })).release(),
    peer: async () => {
      const peer = new RedlockSemaphore(peerClients, 'bench:peer', LIMIT, { lockTimeout: TTL_MS, refreshInterval: 0 });
      await peer.acquire();
      await peer.release();
    },
  };
  const names = Object.keys(cycles);
  const results = Object.fromEntries(names.map((name) => [name, latencies()]));
  for (const name of names) for (let i = 0; i < 50; i++) await cycles[name]();
  for (let round = 0; round < ROUNDS; round++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(round + offset) % names.length];
      for (let i = 0; i < PER_ROUND; i++) {
        const started = performance.now();
        await cycles[name]();
        add(results[name], performance.now() - started);
      }
    }
  }
  await dlock.close();

  const providers = Array.from({ length: CONTENDERS }, () => createRedlockProvider({ urls: cluster.urls }));
  const dlockContended = await contention(
    providers.map((provider) => async () => {
      const lease = await provider
        .semaphore('bench:contended', { limit: LIMIT })
        .acquire({ ttlMs: TTL_MS, waitMs: 30_000 });
      return () => lease.release();
    }),
  );
  await Promise.all(providers.map((provider) => provider.close()));
  const contenderClients = Array.from({ length: CONTENDERS }, () => connectAll(cluster.urls));
  opened.push(...contenderClients.flat());
  const peerContended = await contention(
    contenderClients.map((clients) => async () => {
      const peer = new RedlockSemaphore(clients, 'bench:contended-peer', LIMIT, {
        lockTimeout: TTL_MS,
        acquireTimeout: 30_000,
        refreshInterval: 0,
      });
      await peer.acquire();
      return () => peer.release();
    }),
  );

  console.log(
    [
      `five redis-server nodes on 127.0.0.1, node ${process.version}; latencies in ms`,
      '',
      `uncontended acquire+release (limit ${LIMIT}), ${results.floor.totalCount} each:         p50      p99      max`,
      row('floor (majority of EVALSHA, ZREM on all)', results.floor),
      row('dlock redlock semaphore', results.dlock, results.floor),
      row('redis-semaphore RedlockSemaphore 5.8', results.peer, results.floor),
      '',
      `${CONTENDERS} contenders, limit ${LIMIT}, hold ${HOLD_MS} ms, ${CONTENTION_MS / 1_000} s (wait = acquire call):`,
      `  ${''.padEnd(30)}throughput      p50      p99      max`,
      contendedRow('dlock (pub/sub, no queue)', dlockContended),
      contendedRow('redis-semaphore (10 ms poll)', peerContended),
    ].join('\n'),
  );
} finally {
  await Promise.allSettled(opened.map((client) => client.quit()));
  for (const client of opened) client.disconnect();
  await cluster.stop();
}
