// Benchmark of @dlock/redis against baselines measured in the same run, on one local redis-server.
// Run: pnpm --filter @dlock/redis bench   (bounded: about 60 s; numbers depend on the machine)
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { type RedisServer, startRedis, stopAll } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { Mutex } from 'redis-semaphore';
import { RedisConnection } from '../src/connection.js';
import { RedisLockDriver } from '../src/driver.js';
import { createRedisProvider } from '../src/index.js';
import { redisKeyLayout } from '../src/layout.js';
import { acquireScript, releaseScript } from '../src/scripts.js';
import { ReleaseWakeups } from '../src/wakeups.js';
import {
  type Blocks,
  type ContentionRun,
  Latencies,
  blockRatio,
  commandMicros,
  contend,
  contentionRow,
  fixed,
  interleaved,
} from './measure.js';

const UNCONTENDED_BLOCKS = 20;
const UNCONTENDED_PER_BLOCK = 250;
const HANDOFF_ITERATIONS = 200;
const CONTENDERS = 32;
const CONTENTION_MS = 3_000;
const CONTENTION_ROUNDS = 2;
const LOCK_TTL_MS = 10_000;

const compareAndDelete = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

function newClient(url: string): Redis {
  const client = new Redis(url);
  client.on('error', () => {});
  return client;
}

/** Back-to-back PINGs (`busy`), and PINGs after 10-20 ms of idling, as a hand-off's messages travel. */
async function roundTrips(url: string): Promise<{ busy: Latencies; idle: Latencies }> {
  const client = newClient(url);
  const busy = new Latencies();
  const idle = new Latencies();
  for (let i = 0; i < 2_000; i++) {
    const started = performance.now();
    await client.ping();
    if (i >= 200) busy.add(performance.now() - started);
  }
  for (let i = 0; i < 150; i++) {
    await sleep(10 + Math.random() * 10);
    const started = performance.now();
    await client.ping();
    idle.add(performance.now() - started);
  }
  client.disconnect();
  return { busy, idle };
}

type Layer = 'floor' | 'scripts' | 'driver' | 'provider' | 'tryAcquire';

/**
 * The floor: the same two round trips a careful hand-written lock makes (SET NX PX, then a
 * compare-and-delete script by SHA). Against it, layer by layer: dlock's own two scripts from a bare
 * client (what the protocol costs before any client-side code), the Redis driver called directly (no
 * core around it), and the whole provider (acquire, and tryAcquire, + release).
 */
async function uncontended(url: string): Promise<{ layers: Record<Layer, Blocks>; server: ServerCost[] }> {
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
    wakeups: new ReleaseWakeups(() => driverClient.duplicate(), 'bench:wake'),
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
  const { scriptKeys: scriptsKeys, releaseKeys } = redisKeyLayout('bench:scripts', '');
  const floorCycle = async () => {
    const value = randomBytes(16).toString('hex');
    await raw.set('bench:floor', value, 'PX', LOCK_TTL_MS, 'NX');
    await raw.evalsha(sha, 1, 'bench:floor', value);
  };
  const scriptsCycle = async () => {
    const owner = `dlock1:${randomBytes(16).toString('hex')}:`;
    await raw.evalsha(
      acquireScript.sha1,
      scriptsKeys.length,
      ...scriptsKeys,
      owner,
      LOCK_TTL_MS,
      ':bench',
      'bench:wake',
    );
    await raw.evalsha(
      releaseScript.sha1,
      releaseKeys.length,
      ...releaseKeys,
      owner,
      'bench:scripts:released',
    );
  };
  const server = [
    await serverCost(raw, 'floor (SET NX PX + EVALSHA c-a-d)', ['set', 'evalsha'], floorCycle),
    await serverCost(raw, "dlock's acquire + release scripts", ['evalsha'], scriptsCycle),
  ];
  const results = await interleaved<Layer>(
    {
      floor: floorCycle,
      scripts: scriptsCycle,
      driver: async () => {
        const attempt = await driver.attempt(request, undefined);
        if (attempt.outcome !== 'granted') throw new Error('bench:driver was not free');
        await driver.release(request.key, attempt.grant);
      },
      provider: async () => {
        const lease = await provider.acquire('bench:provider', { ttlMs: LOCK_TTL_MS });
        await lease.release();
      },
      tryAcquire: async () => {
        const lease = await provider.tryAcquire('bench:try', { ttlMs: LOCK_TTL_MS });
        if (!lease) throw new Error('bench:try was not free');
        await lease.release();
      },
    },
    UNCONTENDED_BLOCKS,
    UNCONTENDED_PER_BLOCK,
  );
  raw.disconnect();
  await provider.close();
  await driver.close();
  return { layers: results, server };
}

