// Contention on one key (issue 13): CONTENDERS contenders, each its own provider and connections (as
// that many processes would have), loop acquire → release on five local redis-server nodes; beside
// them, the plain `redlock` library (5.0.0-beta.2, its own retry delay and jitter) with as many
// contenders, in the same run, rounds alternating. Reports throughput, the wait of each acquire call
// (p50, p99, max), the slowest contender's share of the acquisitions (fair: 1/CONTENDERS), and the
// scripts the nodes ran per acquisition (EVAL/EVALSHA over all five nodes, from INFO commandstats).
// Bounded: ROUNDS × (RUN_MS per variant) plus the drain of the last waits, under a minute.
// Run: pnpm --filter @dlock/redlock bench:herd
import os from 'node:os';
import { startRedisNodes } from '@dlock/testkit';
import { Redis } from 'ioredis';
import Redlock from 'redlock';
// The contention loop and its row are the redis bench's (one copy), compiled by this bench's script.
import { contend, contentionRow } from '../../redis/bench/dist/bench/measure.js';
import { createRedlockProvider } from '../dist/index.js';

const CONTENDERS = 32;
const ROUNDS = 3;
const RUN_MS = 3_000;
const SOLO_MS = 2_000;
const TTL_MS = 10_000;
const WAIT_MS = 30_000;

const cluster = await startRedisNodes(5);
const opened = [];
const connect = (url) => {
  const client = new Redis(url, { commandTimeout: 2_000, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  opened.push(client);
  return client;
};
const admins = cluster.urls.map(connect);

/**
 * Scripts (EVAL + EVALSHA) the five nodes ran since the last reset, and all commands: those sent and
 * those the scripts called (commandstats counts both).
 */
async function serverCounts() {
  let scripts = 0;
  let all = 0;
  for (const admin of admins) {
    const stats = await admin.info('commandstats');
    for (const [, name, calls] of stats.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) {
      if (name === 'info' || name === 'config') continue;
      if (name === 'eval' || name === 'evalsha') scripts += Number(calls);
      all += Number(calls);
    }
  }
  return { scripts, all };
}

async function measured(label, acquirers, ms) {
  await Promise.all(admins.map((admin) => admin.config('RESETSTAT')));
  const run = await contend(acquirers, ms);
  const { scripts, all } = await serverCounts();
  const per = (count) => (count / Math.max(1, run.waits.count)).toFixed(1).padStart(6);
  return `${contentionRow(label, run)}  ${per(scripts)} ${per(all)}`;
}

const dlockAcquirers = (providers, key) =>
  providers.map((provider) => async () => {
    const lease = await provider.acquire(key, { ttlMs: TTL_MS, waitMs: WAIT_MS });
    return () => lease.release();
  });

try {
  const providers = Array.from({ length: CONTENDERS }, () => createRedlockProvider({ urls: cluster.urls }));
  // Each peer contender: its own five connections; retryCount -1 (never give up), the library's own
  // retryDelay (200 ms) and retryJitter (100 ms).
  const peers = Array.from(
    { length: CONTENDERS },
    () => new Redlock(cluster.urls.map(connect), { retryCount: -1 }),
  );
  const peerAcquirers = (key) =>
    peers.map((redlock) => async () => {
      const lock = await redlock.acquire([key], TTL_MS);
      return () => lock.release();
    });
  // Warm-up: connections up, subscriber connections opened, the library's scripts loaded.
  for (const provider of providers) {
    const lease = await provider.acquire('herd:warm', { ttlMs: TTL_MS, waitMs: WAIT_MS });
    await lease.release();
  }
  for (const redlock of peers) await (await redlock.acquire(['herd:warm-peer'], TTL_MS)).release();

  const rows = [];
  rows.push(
    await measured('dlock, 1 contender', dlockAcquirers(providers.slice(0, 1), 'herd:solo'), SOLO_MS),
  );
  for (let round = 0; round < ROUNDS; round++) {
    const dlockRow = () =>
      measured(`dlock, ${CONTENDERS} contenders`, dlockAcquirers(providers, `herd:key${round}`), RUN_MS);
    const peerRow = () =>
      measured(`redlock, ${CONTENDERS} contenders`, peerAcquirers(`herd:peer${round}`), RUN_MS);
    // Who goes first alternates, so a drift in the machine's load hits both alike.
    if (round % 2 === 0) rows.push(await dlockRow(), await peerRow());
    else rows.push(await peerRow(), await dlockRow());
  }
  await Promise.all(providers.map((provider) => provider.close()));
  console.log(
    [
      `five redis-server nodes on 127.0.0.1, node ${process.version}; ${ROUNDS} rounds of ${RUN_MS / 1_000} s ` +
        `per variant; load average ${os
          .loadavg()
          .map((load) => load.toFixed(1))
          .join(' ')}`,
      'wait = one acquire call, in ms; scripts, and all commands (sent or called by scripts): over all five nodes, per acquire call',
      `  ${''.padEnd(30)} throughput      p50      p99      max   slowest share       scripts   all`,
      ...rows,
    ].join('\n'),
  );
} finally {
  await Promise.allSettled(opened.map((client) => client.quit()));
  for (const client of opened) client.disconnect();
  await cluster.stop();
}
