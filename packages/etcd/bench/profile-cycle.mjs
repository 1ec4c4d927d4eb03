// Where the client's CPU goes in dlock's uncontended etcd acquire+release, per layer (issue 13).
//   pnpm --filter @dlock/etcd bench:profile
// Runs CYCLES acquire+release cycles under V8's sampling profiler (node:inspector, 50 µs interval) and
// charges every sample to the innermost frame of a known layer on its stack: core, this driver, etcd3,
// grpc-js + protobuf (the wire), else node (http2, streams, timers, GC and the rest). Idle time is the
// wait for etcd. Bounded: a fixed number of cycles, capped in time. Needs dist/ (the script builds it).
import { Session } from 'node:inspector/promises';
import { startEtcd } from '@dlock/testkit';
import { createEtcdProvider } from '../dist/index.js';

const CYCLES = 2_000;
const WARMUP = 200;
const LIMIT_MS = 30_000;

const LAYERS = [
  ['core', /\/packages\/core\/|@dlock\+core|node_modules\/@dlock\/core\//],
  ['driver (@dlock/etcd)', /\/packages\/etcd\/dist\//],
  ['etcd3', /\/etcd3@|\/etcd3\/lib\//],
  ['grpc-js + protobuf', /@grpc|protobufjs|\/long@|\/long\//],
];

function layerOf(url) {
  for (const [name, pattern] of LAYERS) if (pattern.test(url)) return name;
  return undefined;
}

const server = await startEtcd();
const dlock = createEtcdProvider({ hosts: server.endpoint, namespace: 'bench/', sessionTtlSec: 10 });
const inspector = new Session();
inspector.connect();
try {
  const cycle = async () => (await dlock.acquire('cycle')).release();
  for (let i = 0; i < WARMUP; i++) await cycle();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 50 });
  await inspector.post('Profiler.start');
  const until = performance.now() + LIMIT_MS;
  const started = performance.now();
  let cycles = 0;
  for (; cycles < CYCLES && performance.now() < until; cycles++) await cycle();
  const wallMs = performance.now() - started;
  const { profile } = await inspector.post('Profiler.stop');

  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const charged = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const micros = profile.timeDeltas[i] ?? 0;
    let id = profile.samples[i];
    const leaf = byId.get(id).callFrame.functionName;
    let layer = leaf === '(idle)' ? 'idle (waiting for etcd)' : undefined;
    while (!layer && id !== undefined) {
      layer = layerOf(byId.get(id).callFrame.url);
      id = parentOf.get(id);
    }
    layer ??= 'node (http2, streams, timers, GC, other)';
    charged.set(layer, (charged.get(layer) ?? 0) + micros);
  }
  console.log(`${cycles} cycles, ${(wallMs / cycles).toFixed(2)} ms each (profiler running)`);
  console.log('');
  console.log('| layer | µs per acquire+release |');
  console.log('|---|---|');
  for (const [layer, micros] of [...charged].sort((a, b) => b[1] - a[1])) {
    console.log(`| ${layer} | ${(micros / cycles).toFixed(0)} |`);
  }
} finally {
  inspector.disconnect();
  await dlock.close();
  await server.stop();
}
