// Benchmarks @dlock/zookeeper against a real standalone ZooKeeper (tickTime 200 ms) on loopback.
// Run with `pnpm --filter @dlock/zookeeper bench` (builds dist first). Bounded: about 20-40 s.
//
// 1. Uncontended acquire + release on one key against the floor, measured in the same process and
//    run: BENCH_BLOCKS blocks of BENCH_ROUNDS operations per row, the rows interleaved block by block
//    (the order rotating), the ratio taken per block at p50 and reported as the median (and range)
//    over the blocks. The floor is the Curator-style lock recipe from a bare node-zookeeper-client:
//    create an EPHEMERAL_SEQUENTIAL node under the lock's path, getChildren of the path (it is the
//    lowest, so it holds), delete it, each awaited in turn (3 round trips) — what the lab's
//    `dlock compare` measures as its ZooKeeper floor too.
// 2. Attribution: two more rows in the same blocks (dlock's requests from a bare client; dlock's driver
//    without core), and the requests per acquire + release by type, counted on the client's request path
//    (node-zookeeper-client's ConnectionManager.queue) and at the server (`mntr` zk_packets_received),
//    and the sequential waits (a request sent while none of ours is in flight starts one).
// 3. Hand-off: time from release() by the holder to acquire() resolving for the one waiter.
// 4. Watch notifications per release with 1, 8 and 32 queued waiters.
// BENCH_ONLY=floor|bare|driver|dlock runs one row alone instead, with its CPU per operation (see only()).
import { createRequire } from 'node:module';
import { startZooKeeper, stopAll } from '@dlock/testkit';
import zookeeper from 'node-zookeeper-client';
import { createZooKeeperProvider } from '../dist/index.js';
import { openZooKeeperProvider } from '../dist/provider.js';
import { handoffs, histogram, ms, packetsReceived, since, sleep } from './support.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 200);
const BLOCKS = Number(process.env.BENCH_BLOCKS ?? 10);
const WARMUP = 100;
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 200);
const ROOT = '/dlock-bench';
const KEY = 'uncontended';

/** Counts the requests node-zookeeper-client queues, by type, and the sequential waits among them. */
function requestCounter() {
  const require = createRequire(import.meta.resolve('node-zookeeper-client'));
  const ConnectionManager = require('./lib/ConnectionManager.js');
  const { OP_CODES } = require('./lib/jute/index.js');
  const names = Object.fromEntries(Object.entries(OP_CODES).map(([name, code]) => [code, name]));
  const counts = { waits: 0, byType: new Map() };
  let inFlight = 0;
  const queue = ConnectionManager.prototype.queue;
  ConnectionManager.prototype.queue = function (request, callback) {
    const type = names[request.header?.type];
    if (!counts.enabled || type === 'PING' || type === 'AUTH' || type === undefined) {
      return queue.call(this, request, callback);
    }
    if (inFlight === 0) counts.waits++;
    inFlight++;
    counts.byType.set(type, (counts.byType.get(type) ?? 0) + 1);
    return queue.call(this, request, (...args) => {
      inFlight--;
      callback?.(...args);
    });
  };
  return counts;
}

async function bareClient(connectString) {
  const client = zookeeper.createClient(connectString, { retries: 0 });
  await new Promise((resolve) => {
    client.once('connected', resolve);
    client.connect();
  });
  const call = (start) =>
    new Promise((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value))));
  await call((done) => client.mkdirp(`${ROOT}/floor`, done));
  return { client, call };
}

/** The Curator-style recipe from a bare client, each request awaited in turn (3 round trips). */
async function floorRow(connectString) {
  const { client, call } = await bareClient(connectString);
  const parent = `${ROOT}/floor`;
  return {
    name: 'floor: bare create + getChildren + delete (Curator recipe, 3 round trips)',
    async once() {
      const path = await call((done) =>
        client.create(`${parent}/lock-`, Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done),
      );
      const children = await call((done) => client.getChildren(parent, done));
      if (children.length !== 1) throw new Error(`floor: unexpected children ${children}`);
      await call((done) => client.remove(path, -1, done));
    },
    close: async () => client.close(),
  };
}

