// Benchmark of @dlock/redis against baselines measured in the same run, on one local redis-server.
// Run: pnpm --filter @dlock/redis bench   (bounded: about 20 s; numbers depend on the machine)
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { type RedisServer, startRedis, stopAll } from '@dlock/testkit';
import { type Histogram, build } from 'hdr-histogram-js';
import { Redis } from 'ioredis';
import { Mutex } from 'redis-semaphore';
import { RedisConnection } from '../src/connection.js';
import { RedisLockDriver } from '../src/driver.js';
import { createRedisProvider } from '../src/index.js';
import { acquireScript, releaseScript } from '../src/scripts.js';
import { ReleaseWakeups } from '../src/wakeups.js';

const UNCONTENDED_ROUNDS = 20;
const UNCONTENDED_PER_ROUND = 150;
const HANDOFF_ITERATIONS = 200;
const CONTENDERS = 32;
const CONTENTION_MS = 3_000;
const THINK_MS = 1;
const LOCK_TTL_MS = 10_000;

const compareAndDelete = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

const histogram = (): Histogram => build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
/** Records milliseconds at microsecond resolution. */
const record = (into: Histogram, ms: number) => into.recordValue(Math.max(1, Math.round(ms * 1_000)));
const ms = (into: Histogram, percentile: number) => into.getValueAtPercentile(percentile) / 1_000;
const fmt = (value: number) => value.toFixed(3);

function newClient(url: string): Redis {
  const client = new Redis(url);
  client.on('error', () => {});
  return client;
}

/** Back-to-back PINGs (`busy`), and PINGs after 10-20 ms of idling, as a hand-off's messages travel. */
async function roundTrips(url: string): Promise<{ busy: Histogram; idle: Histogram }> {
  const client = newClient(url);
  const busy = histogram();
  const idle = histogram();
  for (let i = 0; i < 2_000; i++) {
    const started = performance.now();
    await client.ping();
    if (i >= 200) record(busy, performance.now() - started);
  }
  for (let i = 0; i < 150; i++) {
    await sleep(10 + Math.random() * 10);
    const started = performance.now();
    await client.ping();
    record(idle, performance.now() - started);
  }
  client.disconnect();
  return { busy, idle };
}

/**
 * The floor: the same two round trips a careful hand-written lock makes (SET NX PX, then a
 * compare-and-delete script by SHA), against dlock's acquire + release, and against the Redis driver
 * called directly (no core provider around it) to show which layer costs what. Interleaved in rounds,
 * order rotating, so drift in the machine's load hits all three alike.
 */
async function uncontended(
  url: string,
): Promise<Record<'floor' | 'protocol' | 'dlock' | 'driver', Histogram>> {
  const raw = newClient(url);
  const sha = (await raw.script('LOAD', compareAndDelete)) as string;
  await raw.script('LOAD', acquireScript.source);
  await raw.script('LOAD', releaseScript.source);
  const provider = createRedisProvider({ url });
  const driverClient = newClient(url);
  const driver = new RedisLockDriver({
    connection: new RedisConnection({
      client: driverClient,
      owned: true,
      address: url,
      connectTimeoutMs: 2_000,
      commandTimeoutMs: 2_000,
    }),
    wakeups: new ReleaseWakeups(() => driverClient.duplicate()),
    keyPrefix: '',
    cluster: false,
    onConnectionLoss: 'abort',
  });
  const request = {
    key: 'bench:driver',
    identity: 'bench',
    ttlMs: LOCK_TTL_MS,
    signal: new AbortController().signal,
  };
  const results = { floor: histogram(), protocol: histogram(), dlock: histogram(), driver: histogram() };
  const passes: Array<[keyof typeof results, () => Promise<void>]> = [
    [
      'floor',
      async () => {
        const value = randomBytes(16).toString('hex');
        await raw.set('bench:floor', value, 'PX', LOCK_TTL_MS, 'NX');
        await raw.evalsha(sha, 1, 'bench:floor', value);
      },
    ],
    [
      // dlock's own two scripts (fencing counter, identity in the value) from a bare client: what the
      // protocol costs before any client-side code, so the rest of the gap can be attributed.
      'protocol',
      async () => {
        const owner = `dlock1:${randomBytes(16).toString('hex')}:`;
        await raw.evalsha(
          acquireScript.sha1,
          2,
          'bench:protocol',
          '{bench:protocol}:fence',
          owner,
          LOCK_TTL_MS,
          ':bench',
        );
        await raw.evalsha(releaseScript.sha1, 1, 'bench:protocol', owner, 'bench:protocol:released');
      },
    ],
    [
      'dlock',
      async () => {
        const lease = await provider.acquire('bench:dlock', { ttlMs: LOCK_TTL_MS });
        await lease.release();
      },
    ],
    [
      'driver',
      async () => {
        const attempt = await driver.attempt(request, undefined);
        if (attempt.outcome !== 'granted') throw new Error('bench:driver was not free');
        await driver.release(request.key, attempt.grant);
      },
    ],
  ];
  const pass = async (run: () => Promise<void>, into: Histogram | undefined) => {
    for (let i = 0; i < UNCONTENDED_PER_ROUND; i++) {
      const started = performance.now();
      await run();
      if (into) record(into, performance.now() - started);
    }
  };
  for (const [, run] of passes) await pass(run, undefined);
  for (let round = 0; round < UNCONTENDED_ROUNDS; round++) {
    for (let i = 0; i < passes.length; i++) {
      const [name, run] = passes[(round + i) % passes.length]!;
      await pass(run, results[name]);
    }
  }
  raw.disconnect();
  await provider.close();
  await driver.close();
  return results;
}

