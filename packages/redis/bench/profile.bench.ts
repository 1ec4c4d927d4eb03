// Where the time of one uncontended acquire+release goes, layer by layer (issue 13's attribution).
// The floor (SET NX PX + EVALSHA compare-and-delete from a bare ioredis client) and dlock's provider run
// in alternating blocks under the V8 CPU profiler (node:inspector); every sample's self time is put in
// a layer by the code it was in, and divided by the cycles of its block. Next to it, the server's time
// per cycle (INFO commandstats). Bounded: BLOCKS × CYCLES cycles per variant, about 20 s.
// Run: pnpm --filter @dlock/redis bench:profile
import { randomBytes } from 'node:crypto';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import { startRedis, stopAll } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { createRedisProvider } from '../src/index.js';
import { commandMicros } from './measure.js';

const BLOCKS = 4;
const CYCLES = 3_000;
const LOCK_TTL_MS = 10_000;

/** The layers a CPU sample is put in, in the order they are printed. */
const LAYERS = [
  'idle (waiting for the server and the network)',
  'socket writes (syscall inside writeUtf8String/writev)',
  'garbage collection',
  'Node internals (net, streams, timers, promises)',
  'ioredis',
  '@dlock/core',
  '@dlock/redis',
  'bench loop and crypto',
  'other (V8, native)',
] as const;
type Layer = (typeof LAYERS)[number];

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
}
interface Profile {
  readonly nodes: ProfileNode[];
  readonly samples: number[];
  readonly timeDeltas: number[];
}

function layerOf(node: ProfileNode): Layer {
  const { functionName, url } = node.callFrame;
  if (functionName === '(idle)') return LAYERS[0];
  if (/^write(Utf8String|Buffer|v|Latin1String)$/.test(functionName) && url === '') return LAYERS[1];
  if (functionName === '(garbage collector)') return LAYERS[2];
  if (url.includes('profile.bench') || url.startsWith('node:crypto') || url.includes('crypto/'))
    return LAYERS[7];
  if (url.includes('/ioredis/')) return LAYERS[4];
  if (url.includes('/packages/core/') || url.includes('/@dlock/core/')) return LAYERS[5];
  // The bench compiles the package's sources next to itself (bench/dist/src).
  if (url.includes('/packages/redis/')) return LAYERS[6];
  if (url.startsWith('node:')) return LAYERS[3];
  return LAYERS[8];
}

/** µs of self time per layer in one profile. */
function selfTimeByLayer(profile: Profile): Map<Layer, number> {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const byLayer = new Map<Layer, number>(LAYERS.map((layer) => [layer, 0]));
  profile.samples.forEach((id, index) => {
    const layer = layerOf(nodes.get(id)!);
    byLayer.set(layer, byLayer.get(layer)! + (profile.timeDeltas[index] ?? 0));
  });
  return byLayer;
}

async function main(): Promise<void> {
  const server = await startRedis();
  const raw = new Redis(server.url);
  const provider = createRedisProvider({ url: server.url });
  const session = new Session();
  session.connect();
  try {
    const sha = (await raw.script(
      'LOAD',
      `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`,
    )) as string;
    const variants = {
      floor: async () => {
        const value = randomBytes(16).toString('hex');
        await raw.set('profile:floor', value, 'PX', LOCK_TTL_MS, 'NX');
        await raw.evalsha(sha, 1, 'profile:floor', value);
      },
      provider: async () => {
        const lease = await provider.acquire('profile:provider', { ttlMs: LOCK_TTL_MS });
        await lease.release();
      },
    };
    type Variant = keyof typeof variants;
    const totals: Record<Variant, { layers: Map<Layer, number>; cycles: number; serverMicros: number }> = {
      floor: { layers: new Map(), cycles: 0, serverMicros: 0 },
      provider: { layers: new Map(), cycles: 0, serverMicros: 0 },
    };
    for (const run of Object.values(variants)) for (let i = 0; i < CYCLES; i++) await run();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    for (let block = 0; block < BLOCKS; block++) {
      for (const name of (block % 2 === 0 ? ['floor', 'provider'] : ['provider', 'floor']) as Variant[]) {
        await raw.config('RESETSTAT');
        await session.post('Profiler.start');
        for (let i = 0; i < CYCLES; i++) await variants[name]();
        const { profile } = await session.post('Profiler.stop');
        const stats = (await raw.info('commandstats')) as string;
        const total = totals[name];
        for (const [layer, micros] of selfTimeByLayer(profile as unknown as Profile))
          total.layers.set(layer, (total.layers.get(layer) ?? 0) + micros);
        total.cycles += CYCLES;
        // Only top-level commands: a script's usec already includes the commands it calls.
        total.serverMicros += commandMicros(stats, name === 'floor' ? ['set', 'evalsha'] : ['evalsha']);
      }
    }
    const perCycle = (name: Variant, layer: Layer) => totals[name].layers.get(layer)! / totals[name].cycles;
    const sum = (name: Variant) => LAYERS.reduce((acc, layer) => acc + perCycle(name, layer), 0);
    const cell = (micros: number) => micros.toFixed(1).padStart(8);
    const lines = [
      `uncontended acquire+release, ${BLOCKS} alternating blocks of ${CYCLES} per variant under the V8 CPU profiler`,
      `(100 µs sampling); node ${process.version}, load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
      'µs per cycle, by where the process was:',
      `  ${'layer'.padEnd(56)}   floor provider  difference`,
      ...LAYERS.map(
        (layer) =>
          `  ${layer.padEnd(56)}${cell(perCycle('floor', layer))}${cell(perCycle('provider', layer))}${cell(perCycle('provider', layer) - perCycle('floor', layer))}`,
      ),
      `  ${'total (wall time per cycle)'.padEnd(56)}${cell(sum('floor'))}${cell(sum('provider'))}${cell(sum('provider') - sum('floor'))}`,
      `  ${'of which the server ran the commands (INFO commandstats)'.padEnd(56)}${cell(totals.floor.serverMicros / totals.floor.cycles)}${cell(totals.provider.serverMicros / totals.provider.cycles)}${cell(totals.provider.serverMicros / totals.provider.cycles - totals.floor.serverMicros / totals.floor.cycles)}`,
    ];
    console.log(lines.join('\n'));
  } finally {
    session.disconnect();
    raw.disconnect();
    await provider.close();
    await server.stop();
    await stopAll();
  }
}

await main();