/**
 * dlock's requests in dlock's batches from a bare client, without dlock's layers: what the request
 * pattern itself costs at the server and in node-zookeeper-client (the attribution's middle row). One
 * batch: the parent's create, the protected node's create, a getData with a watch of the name it gets
 * as the parent's first child, getChildren; then the node's and the parent's deletes.
 */
async function bareDlockRequestsRow(connectString) {
  const { client, call } = await bareClient(connectString);
  const parent = `${ROOT}/bare-requests`;
  const settled = (start) => call(start).catch(() => undefined);
  const name = `${parent}/_c_00000000-0000-0000-0000-000000000000-lock-`;
  return {
    name: "bare: dlock's requests in dlock's batches, no dlock",
    async once() {
      const [, path] = await Promise.all([
        settled((done) => client.create(parent, zookeeper.CreateMode.PERSISTENT, done)),
        call((done) =>
          client.create(name, Buffer.from('x'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, done),
        ),
        call((done) => client.getData(`${name}0000000000`, () => {}, done)),
        call((done) => client.getChildren(parent, done)),
      ]);
      await Promise.all([
        call((done) => client.remove(path, -1, done)),
        settled((done) => client.remove(parent, -1, done)),
      ]);
    },
    close: async () => client.close(),
  };
}

/**
 * dlock's driver alone (packages/zookeeper: the recipe and its promise layer over the library), called
 * as core calls it for an uncontended acquire + release, without core's lifecycle: the attribution's
 * split between the driver and core.
 */
async function driverRow(connectString) {
  const { provider, driver } = openZooKeeperProvider({ connectString, root: ROOT });
  const signal = new AbortController().signal;
  const request = { key: `${KEY}-driver`, identity: 'bench', ttlMs: 30_000, signal, willWait: true };
  return {
    name: 'dlock driver alone: attempt + release, no core',
    async once() {
      const attempt = await driver.attempt(request, undefined);
      if (attempt.outcome !== 'granted') throw new Error(`driver attempt: ${attempt.outcome}`);
      await driver.release(request.key, attempt.grant);
    },
    close: () => provider.close(),
  };
}

async function dlockRow(connectString) {
  const provider = createZooKeeperProvider({ connectString, root: ROOT });
  return {
    name: 'dlock: uncontended acquire + release',
    async once() {
      const lease = await provider.acquire(KEY);
      await lease.release();
    },
    close: () => provider.close(),
  };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/**
 * Rows run block by block, interleaved (the order rotates each block) after WARMUP operations each.
 * Returns each row's histogram over all blocks and its per-block p50s.
 */
async function interleaved(rows) {
  for (const row of rows) for (let i = 0; i < WARMUP; i++) await row.once();
  const results = rows.map(() => ({ all: histogram(), blockP50s: [] }));
  for (let block = 0; block < BLOCKS; block++) {
    for (let offset = 0; offset < rows.length; offset++) {
      const index = (block + offset) % rows.length;
      const h = histogram();
      for (let i = 0; i < ROUNDS; i++) {
        const start = performance.now();
        await rows[index].once();
        h.recordValue(since(start));
      }
      results[index].all.add(h);
      results[index].blockP50s.push(h.getValueAtPercentile(50));
    }
  }
  return results;
}

/** Requests per operation, counted on the client's request path and at the server. */
async function attribution(server, counter, row, rounds = 100) {
  counter.byType.clear();
  counter.waits = 0;
  const before = await packetsReceived(server);
  counter.enabled = true;
  for (let i = 0; i < rounds; i++) await row.once();
  counter.enabled = false;
  const atServer = ((await packetsReceived(server)) - before) / rounds;
  const byType = [...counter.byType]
    .map(([type, count]) => `${type} ${(count / rounds).toFixed(2)}`)
    .join(', ');
  const total = [...counter.byType.values()].reduce((sum, count) => sum + count, 0) / rounds;
  return { atServer, byType, total, waits: counter.waits / rounds };
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

/**
 * BENCH_ONLY=floor|bare|driver|dlock: that row alone, BENCH_ROUNDS × BENCH_BLOCKS operations after the
 * warm-up, with the process's CPU per operation (all threads), for a profile of one layer:
 * `BENCH_ONLY=driver node --cpu-prof --cpu-prof-interval 50 bench/zookeeper.bench.mjs`.
 */
async function only(rowName, connectString) {
  const open = { floor: floorRow, bare: bareDlockRequestsRow, driver: driverRow, dlock: dlockRow }[rowName];
  if (!open) throw new Error(`BENCH_ONLY must be floor, bare, driver or dlock, not ${rowName}`);
  const row = await open(connectString);
  for (let i = 0; i < WARMUP; i++) await row.once();
  const operations = ROUNDS * BLOCKS;
  const h = histogram();
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < operations; i++) {
    const start = performance.now();
    await row.once();
    h.recordValue(since(start));
  }
  const cpu = process.cpuUsage(cpuBefore);
  await row.close();
  const perOperation = (micros) => (micros / operations / 1000).toFixed(3);
  console.log(
    `${row.name}: ${operations} operations, p50 ${ms(h, 50)} ms, p99 ${ms(h, 99)} ms, ` +
      `CPU ${perOperation(cpu.user + cpu.system)} ms per operation (user ${perOperation(cpu.user)})`,
  );
}

/** The interleaved rows, the request counts, the hand-off and the notifications, printed as tables. */
async function full(counter, server) {
  const rows = [
    await floorRow(server.connectString),
    await bareDlockRequestsRow(server.connectString),
    await driverRow(server.connectString),
    await dlockRow(server.connectString),
  ];
  const results = await interleaved(rows);
  const attributions = [];
  for (const row of rows) attributions.push(await attribution(server, counter, row));
  for (const row of rows) await row.close();
  const handoffs = await handoff(server.connectString);
  const herd = [];
  for (const waiters of [1, 8, 32]) herd.push(await notifications(server.connectString, waiters));

  const max = (h) => (h.maxValue / 1000).toFixed(2);
  console.log(
    `ZooKeeper standalone on loopback, tickTime 200 ms; ${BLOCKS} interleaved blocks of ${ROUNDS} per row, ${HANDOFFS} hand-offs`,
  );
  console.log('| measurement | p50 ms | p99 ms | max ms | p50 ÷ floor p50, median of blocks (range) |');
  console.log('|---|---|---|---|---|');
  const floorP50s = results[0].blockP50s;
  rows.forEach((row, index) => {
    const { all, blockP50s } = results[index];
    const ratios = blockP50s.map((p50, block) => p50 / floorP50s[block]);
    const range = `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
    console.log(
      `| ${row.name} | ${ms(all, 50)} | ${ms(all, 99)} | ${max(all)} | ${median(ratios).toFixed(2)}× (${range}) |`,
    );
  });
  console.log(
    `| hand-off (release → next acquire resolves) | ${ms(handoffs, 50)} | ${ms(handoffs, 99)} | ${max(handoffs)} | |`,
  );
  const p99Ratio = results.at(-1).all.getValueAtPercentile(99) / results[0].all.getValueAtPercentile(99);
  console.log(`\ndlock p99 ÷ floor p99 (all blocks): ${p99Ratio.toFixed(2)}×`);
  console.log(
    '\n| per acquire + release | requests sent (client) | by type | packets received (server mntr) | sequential waits |',
  );
  console.log('|---|---|---|---|---|');
  rows.forEach((row, index) => {
    const { total, byType, atServer, waits } = attributions[index];
    console.log(
      `| ${row.name} | ${total.toFixed(2)} | ${byType} | ${atServer.toFixed(2)} | ${waits.toFixed(2)} |`,
    );
  });
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
}

const counter = requestCounter();
const server = await startZooKeeper();
try {
  if (process.env.BENCH_ONLY) await only(process.env.BENCH_ONLY, server.connectString);
  else await full(counter, server);
} finally {
  await server.stop();
  await stopAll();
}