/** Server-side µs per cycle: the `usec` that INFO commandstats adds up for the cycle's top-level commands. */
interface ServerCost {
  readonly label: string;
  readonly microsPerCycle: number;
}

const SERVER_COST_CYCLES = 3_000;

/**
 * Where the server's share of a cycle goes: CONFIG RESETSTAT, `SERVER_COST_CYCLES` cycles, then the
 * `usec` of the top-level commands the cycle sent (a script's `usec` includes the commands it calls,
 * which commandstats also lists on their own, so only the top-level ones are added). Redis runs one
 * command at a time, so every µs here is a µs of latency on an uncontended cycle.
 */
async function serverCost(
  client: Redis,
  label: string,
  commands: readonly string[],
  cycle: () => Promise<void>,
): Promise<ServerCost> {
  await client.config('RESETSTAT');
  for (let i = 0; i < SERVER_COST_CYCLES; i++) await cycle();
  const micros = commandMicros((await client.info('commandstats')) as string, commands);
  return { label, microsPerCycle: micros / SERVER_COST_CYCLES };
}

/** Release → the waiting contender holds the lock, with the waiter settled in its wait first. */
async function handoff(
  label: string,
  acquireHolder: () => Promise<() => Promise<void>>,
  acquireWaiter: () => Promise<() => Promise<void>>,
): Promise<Latencies> {
  const latency = new Latencies();
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
    if (i >= 10) latency.add(heldAt - releasedAt);
    await releaseWaiter();
  }
  if (latency.count === 0) throw new Error(`${label}: no hand-off measured`);
  return latency;
}

