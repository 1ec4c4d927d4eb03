// Benchmark of the @dlock/redis semaphore against a floor and against redis-semaphore's Semaphore (the
// peer of issue 14), measured in the same run on one local redis-server.
// Run: pnpm --filter @dlock/redis bench:semaphore   (bounded: about 15 s; numbers depend on the machine)
import { randomBytes } from 'node:crypto';
import type { LockProvider } from '@dlock/core';
import { type RedisServer, startRedis, stopAll } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { Semaphore } from 'redis-semaphore';
import { createRedisProvider } from '../src/index.js';
import { permitKeys, permitLayout } from '../src/permit-layout.js';
import { permitAcquireScript, permitLeaveScript } from '../src/permit-scripts.js';
import { runScript } from '../src/scripts.js';
import {
  CONTENTION_MS,
  type Contended,
  FLOOR_ACQUIRE,
  HOLD_MS,
  Latencies,
  contention,
} from './semaphore-measure.js';

const ROUNDS = 10;
const PER_ROUND = 200;
const CONTENDERS = 32;
const LIMIT = 4;
const TTL_MS = 10_000;

function connect(url: string): Redis {
  const client = new Redis(url);
  client.on('error', () => {});
  return client;
}

type Cycle = () => Promise<void>;

/** acquire + release on a free semaphore, each variant in turn, order rotating every round. */
async function uncontended(url: string): Promise<Record<'floor' | 'scripts' | 'dlock' | 'peer', Latencies>> {
  const floorClient = connect(url);
  const floorSha = (await floorClient.script('LOAD', FLOOR_ACQUIRE)) as string;
  const scriptsClient = connect(url);
  const layout = permitLayout('bench:scripts', '', 'semaphore');
  const provider = createRedisProvider({ url });
  const semaphore = provider.semaphore('bench:dlock', { limit: LIMIT });
  const peerClient = connect(url);
  const cycles: Record<'floor' | 'scripts' | 'dlock' | 'peer', Cycle> = {
    floor: async () => {
      const owner = randomBytes(16).toString('hex');
      await floorClient.evalsha(floorSha, 1, 'bench:floor', LIMIT, owner, TTL_MS);
      await floorClient.zrem('bench:floor', owner);
    },
    scripts: async () => {
      const owner = randomBytes(16).toString('hex');
      const keys = permitKeys(layout);
      await runScript(scriptsClient, permitAcquireScript, keys, [
        owner,
        1,
        LIMIT,
        TTL_MS,
        2_000,
        'bench',
        layout.channel,
        1,
      ]);
      await runScript(scriptsClient, permitLeaveScript, keys, [owner, layout.channel, 1]);
    },
    dlock: async () => {
      const lease = await semaphore.acquire({ ttlMs: TTL_MS });
      await lease.release();
    },
    peer: async () => {
      const peer = new Semaphore(peerClient, 'bench:peer', LIMIT, {
        lockTimeout: TTL_MS,
        refreshInterval: 0,
      });
      await peer.acquire();
      await peer.release();
    },
  };
  const results = {
    floor: new Latencies(),
    scripts: new Latencies(),
    dlock: new Latencies(),
    peer: new Latencies(),
  };
  const names = Object.keys(cycles) as Array<keyof typeof cycles>;
  for (const name of names) for (let i = 0; i < 50; i++) await cycles[name]();
  for (let round = 0; round < ROUNDS; round++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(round + offset) % names.length]!;
      for (let i = 0; i < PER_ROUND; i++) {
        const started = performance.now();
        await cycles[name]();
        results[name].add(performance.now() - started);
      }
    }
  }
  await provider.close();
  for (const client of [floorClient, scriptsClient, peerClient]) client.disconnect();
  return results;
}

async function dlockContention(url: string): Promise<Contended> {
  const providers: LockProvider[] = Array.from({ length: CONTENDERS }, () => createRedisProvider({ url }));
  try {
    return await contention(
      providers.map((provider) => async () => {
        const lease = await provider
          .semaphore('bench:contended', { limit: LIMIT })
          .acquire({ ttlMs: TTL_MS, waitMs: 30_000 });
        return () => lease.release();
      }),
    );
  } finally {
    await Promise.all(providers.map((provider) => provider.close()));
  }
}

async function peerContention(url: string): Promise<Contended> {
  const clients = Array.from({ length: CONTENDERS }, () => connect(url));
  try {
    return await contention(
      clients.map((client) => async () => {
        const peer = new Semaphore(client, 'bench:contended-peer', LIMIT, {
          lockTimeout: TTL_MS,
          acquireTimeout: 30_000,
          refreshInterval: 0,
        });
        await peer.acquire();
        return () => peer.release();
      }),
    );
  } finally {
    for (const client of clients) client.disconnect();
  }
}

const f = (value: number) => value.toFixed(3).padStart(7);
const row = (label: string, l: Latencies, floor?: Latencies) =>
  `  ${label.padEnd(40)}${f(l.at(50))} ${f(l.at(99))} ${f(l.max)}${floor ? `   ${(l.at(50) / floor.at(50)).toFixed(2)}x floor at p50` : ''}`;
const contendedRow = (label: string, c: Contended) =>
  `  ${label.padEnd(28)}${(c.acquisitions / (CONTENTION_MS / 1_000)).toFixed(0).padStart(6)}/s  ${f(c.waits.at(50))} ${f(c.waits.at(99))} ${f(c.waits.max)}   most inside: ${c.mostInside}`;

async function main(): Promise<void> {
  let server: RedisServer | undefined;
  try {
    server = await startRedis();
    const { url } = server;
    const quiet = await uncontended(url);
    const dlockContended = await dlockContention(url);
    const peerContended = await peerContention(url);
    console.log(
      [
        `redis-server on 127.0.0.1, node ${process.version}; latencies in ms`,
        '',
        `uncontended acquire+release (limit ${LIMIT}), ${quiet.floor.count} each:  p50     p99     max`,
        row('floor (EVALSHA ZADD-if-room + ZREM)', quiet.floor),
        row("dlock's permit scripts, bare client", quiet.scripts, quiet.floor),
        row('dlock semaphore (acquire + release)', quiet.dlock, quiet.floor),
        row('redis-semaphore Semaphore 5.8', quiet.peer, quiet.floor),
        '',
        `${CONTENDERS} contenders, limit ${LIMIT}, hold ${HOLD_MS} ms, ${CONTENTION_MS / 1_000} s (wait = acquire call):`,
        `  ${''.padEnd(28)}throughput      p50     p99     max`,
        contendedRow('dlock (FIFO, pub/sub)', dlockContended),
        contendedRow('redis-semaphore (10 ms poll)', peerContended),
      ].join('\n'),
    );
  } finally {
    await server?.stop();
    await stopAll();
  }
}

await main();
