// Benchmark: dlock's etcd mutex vs etcd3's client.lock() on the same etcd, in the same run.
//   pnpm --filter @dlock/etcd bench
// Bounded: fixed iteration counts, each scenario also capped in time. Needs dist/ (the bench script builds it).
import { cpus } from 'node:os';
import { startEtcd } from '@dlock/testkit';
import { Etcd3 } from 'etcd3';
import { build } from 'hdr-histogram-js';
import { createEtcdProvider } from '../dist/index.js';

const ROUNDS = 4; // alternate the two clients in blocks, so drift in machine load hits both alike
const PER_ROUND = 75;
const HANDOFFS = 150;
const WARMUP = 20;
const SCENARIO_LIMIT_MS = 30_000;
const SESSION_TTL_SEC = 10;

const histogram = () =>
  build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
const micros = (ms) => Math.max(1, Math.round(ms * 1000));
const ms = (us) => (us / 1000).toFixed(2);

async function timeEach(count, deadline, histogramOut, operation) {
  for (let i = 0; i < count && performance.now() < deadline; i++) {
    const started = performance.now();
    await operation(i);
    histogramOut?.recordValue(micros(performance.now() - started));
  }
}

const server = await startEtcd();
const dlock = createEtcdProvider({
  hosts: server.endpoint,
  namespace: 'bench/',
  sessionTtlSec: SESSION_TTL_SEC,
});
const etcd3 = new Etcd3({ hosts: server.endpoint });
try {
  const dlockCycle = async () => (await dlock.acquire('cycle')).release();
  const etcd3Cycle = async () => {
    const lock = etcd3.lock('bench-etcd3/cycle').ttl(SESSION_TTL_SEC);
    await lock.acquire();
    await lock.release();
  };

  const deadline = performance.now() + SCENARIO_LIMIT_MS;
  await timeEach(WARMUP, deadline, undefined, dlockCycle);
  await timeEach(WARMUP, deadline, undefined, etcd3Cycle);
  const dlockCycles = histogram();
  const etcd3Cycles = histogram();
  for (let round = 0; round < ROUNDS; round++) {
    await timeEach(PER_ROUND, deadline, dlockCycles, dlockCycle);
    await timeEach(PER_ROUND, deadline, etcd3Cycles, etcd3Cycle);
  }

  // Hand-off: B waits in the queue; time from A starting its release to B holding the lock.
  const other = createEtcdProvider({
    hosts: server.endpoint,
    namespace: 'bench/',
    sessionTtlSec: SESSION_TTL_SEC,
  });
  const handoffs = histogram();
  const handoffDeadline = performance.now() + SCENARIO_LIMIT_MS;
  let holder = await dlock.acquire('handoff');
  for (let i = 0; i < HANDOFFS && performance.now() < handoffDeadline; i++) {
    const next = (i % 2 === 0 ? other : dlock).acquire('handoff', { waitMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 25)); // let the waiter enqueue and watch
    const started = performance.now();
    await holder.release();
    holder = await next;
    handoffs.recordValue(micros(performance.now() - started));
  }
  await holder.release();
  await other.close();

  const ratio = dlockCycles.mean / etcd3Cycles.mean;
  const row = (label, h) =>
    `| ${label} | ${h.totalCount} | ${ms(h.mean)} | ${ms(h.getValueAtPercentile(50))} | ${ms(h.getValueAtPercentile(99))} |`;
  console.log(
    `etcd 3.4 single member on loopback (testkit), Node ${process.version}, ${cpus().length} cores`,
  );
  console.log('');
  console.log('| operation | n | mean ms | p50 ms | p99 ms |');
  console.log('|---|---|---|---|---|');
  console.log(row('dlock acquire+release (session lease, one Txn + one delete Txn)', dlockCycles));
  console.log(row('etcd3 client.lock() acquire+release (lease grant + Txn + revoke)', etcd3Cycles));
  console.log(row('dlock hand-off: release → next waiter holds', handoffs));
  console.log('');
  const medianRatio = dlockCycles.getValueAtPercentile(50) / etcd3Cycles.getValueAtPercentile(50);
  console.log(
    `dlock / etcd3 acquire+release: mean ${ratio.toFixed(2)}×, p50 ${medianRatio.toFixed(2)}× (goal ≤ 0.5×; ` +
      'floor about 0.67×: two raft writes per cycle instead of three)',
  );
} finally {
  await dlock.close();
  etcd3.close();
  await server.stop();
}
