// Benchmarks @dlock/zookeeper's semaphore and read-write lock against a real standalone ZooKeeper
// (tickTime 200 ms) on loopback. Run with `pnpm --filter @dlock/zookeeper bench:primitives` (builds
// dist first). Bounded: BENCH_ROUNDS rounds (default 400) per measurement, about 20-40 s.
//
// 1. Floors: the same ZooKeeper requests dlock sends, in the same pipelined round trips, from a bare
//    node-zookeeper-client (4 round trips for a permit, 3 for a read or write lease), and the bare
//    minimum of create + delete (2 round trips).
// 2. Uncontended acquire + release: a lock, a permit (limit 4), a read lease, a write lease, each
//    with the requests the server received per acquire + release (load-independent).
// 3. Hand-off: release of a permit (limit 1) → the waiter's acquire resolves.
// 4. Notifications per release with 1, 8 and 32 waiters on a semaphore of limit 1.
import { randomUUID } from 'node:crypto';
import { startZooKeeper, stopAll } from '@dlock/testkit';
import zookeeper from 'node-zookeeper-client';
import { createZooKeeperProvider } from '../dist/index.js';
import { handoffs, histogram, ms, packetsReceived, since, sleep } from './support.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 400);
const HANDOFFS = Number(process.env.BENCH_HANDOFFS ?? 150);
const WARMUP = 50;
const ROOT = '/dlock-bench-primitives';
const { CreateMode } = zookeeper;
const EMPTY = Buffer.alloc(0);

const max = (h) => (h.maxValue / 1000).toFixed(2);

/**
 * Runs `once` WARMUP + `rounds` times: the latency histogram of the last `rounds`, with the number of
 * requests the server received per run (`h.requests`; the sessions' pings add a few hundredths).
 */
async function measure(rounds, once) {
  const h = histogram();
  let before = 0;
  for (let i = 0; i < rounds + WARMUP; i++) {
    if (i === WARMUP) before = await packetsReceived(server);
    const start = performance.now();
    await once(i);
    if (i >= WARMUP) h.recordValue(since(start));
  }
  h.requests = (await packetsReceived(server)) - before;
  h.requests /= rounds;
  return h;
}

/** A bare client and a promise per call; failures resolve to the error (the floor ignores expected ones). */
async function bareClient(connectString) {
  const client = zookeeper.createClient(connectString, { retries: 0 });
  await new Promise((resolve) => {
    client.once('connected', resolve);
    client.connect();
  });
  const call = (start) => new Promise((resolve) => start((error, value) => resolve(error ?? value)));
  return {
    client,
    create: (path, data, mode) => call((done) => client.create(path, data, mode, done)),
    remove: (path) => call((done) => client.remove(path, -1, done)),
    getData: (path) => call((done) => client.getData(path, done)),
    getChildren: (path) => call((done) => client.getChildren(path, done)),
    mkdirp: (path) => call((done) => client.mkdirp(path, done)),
  };
}

/** What dlock's semaphore sends for an uncontended permit, batch by batch, without dlock. */
async function semaphoreFloor(zk) {
  const base = `${ROOT}/floor-semaphore`;
  const [locks, leases] = [`${base}/locks`, `${base}/leases`];
  await zk.mkdirp(ROOT);
  return measure(ROUNDS, async () => {
    const id = randomUUID();
    // 1: the semaphore's node (with the limit), `locks`, our mutex node; the limit, the leases, the queue.
    const [, , mutex] = await Promise.all([
      zk.create(base, Buffer.from('4'), CreateMode.PERSISTENT),
      zk.create(locks, EMPTY, CreateMode.PERSISTENT),
      zk.create(`${locks}/_c_${id}-lock-`, Buffer.from('bench'), CreateMode.EPHEMERAL_SEQUENTIAL),
      zk.getData(base),
      zk.getChildren(leases),
      zk.getChildren(locks),
    ]);
    // 2: holding the mutex: the limit and the leases before, `leases`, our lease node, the leases after.
    const [, , , lease] = await Promise.all([
      zk.getData(base),
      zk.getChildren(leases),
      zk.create(leases, EMPTY, CreateMode.PERSISTENT),
      zk.create(`${leases}/_c_${id}-lease-`, Buffer.from('bench'), CreateMode.EPHEMERAL_SEQUENTIAL),
      zk.getChildren(leases),
    ]);
    // 3: our lease node (czxid), the mutex given back.
    await Promise.all([zk.getData(lease), zk.remove(mutex), zk.remove(locks)]);
    // 4: release: the lease, then whatever it leaves empty.
    await Promise.all([zk.remove(lease), zk.remove(leases), zk.remove(locks), zk.remove(base)]);
  });
}

/** What dlock's read-write lock sends for an uncontended lease, without dlock. */
async function readWriteFloor(zk) {
  const parent = `${ROOT}/floor-rw`;
  return measure(ROUNDS, async () => {
    // As dlock sends them on a free key: the node read, under the name it gets as the new parent's
    // first child, and the queue go out with the creates (issue 13).
    const name = `${parent}/_c_${randomUUID()}-__WRIT__`;
    const [, node] = await Promise.all([
      zk.create(parent, EMPTY, CreateMode.PERSISTENT),
      zk.create(name, Buffer.from('bench'), CreateMode.EPHEMERAL_SEQUENTIAL),
      zk.getData(`${name}0000000000`),
      zk.getChildren(parent),
    ]);
    await Promise.all([zk.remove(node), zk.remove(parent)]);
  });
}

