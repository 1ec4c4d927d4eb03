// Benchmark: dlock's etcd mutex against its protocol floor and against etcd3's client.lock(), on the same
// etcd, in the same process and run (issue 13).
//   pnpm --filter @dlock/etcd bench
//
// - floor: what dlock's uncontended acquire+release needs at the least, sent with a bare etcd3 client:
//   one Txn put-if-absent (create_revision == 0) on a lease granted once up front, carrying the same
//   range read of the oldest key under the prefix that dlock's enqueue Txn carries, then a delete of
//   that key. Two raft writes, like dlock's cycle; etcd3's lock() makes three (grant, put, revoke).
// - Rows run in interleaved blocks (the order rotates every round), so drift in machine load hits all
//   alike; a ratio is the median over rounds of the per-block p50 ratios.
// - Attribution rows peel dlock's cycle one layer at a time: the release as a compare-revision delete
//   Txn (dlock's owner check) instead of a bare delete; the same two Txns on dlock's connection (call
//   deadline, its fault policies, the local timer); the driver alone (no core); the full provider.
// - Then, untimed: gRPC calls per cycle counted by etcd itself (grpc_server_handled_total from
//   /metrics on the client URL), and where the client's own time goes (timestamps around every KV call).
// Bounded: fixed iteration counts, each phase also capped in time. Needs dist/ (the bench script builds it).
import { cpus, loadavg } from 'node:os';
import { startEtcd } from '@dlock/testkit';
import { Etcd3, KVClient, Range } from 'etcd3';
import { build } from 'hdr-histogram-js';
import { EtcdConnection } from '../dist/connection.js';
import { createEtcdProvider } from '../dist/index.js';
import { RevisionQueueDriver } from '../dist/queue.js';
import { SessionKeeper } from '../dist/session.js';
import { WatchHub } from '../dist/watch.js';

const ROUNDS = 8;
const PER_BLOCK = 60;
const WARMUP = 40;
const COUNTED = 200;
const HANDOFFS = 100;
const PHASE_LIMIT_MS = 25_000;
const SESSION_TTL_SEC = 10;
const CALL_TIMEOUT_MS = 5_000;

const histogram = () =>
  build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
const micros = (ms) => Math.max(1, Math.round(ms * 1000));
const ms = (us) => (us / 1000).toFixed(2);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/** The floor's two requests on `client` (a bare etcd3 client, or dlock's connection's). */
function floorCycle(client, prefix, leaseId, { compareDelete, callOptions }) {
  const queue = Range.prefix(prefix);
  const key = Buffer.from(`${prefix}${BigInt(leaseId).toString(16)}`);
  const oldest = {
    request_range: {
      key: queue.start,
      range_end: queue.end,
      sort_target: 'Create',
      sort_order: 'Ascend',
      limit: 1,
      keys_only: true,
    },
  };
  return async () => {
    const enqueued = await client.kv.txn(
      {
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: Buffer.from('bench'), lease: leaseId } }, oldest],
        failure: [{ request_range: { key, keys_only: true } }, oldest],
      },
      callOptions?.(),
    );
    if (!enqueued.succeeded) throw new Error(`floor key ${key} already existed`);
    if (compareDelete) {
      const created = enqueued.header.revision;
      await client.kv.txn(
        {
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: created }],
          success: [{ request_delete_range: { key } }],
        },
        callOptions?.(),
      );
    } else {
      await client.kv.deleteRange({ key }, callOptions?.());
    }
  };
}

/** etcd's own count of the gRPC calls it has handled, by method. */
async function handledCalls(endpoint) {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const calls = new Map();
  for (const match of text.matchAll(/^grpc_server_handled_total\{([^}]*)\} (\S+)$/gm)) {
    const method = /grpc_method="([^"]+)"/.exec(match[1])?.[1];
    if (method) calls.set(method, (calls.get(method) ?? 0) + Number(match[2]));
  }
  return calls;
}

/**
 * Timestamps around every KV call (the etcd3 client's call path, shared by every client in this
 * process): time before the first request, between a reply and the next request, after the last
 * reply, and inside the calls, per cycle.
 */
function spyOnKvCalls() {
  let marks;
  for (const method of ['txn', 'range', 'put', 'deleteRange']) {
    const original = KVClient.prototype[method];
    KVClient.prototype[method] = function (...args) {
      const sent = performance.now();
      return original.apply(this, args).then((value) => {
        marks?.push([sent, performance.now()]);
        return value;
      });
    };
  }
  return async (cycle) => {
    marks = [];
    const started = performance.now();
    await cycle();
    const ended = performance.now();
    const replies = marks;
    marks = undefined;
    // Client time before the first request, between each reply and the next request, after the last.
    const gaps = [];
    let last = started;
    for (const [sent, replied] of replies) {
      gaps.push(Math.max(0, sent - last));
      last = replied;
    }
    gaps.push(ended - last);
    const clientMs = gaps.reduce((sum, gap) => sum + gap, 0);
    return { calls: replies.length, gaps, clientMs, totalMs: ended - started };
  };
}

