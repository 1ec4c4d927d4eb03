// Benchmarks @dlock/zookeeper against a real standalone ZooKeeper (tickTime 200 ms) on loopback.
// Run with `pnpm --filter @dlock/zookeeper bench` (builds dist first). Bounded: about 10-20 s.
//
// 1. Floor: raw node-zookeeper-client create(EPHEMERAL_SEQUENTIAL) + delete, awaited one after the other.
// 2. Uncontended acquire + release on one key (ratio against the floor, measured in the same run).
// 3. Hand-off: time from release() by the holder to acquire() resolving for the one waiter.
// 4. Watch notifications per release with 1, 8 and 32 queued waiters.
import { startZooKeeper, stopAll } from '@dlock/testkit';
import zookeeper from 'node-zookeeper-client';
import { createZooKeeperProvider } from '../dist/index.js';
import { handoffs, histogram, ms, since, sleep } from './support.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 500);
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 200);
const ROOT = '/dlock-bench';

async function rawFloor(connectString) {
  const client = zookeeper.createClient(connectString, { retries: 0 });
  await new Promise((resolve) => {
    client.once('connected', resolve);
    client.connect();
  });
  const call = (start) =>
    new Promise((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value))));
  await call((done) => client.mkdirp(`${ROOT}/floor`, done));
  const h = histogram();
  for (let i = 0; i < ROUNDS + 50; i++) {
    const start = performance.now();
    const path = await call((done) =>
      client.create(`${ROOT}/floor/node-`, Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done),
    );
    await call((done) => client.remove(path, -1, done));
    if (i >= 50) h.recordValue(since(start));
  }
  client.close();
  return h;
}

async function uncontended(connectString) {
  const provider = createZooKeeperProvider({ connectString, root: ROOT });
  const h = histogram();
  for (let i = 0; i < ROUNDS + 50; i++) {
    const start = performance.now();
    const lease = await provider.acquire('uncontended');
    await lease.release();
    if (i >= 50) h.recordValue(since(start));
  }
  await provider.close();
  return h;
}

async function handoff(connectString) {
  const [a, b] = [0, 1].map(() => createZooKeeperProvider({ connectString, root: ROOT }));
  const h = await handoffs(a, b, (provider, options) => provider.acquire('handoff', options), HANDOFFS);
  await Promise.all([a.close(), b.close()]);
  return h;
}

async function notifications(connectString, waiters) {
  const key = `herd-${waiters}`;
  const holder = createZooKeeperProvider({ connectString, root: ROOT });
  const counts = { predecessor: 0, ownNode: 0 };
  const onWatchEvent = (event) => {
    if (event.purpose === 'predecessor') counts.predecessor++;
    else if (event.purpose === 'own-node') counts.ownNode++;
  };
  const contenders = Array.from({ length: waiters }, () =>
    createZooKeeperProvider({ connectString, root: ROOT, onWatchEvent }),
  );
  const first = await holder.acquire(key);
  const done = [];
  for (const contender of contenders) {
    done.push(contender.acquire(key, { waitMs: 30_000 }).then((lease) => lease.release()));
    await sleep(10);
  }
  await sleep(200);
  const start = performance.now();
  await first.release();
  await Promise.all(done);
  const drainMs = performance.now() - start;
  await Promise.all([holder, ...contenders].map((provider) => provider.close()));
  // Every release but the last waiter's has someone behind it.
  return { releasesWithWaiters: waiters, ...counts, drainMs };
}

const server = await startZooKeeper();
try {
  const floor = await rawFloor(server.connectString);
  const acquireRelease = await uncontended(server.connectString);
  const handoffs = await handoff(server.connectString);
  const herd = [];
  for (const waiters of [1, 8, 32]) herd.push(await notifications(server.connectString, waiters));

  console.log(`ZooKeeper standalone on loopback, tickTime 200 ms; ${ROUNDS} rounds, ${HANDOFFS} hand-offs`);
  console.log('| measurement | p50 ms | p99 ms |');
  console.log('|---|---|---|');
  console.log(`| floor: raw create + delete (2 round trips) | ${ms(floor, 50)} | ${ms(floor, 99)} |`);
  console.log(`| uncontended acquire + release | ${ms(acquireRelease, 50)} | ${ms(acquireRelease, 99)} |`);
  console.log(`| hand-off (release → next acquire resolves) | ${ms(handoffs, 50)} | ${ms(handoffs, 99)} |`);
  const ratio = acquireRelease.getValueAtPercentile(50) / floor.getValueAtPercentile(50);
  console.log(`\nuncontended acquire+release / raw floor at p50: ${ratio.toFixed(2)}x`);
  console.log(
    '\n| waiters | releases with a waiter behind | predecessor notifications | per release | child-watch herd would send | drain ms |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const { releasesWithWaiters, predecessor, drainMs } of herd) {
    const waiters = releasesWithWaiters;
    // A recipe where every waiter watches the parent's children is woken on each release: W + (W-1) + ... + 1.
    const herdTotal = (waiters * (waiters + 1)) / 2;
    console.log(
      `| ${waiters} | ${releasesWithWaiters} | ${predecessor} | ${(predecessor / releasesWithWaiters).toFixed(2)} | ${herdTotal} (${(herdTotal / releasesWithWaiters).toFixed(1)} per release) | ${drainMs.toFixed(0)} |`,
    );
  }
} finally {
  await server.stop();
  await stopAll();
}