/** Release → the waiting contender holds the lock, with the waiter settled in its wait first. */
async function handoff(
  label: string,
  acquireHolder: () => Promise<() => Promise<void>>,
  acquireWaiter: () => Promise<() => Promise<void>>,
): Promise<Histogram> {
  const latency = histogram();
  for (let i = 0; i < HANDOFF_ITERATIONS; i++) {
    const releaseHolder = await acquireHolder();
    let heldAt = 0;
    const waiting = acquireWaiter().then((release) => {
      heldAt = performance.now();
      return release;
    });
    // A random pause, so the release does not fall in step with a polling waiter's retry interval.
    await sleep(10 + Math.random() * 10);
    const releasedAt = performance.now();
    await releaseHolder();
    const releaseWaiter = await waiting;
    if (i >= 10) record(latency, heldAt - releasedAt);
    await releaseWaiter();
  }
  if (latency.totalCount === 0) throw new Error(`${label}: no hand-off measured`);
  return latency;
}

async function dlockHandoff(url: string): Promise<Histogram> {
  const holder = createRedisProvider({ url });
  const waiter = createRedisProvider({ url });
  const release = (lease: { release(): Promise<void> }) => () => lease.release();
  try {
    return await handoff(
      'dlock',
      async () => release(await holder.acquire('bench:handoff', { ttlMs: LOCK_TTL_MS })),
      async () => release(await waiter.acquire('bench:handoff', { ttlMs: LOCK_TTL_MS, waitMs: 5_000 })),
    );
  } finally {
    await holder.close();
    await waiter.close();
  }
}

/** redis-semaphore's Mutex polls every retryInterval (default 10 ms) while it waits. */
async function pollingHandoff(url: string): Promise<Histogram> {
  const holderClient = newClient(url);
  const waiterClient = newClient(url);
  const mutexOn = (client: Redis) => async () => {
    const mutex = new Mutex(client, 'bench:poll', { lockTimeout: LOCK_TTL_MS, acquireTimeout: 5_000 });
    await mutex.acquire();
    return () => mutex.release();
  };
  try {
    return await handoff('redis-semaphore', mutexOn(holderClient), mutexOn(waiterClient));
  } finally {
    holderClient.disconnect();
    waiterClient.disconnect();
  }
}

interface ContentionResult {
  acquisitions: number;
  ownerChanges: number;
  seconds: number;
}

/**
 * `CONTENDERS` separate connections loop acquire → release → 1 ms of other work, on one key, for
 * CONTENTION_MS. The pause after releasing lets the lock pass to a waiter instead of going straight back
 * to the contender that just released it.
 */
async function contention(contenders: Array<() => Promise<() => Promise<void>>>): Promise<ContentionResult> {
  let acquisitions = 0;
  let ownerChanges = 0;
  let lastOwner = -1;
  const started = performance.now();
  const deadline = started + CONTENTION_MS;
  await Promise.all(
    contenders.map(async (acquire, index) => {
      while (performance.now() < deadline) {
        const release = await acquire();
        if (performance.now() < deadline) {
          acquisitions++;
          if (index !== lastOwner) ownerChanges++;
          lastOwner = index;
        }
        await release();
        await sleep(THINK_MS);
      }
    }),
  );
  return { acquisitions, ownerChanges, seconds: CONTENTION_MS / 1_000 };
}