const server = await startEtcd();
const options = { hosts: server.endpoint, sessionTtlSec: SESSION_TTL_SEC, callTimeoutMs: CALL_TIMEOUT_MS };
const dlock = createEtcdProvider({ ...options, namespace: 'bench/' });
const etcd3 = new Etcd3({ hosts: server.endpoint });
const bare = new Etcd3({ hosts: server.endpoint });
// dlock's layers on their own: its connection (deadline, fault policies) and the driver without core.
const connection = new EtcdConnection({
  hosts: [server.endpoint],
  callTimeoutMs: CALL_TIMEOUT_MS,
  auth: undefined,
  tls: undefined,
});
const sessions = new SessionKeeper(connection, SESSION_TTL_SEC, 5_000);
const driver = new RevisionQueueDriver({
  connection,
  sessions,
  watches: new WatchHub(connection),
  namespace: 'bench-driver/',
  ownsConnection: true,
});
try {
  const { ID: bareLease } = await bare.leaseClient.leaseGrant({ TTL: SESSION_TTL_SEC * 6 });
  const connectionSession = await sessions.obtain();
  const deadline = () => ({ deadline: Date.now() + CALL_TIMEOUT_MS });
  const request = {
    key: 'cycle',
    identity: 'bench',
    ttlMs: 30_000,
    signal: new AbortController().signal,
    willWait: true,
  };
  const rows = [
    {
      id: 'dlock',
      label: 'dlock acquire+release (provider: core + driver)',
      run: async () => (await dlock.acquire('cycle')).release(),
    },
    {
      id: 'floor',
      label: 'floor: bare etcd3, Txn put-if-absent + oldest-key range, then delete',
      run: floorCycle(bare, 'bench-floor/', bareLease, { compareDelete: false }),
    },
    {
      id: 'etcd3',
      label: 'etcd3 client.lock() acquire+release (lease grant + Txn + revoke)',
      run: async () => {
        const lock = etcd3.lock('bench-etcd3/cycle').ttl(SESSION_TTL_SEC);
        await lock.acquire();
        await lock.release();
      },
    },
    {
      id: 'floor-cas',
      label: '  floor, release as compare-revision delete Txn',
      run: floorCycle(bare, 'bench-floor-cas/', bareLease, { compareDelete: true }),
    },
    {
      id: 'connection',
      label: "  the same two Txns on dlock's connection (call deadline, fault policies)",
      run: floorCycle(connection.client, 'bench-connection/', connectionSession.id, {
        compareDelete: true,
        callOptions: deadline,
      }),
    },
    {
      id: 'connection-call',
      label: '  the same through EtcdConnection.call (+ local timer)',
      run: (() => {
        const viaCall = {
          kv: {
            txn: (txn) =>
              connection.call('bench', (callOptions) => connection.client.kv.txn(txn, callOptions)),
          },
        };
        return floorCycle(viaCall, 'bench-call/', connectionSession.id, { compareDelete: true });
      })(),
    },
    {
      id: 'driver',
      label: '  driver alone (RevisionQueueDriver attempt + release, no core)',
      run: async () => {
        const attempt = await driver.attempt(request, undefined);
        if (attempt.outcome !== 'granted') throw new Error(`driver attempt: ${attempt.outcome}`);
        await driver.release(request.key, attempt.grant);
      },
    },
  ];
  for (const row of rows) {
    row.histogram = histogram();
    row.blocks = [];
  }
  const timedUntil = performance.now() + PHASE_LIMIT_MS;
  for (const row of rows) for (let i = 0; i < WARMUP; i++) await row.run();
  for (let round = 0; round < ROUNDS && performance.now() < timedUntil; round++) {
    for (let r = 0; r < rows.length; r++) {
      const row = rows[(r + round) % rows.length];
      const block = histogram();
      for (let i = 0; i < PER_BLOCK; i++) {
        const started = performance.now();
        await row.run();
        const took = micros(performance.now() - started);
        block.recordValue(took);
        row.histogram.recordValue(took);
      }
      row.blocks[round] = block.getValueAtPercentile(50);
    }
  }
  const byId = Object.fromEntries(rows.map((row) => [row.id, row]));
  const rounds = Math.min(...rows.map((row) => row.blocks.length));
  const ratio = (a, b) =>
    median(Array.from({ length: rounds }, (_, i) => byId[a].blocks[i] / byId[b].blocks[i]));

  // Untimed: calls per cycle as etcd counts them, and the client's own time per cycle.
  const counts = {};
  const countedUntil = performance.now() + PHASE_LIMIT_MS;
  for (const id of ['dlock', 'floor', 'etcd3', 'driver']) {
    const before = await handledCalls(server.endpoint);
    let cycles = 0;
    for (; cycles < COUNTED && performance.now() < countedUntil; cycles++) await byId[id].run();
    const after = await handledCalls(server.endpoint);
    counts[id] = [...after]
      .map(([method, total]) => [method, (total - (before.get(method) ?? 0)) / cycles])
      .filter(([, perCycle]) => perCycle > 0.01)
      .map(([method, perCycle]) => `${method} ${perCycle.toFixed(2)}`)
      .join(', ');
  }
  const spy = spyOnKvCalls();
  const clientTime = {};
  for (const id of ['dlock', 'driver', 'connection', 'floor']) {
    const samples = [];
    for (let i = 0; i < COUNTED && performance.now() < countedUntil; i++)
      samples.push(await spy(byId[id].run));
    clientTime[id] = {
      calls: median(samples.map((s) => s.calls)),
      gaps: samples[0].gaps.map((_, g) => median(samples.map((s) => s.gaps[g] ?? 0))),
      clientMs: median(samples.map((s) => s.clientMs)),
      totalMs: median(samples.map((s) => s.totalMs)),
    };
  }

  // Hand-off: B waits in the queue; time from A starting its release to B holding the lock.
  const other = createEtcdProvider({ ...options, namespace: 'bench/' });
  const handoffs = histogram();
  const handoffUntil = performance.now() + PHASE_LIMIT_MS;
  let holder = await dlock.acquire('handoff');
  for (let i = 0; i < HANDOFFS && performance.now() < handoffUntil; i++) {
    const next = (i % 2 === 0 ? other : dlock).acquire('handoff', { waitMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 25)); // let the waiter enqueue and watch
    const started = performance.now();
    await holder.release();
    holder = await next;
    handoffs.recordValue(micros(performance.now() - started));
  }
  await holder.release();
  await other.close();

  const load = loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
  console.log(
    `etcd single member on loopback (testkit), Node ${process.version}, ${cpus().length} cores, ` +
      `load average ${load}; ${rounds} rounds of ${PER_BLOCK}-cycle blocks per row, interleaved`,
  );
  console.log('');
  console.log('| operation | n | p50 ms | p99 ms | max ms | ÷ floor | ÷ etcd3 lock |');
  console.log('|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const h = row.histogram;
    console.log(
      `| ${row.label} | ${h.totalCount} | ${ms(h.getValueAtPercentile(50))} | ` +
        `${ms(h.getValueAtPercentile(99))} | ${ms(h.maxValue)} | ${ratio(row.id, 'floor').toFixed(2)}× | ` +
        `${ratio(row.id, 'etcd3').toFixed(2)}× |`,
    );
  }
  console.log(
    `| dlock hand-off: release → next waiter holds | ${handoffs.totalCount} | ` +
      `${ms(handoffs.getValueAtPercentile(50))} | ${ms(handoffs.getValueAtPercentile(99))} | ` +
      `${ms(handoffs.maxValue)} | | |`,
  );
  console.log('');
  console.log(
    `dlock ÷ floor ${ratio('dlock', 'floor').toFixed(2)}×, dlock ÷ etcd3 ${ratio('dlock', 'etcd3').toFixed(2)}×, ` +
      `floor ÷ etcd3 ${ratio('floor', 'etcd3').toFixed(2)}× (p50s: median of the per-block ratios; goal dlock ÷ etcd3 ≤ 0.50×)`,
  );
  console.log('');
  console.log('gRPC calls per acquire+release, counted by etcd (grpc_server_handled_total):');
  for (const [id, text] of Object.entries(counts)) console.log(`  ${id}: ${text}`);
  console.log('');
  console.log(
    'client time per cycle, outside KV calls (medians, µs): before the first request | from a reply',
  );
  console.log('to the next request | after the last reply = total, of the whole cycle');
  const us = (msValue) => (msValue * 1000).toFixed(0);
  for (const [id, t] of Object.entries(clientTime)) {
    console.log(
      `  ${id}: ${t.calls} KV calls; ${t.gaps.map(us).join(' | ')} = ${us(t.clientMs)} of ${us(t.totalMs)}`,
    );
  }
} finally {
  await dlock.close();
  await driver.close();
  etcd3.close();
  bare.close();
  await server.stop();
}
