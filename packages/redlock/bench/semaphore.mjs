// Benchmark of the @dlock/redlock semaphore on five local redis-server nodes, beside a floor with the
// same round trips and redis-semaphore's RedlockSemaphore (the peer of issue 14), in the same run.
// Bounded in count and time. Run with:   pnpm --filter @dlock/redlock bench:semaphore
import { randomBytes } from 'node:crypto';
import { startRedisNodes } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { RedlockSemaphore } from 'redis-semaphore';
// The floor script, latency recording and contention loop are the redis semaphore bench's (one copy),
// compiled by this bench's package script.
import {
  CONTENTION_MS,
  FLOOR_ACQUIRE,
  HOLD_MS,
  Latencies,
  contention,
} from '../../redis/bench/dist/bench/semaphore-measure.js';
import { createRedlockProvider } from '../dist/index.js';

const ROUNDS = 8;
const PER_ROUND = 150;
const LIMIT = 4;
const CONTENDERS = 32;
/** How many of the 5 nodes a limit-4 permit needs (the provider's rule: floor(N·L/(L+1)) + 1). */
const GRANT_QUORUM = Math.floor((5 * LIMIT) / (LIMIT + 1)) + 1;
const TTL_MS = 10_000;

const f = (ms) => ms.toFixed(3).padStart(9);
const row = (label, l, floor) =>
  `  ${label.padEnd(38)}${f(l.at(50))}${f(l.at(99))}${f(l.max)}` +
  (floor ? `   ${(l.at(50) / floor.at(50)).toFixed(2)}x floor at p50` : '');
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

const contendedRow = (label, c) =>
  `  ${label.padEnd(30)}${String(Math.round(c.acquisitions / (CONTENTION_MS / 1_000))).padStart(6)}/s` +
  `${f(c.waits.at(50))}${f(c.waits.at(99))}${f(c.waits.max)}   most inside: ${c.mostInside}`;

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
        GRANT_QUORUM,
      );
      await Promise.allSettled(floorClients.map((client) => client.zrem('bench:floor', owner)));
    },
    dlock: async () => (await semaphore.acquire({ ttlMs: TTL_MS })).release(),
    peer: async () => {
      const peer = new RedlockSemaphore(peerClients, 'bench:peer', LIMIT, {
        lockTimeout: TTL_MS,
        refreshInterval: 0,
      });
      await peer.acquire();
      await peer.release();
    },
  };
  const names = Object.keys(cycles);
  const results = Object.fromEntries(names.map((name) => [name, new Latencies()]));
  for (const name of names) for (let i = 0; i < 50; i++) await cycles[name]();
  for (let round = 0; round < ROUNDS; round++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(round + offset) % names.length];
      for (let i = 0; i < PER_ROUND; i++) {
        const started = performance.now();
        await cycles[name]();
        results[name].add(performance.now() - started);
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
      `uncontended acquire+release (limit ${LIMIT}), ${results.floor.count} each:         p50      p99      max`,
      row(`floor (EVALSHA on ${GRANT_QUORUM} of 5, ZREM on all)`, results.floor),
      row('dlock redlock semaphore', results.dlock, results.floor),
      row('redis-semaphore RedlockSemaphore 5.8 *', results.peer, results.floor),
      '',
      `${CONTENDERS} contenders, limit ${LIMIT}, hold ${HOLD_MS} ms, ${CONTENTION_MS / 1_000} s (wait = acquire call):`,
      `  ${''.padEnd(30)}throughput      p50      p99      max`,
      contendedRow('dlock (pub/sub, no queue)', dlockContended),
      contendedRow('redis-semaphore (10 ms poll)', peerContended),
      '',
      '* grants on a majority (3 of 5) of nodes, which lets up to 6 hold a limit-4 semaphore at once.',
    ].join('\n'),
  );
} finally {
  await Promise.allSettled(opened.map((client) => client.quit()));
  for (const client of opened) client.disconnect();
  await cluster.stop();
}
