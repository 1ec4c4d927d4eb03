// Benchmark: uncontended acquire+release of a dlock permit, read lease and write lease on etcd, against
// the etcd floor for the same round trips: one Txn put-if-absent on a session lease, then one delete.
//   pnpm --filter @dlock/etcd bench:primitives
// Bounded: fixed iteration counts, each scenario also capped in time. Needs dist/ (the script builds it).
import { cpus } from 'node:os';
import { startEtcd } from '@dlock/testkit';
import { Etcd3 } from 'etcd3';
import { build } from 'hdr-histogram-js';
import { createEtcdProvider } from '../dist/index.js';

const ROUNDS = 4; // alternate the scenarios in blocks, so drift in machine load hits all alike
const PER_ROUND = 100;
const HANDOFFS = 100;
const WARMUP = 30;
const LIMIT_MS = 60_000;
const SESSION_TTL_SEC = 10;

const histogram = () =>
  build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
const micros = (ms) => Math.max(1, Math.round(ms * 1000));
const ms = (us) => (us / 1000).toFixed(2);

const server = await startEtcd();
const dlock = createEtcdProvider({ hosts: server.endpoint, sessionTtlSec: SESSION_TTL_SEC });
const etcd3 = new Etcd3({ hosts: server.endpoint });
try {
  const { ID: lease } = await etcd3.leaseClient.leaseGrant({ TTL: SESSION_TTL_SEC });
  const floorKey = Buffer.from('bench-floor/key');
  const semaphore = dlock.semaphore('bench-permit', { limit: 4 });
  const readWrite = dlock.readWriteLock('bench-rw');
  const scenarios = [
    {
      label: 'etcd floor: Txn put-if-absent on a session lease + delete',
      run: async () => {
        await etcd3.kv.txn({
          compare: [{ key: floorKey, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key: floorKey, value: Buffer.from('bench'), lease } }],
          failure: [{ request_range: { key: floorKey } }],
        });
        await etcd3.kv.deleteRange({ key: floorKey });
      },
    },
    {
      label: 'dlock permit (limit 4) acquire+release',
      run: async () => (await semaphore.acquire()).release(),
    },
    {
      label: 'dlock read lease acquire+release',
      run: async () => (await readWrite.read.acquire()).release(),
    },
    {
      label: 'dlock write lease acquire+release',
      run: async () => (await readWrite.write.acquire()).release(),
    },
  ].map((scenario) => ({ ...scenario, histogram: histogram() }));

  const deadline = performance.now() + LIMIT_MS;
  for (const { run } of scenarios) for (let i = 0; i < WARMUP; i++) await run();
  for (let round = 0; round < ROUNDS; round++) {
    for (const scenario of scenarios) {
      for (let i = 0; i < PER_ROUND && performance.now() < deadline; i++) {
        const started = performance.now();
        await scenario.run();
        scenario.histogram.recordValue(micros(performance.now() - started));
      }
    }
  }

  // Hand-offs: A holds, B waits; time from A starting its release to B holding. A permit of a full
  // semaphore (limit 1), and a writer waiting for the last reader.
  const other = createEtcdProvider({ hosts: server.endpoint, sessionTtlSec: SESSION_TTL_SEC });
  const handoff = async (label, take, wait) => {
    const h = histogram();
    const until = performance.now() + LIMIT_MS / 2;
    for (let i = 0; i < HANDOFFS && performance.now() < until; i++) {
      const holder = await take(dlock);
      const next = wait(other);
      await new Promise((resolve) => setTimeout(resolve, 25)); // let the waiter enqueue and watch
      const started = performance.now();
      await holder.release();
      const lease = await next;
      h.recordValue(micros(performance.now() - started));
      await lease.release();
    }
    return { label, histogram: h };
  };
  const handoffs = [
    await handoff(
      'dlock permit hand-off (limit 1): release → next waiter holds',
      (p) => p.semaphore('bench-handoff', { limit: 1 }).acquire(),
      (p) => p.semaphore('bench-handoff', { limit: 1 }).acquire({ waitMs: 10_000 }),
    ),
    await handoff(
      'dlock hand-off: last reader releases → waiting writer holds',
      (p) => p.readWriteLock('bench-rw-handoff').read.acquire(),
      (p) => p.readWriteLock('bench-rw-handoff').write.acquire({ waitMs: 10_000 }),
    ),
  ];
  await other.close();

  console.log(
    `etcd 3.4 single member on loopback (testkit), Node ${process.version}, ${cpus().length} cores`,
  );
  console.log('');
  console.log('| operation | n | mean ms | p50 ms | p99 ms | max ms | p50 / floor |');
  console.log('|---|---|---|---|---|---|---|');
  const floor = scenarios[0].histogram.getValueAtPercentile(50);
  for (const { label, histogram: h } of scenarios) {
    const p50 = h.getValueAtPercentile(50);
    console.log(
      `| ${label} | ${h.totalCount} | ${ms(h.mean)} | ${ms(p50)} | ${ms(h.getValueAtPercentile(99))} | ${ms(h.maxValue)} | ${(p50 / floor).toFixed(2)}× |`,
    );
  }
  for (const { label, histogram: h } of handoffs) {
    const row = [h.totalCount, ms(h.mean), ms(h.getValueAtPercentile(50)), ms(h.getValueAtPercentile(99))];
    console.log(`| ${label} | ${row.join(' | ')} | ${ms(h.maxValue)} | — |`);
  }
} finally {
  await dlock.close();
  etcd3.close();
  await server.stop();
}