async function dlockContention(url: string): Promise<ContentionResult> {
  const providers: LockProvider[] = Array.from({ length: CONTENDERS }, () => createRedisProvider({ url }));
  try {
    return await contention(
      providers.map((provider) => async () => {
        const lease = await provider.acquire('bench:contended', { ttlMs: LOCK_TTL_MS, waitMs: 30_000 });
        return () => lease.release();
      }),
    );
  } finally {
    await Promise.all(providers.map((provider) => provider.close()));
  }
}

async function pollingContention(url: string): Promise<ContentionResult> {
  const clients = Array.from({ length: CONTENDERS }, () => newClient(url));
  try {
    return await contention(
      clients.map((client) => async () => {
        const mutex = new Mutex(client, 'bench:contended-poll', {
          lockTimeout: LOCK_TTL_MS,
          acquireTimeout: 30_000,
        });
        await mutex.acquire();
        return () => mutex.release();
      }),
    );
  } finally {
    for (const client of clients) client.disconnect();
  }
}

async function main(): Promise<void> {
  let server: RedisServer | undefined;
  try {
    server = await startRedis();
    const { url } = server;
    const rtt = await roundTrips(url);
    const { floor, protocol, dlock, driver } = await uncontended(url);
    const dlockHandoffs = await dlockHandoff(url);
    const pollingHandoffs = await pollingHandoff(url);
    const dlockContended = await dlockContention(url);
    const pollingContended = await pollingContention(url);

    const idleRttP50 = ms(rtt.idle, 50);
    const lines = [
      `redis-server on 127.0.0.1, node ${process.version}; latencies in ms (p50 / p99)`,
      `round trip, back-to-back PINGs:         ${fmt(ms(rtt.busy, 50))} / ${fmt(ms(rtt.busy, 99))}`,
      `round trip, PING after 10-20 ms idle:   ${fmt(idleRttP50)} / ${fmt(ms(rtt.idle, 99))}`,
      '',
      `uncontended acquire+release, ${floor.totalCount} each:`,
      `  floor (SET NX PX + EVALSHA c-a-d):    ${fmt(ms(floor, 50))} / ${fmt(ms(floor, 99))}`,
      `  dlock's scripts from a bare client:   ${fmt(ms(protocol, 50))} / ${fmt(ms(protocol, 99))}  (${(ms(protocol, 50) / ms(floor, 50)).toFixed(2)}x floor at p50)`,
      `  dlock (acquire + release):            ${fmt(ms(dlock, 50))} / ${fmt(ms(dlock, 99))}`,
      `  dlock / floor:                        ${(ms(dlock, 50) / ms(floor, 50)).toFixed(2)}x at p50, ${(ms(dlock, 99) / ms(floor, 99)).toFixed(2)}x at p99`,
      `  Redis driver alone (no core):         ${fmt(ms(driver, 50))} / ${fmt(ms(driver, 99))}  (${(ms(driver, 50) / ms(floor, 50)).toFixed(2)}x floor at p50)`,
      '',
      `hand-off (release called → waiter holds), ${dlockHandoffs.totalCount} each:`,
      `  dlock (pub/sub wake-up):              ${fmt(ms(dlockHandoffs, 50))} / ${fmt(ms(dlockHandoffs, 99))}  (${(ms(dlockHandoffs, 50) / idleRttP50).toFixed(1)} idle round trips at p50)`,
      `  redis-semaphore Mutex (10 ms poll):   ${fmt(ms(pollingHandoffs, 50))} / ${fmt(ms(pollingHandoffs, 99))}`,
      '',
      `${CONTENDERS} contenders (own connections, ${THINK_MS} ms pause after each release) on one key for ${CONTENTION_MS / 1_000} s:`,
      `  dlock:           ${(dlockContended.acquisitions / dlockContended.seconds).toFixed(0)} acquisitions/s, ${(dlockContended.ownerChanges / dlockContended.seconds).toFixed(0)} hand-offs to another contender/s`,
      `  redis-semaphore: ${(pollingContended.acquisitions / pollingContended.seconds).toFixed(0)} acquisitions/s, ${(pollingContended.ownerChanges / pollingContended.seconds).toFixed(0)} hand-offs to another contender/s`,
    ];
    console.log(lines.join('\n'));
  } finally {
    await server?.stop();
    await stopAll();
  }
}

await main();
