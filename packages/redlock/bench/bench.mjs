// Benchmark: dlock's RedLock provider against the plain `redlock` library, on the same five local
// redis-server nodes, in the same run. Bounded in count and time. Run with:
//   pnpm --filter @dlock/redlock bench
import { startRedisNodes } from '@dlock/testkit';
import hdr from 'hdr-histogram-js';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
import { RedlockDriver } from '../dist/driver.js';
import { createRedlockProvider } from '../dist/index.js';
import { closeClients, connectNode, openSubscriber } from '../dist/node.js';
import { ReleaseNotices } from '../dist/wakeups.js';

const ROUNDS = 10;
const OPS_PER_ROUND = 200;
const WARMUP_OPS = 200;
const HANDOFFS = 15;
const HOLD_BEFORE_RELEASE_MS = 50;
const TIME_BUDGET_MS = 60_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const histogram = () =>
  hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
const record = (h, startedAt) =>
  h.recordValue(Math.max(1, Math.round((performance.now() - startedAt) * 1000)));
const ms = (micros) => (micros / 1000).toFixed(2).padStart(8);
const row = (label, h) =>
  `  ${label.padEnd(32)}${ms(h.mean)} ${ms(h.getValueAtPercentile(50))} ${ms(Math.min(h.getValueAtPercentile(99), h.maxValue))} ${ms(h.maxValue)}`;
const ratio = (a, b) =>
  `mean ${(a.mean / b.mean).toFixed(2)}×, p50 ${(a.getValueAtPercentile(50) / b.getValueAtPercentile(50)).toFixed(2)}×`;

const cluster = await startRedisNodes(5);
const benchStarted = performance.now();
const overBudget = () => performance.now() - benchStarted > TIME_BUDGET_MS;
const plainClients = [];
const plainRedlock = (settings) => {
  // The same per-command bounds dlock sets on its own connections, so only the locking code differs.
  const clients = cluster.urls.map(
    (url) => new Redis(url, { commandTimeout: 2_000, maxRetriesPerRequest: 0 }),
  );
  plainClients.push(...clients);
  return new Redlock(clients, settings);
};

try {
  const dlock = createRedlockProvider({ urls: cluster.urls });
  const dlockWaiter = createRedlockProvider({ urls: cluster.urls });
  const raw = plainRedlock({ retryCount: 0 });
  const rawWaiter = plainRedlock({}); // the library's defaults: retryDelay 200 ms, retryJitter 100 ms
  // The driver alone, without core's lease lifecycle, to tell the two costs apart.
  const driverNodes = cluster.urls.map((url) =>
    connectNode(url, { connectTimeoutMs: 2_000, commandTimeoutMs: 2_000 }),
  );
  const driver = new RedlockDriver({
    nodes: driverNodes,
    keyPrefix: '',
    driftFactor: 0.01,
    notices: new ReleaseNotices(driverNodes.map((node) => () => openSubscriber(node, true))),
    closeConnections: () => closeClients(driverNodes.map((node) => node.client)),
  });
  const never = new AbortController().signal;

  const contenders = [
    ['dlock', async (key) => (await dlock.acquire(key, { ttlMs: 10_000 })).release()],
    ['raw', async (key) => raw.release(await raw.acquire([key], 10_000))],
    [
      'driver',
      async (key) => {
        const attempt = await driver.attempt(
          { key, identity: 'bench', ttlMs: 10_000, signal: never },
          undefined,
        );
        await driver.release(key, attempt.grant);
      },
    ],
  ];

  // --- acquire + release on a free key; rounds rotate who goes first so all see the same load ---
  for (let i = 0; i < WARMUP_OPS; i++) {
    for (const [name, cycle] of contenders) await cycle(`bench-warm-${name}-${i % 10}`);
  }
  const cycles = { dlock: histogram(), raw: histogram(), driver: histogram() };
  let rounds = 0;
  for (; rounds < ROUNDS && !overBudget(); rounds++) {
    const order = contenders.map((_, i) => contenders[(i + rounds) % contenders.length]);
    for (const [name, cycle] of order) {
      for (let i = 0; i < OPS_PER_ROUND; i++) {
        const startedAt = performance.now();
        await cycle(`bench-${name}-${i % 50}`);
        record(cycles[name], startedAt);
      }
    }
  }

  // --- hand-off: how long after the holder's release the waiting contender holds the lock ---
  const handoff = { dlock: histogram(), raw: histogram() };
  for (let i = 0; i < HANDOFFS && !overBudget(); i++) {
    const dlockKey = `bench-handoff-dlock-${i}`;
    const lease = await dlock.acquire(dlockKey, { ttlMs: 10_000 });
    const dlockWaiting = dlockWaiter.acquire(dlockKey, { ttlMs: 10_000, waitMs: 10_000 });
    await sleep(HOLD_BEFORE_RELEASE_MS);
    let releasedAt = performance.now();
    await lease.release();
    const dlockNext = await dlockWaiting;
    record(handoff.dlock, releasedAt);
    await dlockNext.release();

    const rawKey = `bench-handoff-raw-${i}`;
    const lock = await raw.acquire([rawKey], 10_000);
    const rawWaiting = rawWaiter.acquire([rawKey], 10_000);
    await sleep(HOLD_BEFORE_RELEASE_MS);
    releasedAt = performance.now();
    await raw.release(lock);
    const rawNext = await rawWaiting;
    record(handoff.raw, releasedAt);
    await rawWaiter.release(rawNext);
  }

  await Promise.all([dlock.close(), dlockWaiter.close(), driver.close()]);

  console.log(`redlock bench: 5 local redis-server nodes, node ${process.version}`);
  console.log(
    `acquire+release, free key (${rounds} × ${OPS_PER_ROUND} each)  mean ms   p50 ms   p99 ms   max ms`,
  );
  console.log(row('dlock createRedlockProvider', cycles.dlock));
  console.log(row('redlock 5.0.0-beta.2, raw', cycles.raw));
  console.log(row('dlock driver without core', cycles.driver));
  console.log(`  ratio dlock / raw:  ${ratio(cycles.dlock, cycles.raw)} (goal ≤ 1.15×)`);
  console.log(`  ratio driver / raw: ${ratio(cycles.driver, cycles.raw)}`);
  console.log(
    `hand-off after release (${handoff.dlock.totalCount} each)        mean ms   p50 ms   p99 ms   max ms`,
  );
  console.log(row('dlock, admit notice', handoff.dlock));
  console.log(row('redlock retries, 200±100 ms', handoff.raw));
} finally {
  await Promise.allSettled(plainClients.map((client) => client.quit()));
  await cluster.stop();
}