/** The least any recipe needs: create an ephemeral sequential node, delete it. */
async function createDeleteFloor(zk) {
  const parent = `${ROOT}/floor-node`;
  await zk.mkdirp(parent);
  return measure(ROUNDS, async () => {
    const node = await zk.create(`${parent}/node-`, Buffer.from('x'), CreateMode.EPHEMERAL_SEQUENTIAL);
    await zk.remove(node);
  });
}

async function uncontended(connectString, take) {
  const provider = createZooKeeperProvider({ connectString, root: ROOT });
  const h = await measure(ROUNDS, async () => {
    const lease = await take(provider);
    await lease.release();
  });
  await provider.close();
  return h;
}

async function handoff(connectString) {
  const [a, b] = [0, 1].map(() => createZooKeeperProvider({ connectString, root: ROOT }));
  // Limit 1: the waiter holds the internal mutex and watches the leases when the release comes.
  const take = (provider, options) => provider.semaphore('handoff', { limit: 1 }).acquire(options);
  const h = await handoffs(a, b, take, HANDOFFS);
  await Promise.all([a.close(), b.close()]);
  return h;
}

async function notifications(connectString, waiters) {
  const name = `herd-${waiters}`;
  const holder = createZooKeeperProvider({ connectString, root: ROOT });
  const counts = { leases: 0, predecessor: 0 };
  const onWatchEvent = (event) => {
    if (event.purpose in counts) counts[event.purpose]++;
  };
  const contenders = Array.from({ length: waiters }, () =>
    createZooKeeperProvider({ connectString, root: ROOT, onWatchEvent }),
  );
  const first = await holder.semaphore(name, { limit: 1 }).acquire();
  const done = [];
  for (const contender of contenders) {
    done.push(
      contender
        .semaphore(name, { limit: 1 })
        .acquire({ waitMs: 60_000 })
        .then((lease) => lease.release()),
    );
    await sleep(10);
  }
  await sleep(300);
  const start = performance.now();
  await first.release();
  await Promise.all(done);
  const drainMs = performance.now() - start;
  await Promise.all([holder, ...contenders].map((provider) => provider.close()));
  return { waiters, ...counts, drainMs };
}

const server = await startZooKeeper();
try {
  const zk = await bareClient(server.connectString);
  const floors = {
    node: await createDeleteFloor(zk),
    semaphore: await semaphoreFloor(zk),
    readWrite: await readWriteFloor(zk),
  };
  zk.client.close();
  const lock = await uncontended(server.connectString, (provider) => provider.acquire('uncontended'));
  const permit = await uncontended(server.connectString, (provider) =>
    provider.semaphore('uncontended', { limit: 4 }).acquire(),
  );
  const read = await uncontended(server.connectString, (provider) =>
    provider.readWriteLock('uncontended').read.acquire(),
  );
  const write = await uncontended(server.connectString, (provider) =>
    provider.readWriteLock('uncontended').write.acquire(),
  );
  const handoffs = await handoff(server.connectString);
  const herd = [];
  for (const waiters of [1, 8, 32]) herd.push(await notifications(server.connectString, waiters));

  const row = (label, h) =>
    `| ${label} | ${ms(h, 50)} | ${ms(h, 99)} | ${max(h)} | ${h.requests === undefined ? '' : h.requests.toFixed(2)} |`;
  console.log(`ZooKeeper standalone on loopback, tickTime 200 ms; ${ROUNDS} rounds, ${HANDOFFS} hand-offs`);
  console.log('| measurement | p50 ms | p99 ms | max ms | requests per run |');
  console.log('|---|---|---|---|---|');
  console.log(row('floor: bare create + delete (2 round trips)', floors.node));
  console.log(row("floor: a permit's requests from a bare client (4 round trips)", floors.semaphore));
  console.log(
    row("floor: a read-write lease's requests from a bare client (2 round trips)", floors.readWrite),
  );
  console.log(row('lock: uncontended acquire + release (for comparison)', lock));
  console.log(row('semaphore: uncontended acquire + release (limit 4)', permit));
  console.log(row('read-write: uncontended read acquire + release', read));
  console.log(row('read-write: uncontended write acquire + release', write));
  console.log(row('semaphore hand-off (release → next acquire resolves, limit 1)', handoffs));
  const ratio = (h, floor) => (h.getValueAtPercentile(50) / floor.getValueAtPercentile(50)).toFixed(2);
  console.log(
    `\nat p50: permit ${ratio(permit, floors.semaphore)}x its bare requests, ${ratio(permit, floors.node)}x create + delete;` +
      ` write ${ratio(write, floors.readWrite)}x its bare requests, ${ratio(write, floors.node)}x create + delete`,
  );
  console.log(
    '\n| waiters | releases | `leases` notifications | mutex predecessor notifications | per release | every waiter watching `leases` would send | drain ms |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const { waiters, leases, predecessor, drainMs } of herd) {
    // W releases have someone behind them; a recipe where every waiter watches the leases hears each.
    const herdTotal = (waiters * (waiters + 1)) / 2;
    console.log(
      `| ${waiters} | ${waiters} | ${leases} | ${predecessor} | ${((leases + predecessor) / waiters).toFixed(2)} | ${herdTotal} (${(herdTotal / waiters).toFixed(1)} per release) | ${drainMs.toFixed(0)} |`,
    );
  }
} finally {
  await server.stop();
  await stopAll();
}