async function dlockHandoff(url: string): Promise<Latencies> {
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
async function pollingHandoff(url: string): Promise<Latencies> {
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

/**
 * CONTENDERS contenders, each with its own provider (its own command and subscriber connections, as
 * separate processes would have), loop acquire → release on one key for CONTENTION_MS.
 */
async function dlockContention(url: string, key: string): Promise<ContentionRun> {
  const providers: LockProvider[] = Array.from({ length: CONTENDERS }, () => createRedisProvider({ url }));
  try {
    return await contend(
      providers.map((provider) => async () => {
        const lease = await provider.acquire(key, { ttlMs: LOCK_TTL_MS, waitMs: 30_000 });
        return () => lease.release();
      }),
      CONTENTION_MS,
    );
  } finally {
    await Promise.all(providers.map((provider) => provider.close()));
  }
}

/** The same loop with redis-semaphore's Mutex (each contender its own connection; 10 ms poll). */
async function pollingContention(url: string, key: string): Promise<ContentionRun> {
  const clients = Array.from({ length: CONTENDERS }, () => newClient(url));
  try {
    return await contend(
      clients.map((client) => async () => {
        const mutex = new Mutex(client, key, { lockTimeout: LOCK_TTL_MS, acquireTimeout: 30_000 });
        await mutex.acquire();
        return () => mutex.release();
      }),
      CONTENTION_MS,
    );
  } finally {
    for (const client of clients) client.disconnect();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  let server: RedisServer | undefined;
  try {
    server = await startRedis();
    const { url } = server;
    const rtt = await roundTrips(url);
    const { layers, server: serverCosts } = await uncontended(url);
    const dlockHandoffs = await dlockHandoff(url);
    const pollingHandoffs = await pollingHandoff(url);
    const rounds: Array<{ dlock: ContentionRun; peer: ContentionRun }> = [];
    for (let round = 0; round < CONTENTION_ROUNDS; round++) {
      const dlock = await dlockContention(url, `bench:contended:${round}`);
      const peer = await pollingContention(url, `bench:contended-poll:${round}`);
      rounds.push({ dlock, peer });
    }

    const { floor } = layers;
    const layerRow = (label: string, name: Layer) => {
      const l = layers[name];
      const p50 = blockRatio(l, floor, 50);
      const p99 = blockRatio(l, floor, 99);
      return `  ${label.padEnd(36)}${fixed(l.pooled.at(50))} ${fixed(l.pooled.at(99))} ${fixed(l.pooled.max)}   ${p50.median.toFixed(2)}x (${p50.low.toFixed(2)}-${p50.high.toFixed(2)})  ${p99.median.toFixed(2)}x`;
    };
    const idleRttP50 = rtt.idle.at(50);
    const throughputRatios = rounds.map((r) => r.dlock.acquisitions / r.peer.acquisitions);
    const p99Ratios = rounds.map((r) => r.dlock.waits.at(99) / r.peer.waits.at(99));
    const lines = [
      `redis-server on 127.0.0.1, node ${process.version}; latencies in ms; load average ${loadAverage()}`,
      `round trip, back-to-back PINGs:        p50 ${fixed(rtt.busy.at(50))}  p99 ${fixed(rtt.busy.at(99))}  max ${fixed(rtt.busy.max)}`,
      `round trip, PING after 10-20 ms idle:  p50 ${fixed(idleRttP50)}  p99 ${fixed(rtt.idle.at(99))}  max ${fixed(rtt.idle.max)}`,
      '',
      `uncontended acquire+release, ${UNCONTENDED_BLOCKS} interleaved blocks of ${UNCONTENDED_PER_BLOCK} each`,
      '(ratios: median of the per-block ratios to the floor, lowest-highest block in brackets):',
      `  ${''.padEnd(36)}    p50     p99     max   p50 / floor        p99 / floor`,
      layerRow('floor (SET NX PX + EVALSHA c-a-d)', 'floor'),
      layerRow("dlock's scripts from a bare client", 'scripts'),
      layerRow('Redis driver alone (no core)', 'driver'),
      layerRow('provider: acquire + release', 'provider'),
      layerRow('provider: tryAcquire + release', 'tryAcquire'),
      '',
      `server time per cycle (INFO commandstats, ${SERVER_COST_CYCLES} cycles; Redis runs one command at a time):`,
      ...serverCosts.map(
        (cost) => `  ${cost.label.padEnd(36)}${cost.microsPerCycle.toFixed(1).padStart(6)} µs`,
      ),
      `  difference: ${(serverCosts[1]!.microsPerCycle - serverCosts[0]!.microsPerCycle).toFixed(1)} µs per cycle, against a floor p50 of ${fixed(floor.pooled.at(50))} ms`,
      '',
      `hand-off (release called → waiter holds), ${dlockHandoffs.count} each:   p50     p99     max`,
      `  dlock (pub/sub wake-up)             ${fixed(dlockHandoffs.at(50))} ${fixed(dlockHandoffs.at(99))} ${fixed(dlockHandoffs.max)}   (${(dlockHandoffs.at(50) / idleRttP50).toFixed(1)} idle round trips at p50)`,
      `  redis-semaphore Mutex (10 ms poll)  ${fixed(pollingHandoffs.at(50))} ${fixed(pollingHandoffs.at(99))} ${fixed(pollingHandoffs.max)}`,
      '',
      `${CONTENDERS} contenders (each its own provider / connection) on one key, acquire → release, ${CONTENTION_MS / 1_000} s rounds;`,
      "wait = one acquire call, in ms; share = the slowest contender's share of the acquisitions:",
      `  ${''.padEnd(30)}throughput   wait p50 wait p99 wait max   slowest share`,
      ...rounds.flatMap((r, i) => [
        contentionRow(`round ${i + 1}: dlock`, r.dlock),
        contentionRow(`round ${i + 1}: redis-semaphore`, r.peer),
      ]),
      `  dlock ÷ redis-semaphore: throughput ${median(throughputRatios).toFixed(2)}x (rounds: ${throughputRatios.map((r) => r.toFixed(2)).join(', ')}), wait p99 ${median(p99Ratios).toFixed(3)}x (rounds: ${p99Ratios.map((r) => r.toFixed(3)).join(', ')})`,
    ];
    console.log(lines.join('\n'));
  } finally {
    await server?.stop();
    await stopAll();
  }
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((load) => load.toFixed(1))
    .join(' ');
}

await main();
