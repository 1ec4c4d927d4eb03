// What core's lease lifecycle costs per acquire+release: the memory provider against its own bare
// driver (attempt + release, no core around it), in one process. Short blocks interleaved in rotating
// order, so drift in the machine's load hits every variant alike; figures are medians over blocks,
// and the overhead is the median of the per-block differences. Bounded: a few seconds.
// Run: pnpm --filter @dlock/core bench
import { MemoryLockStore, createMemoryDriver, createMemoryProvider } from '../dist/index.js';

const BLOCKS = 40;
const PER_BLOCK = 5_000;
const store = new MemoryLockStore();
const driver = createMemoryDriver(store);
const provider = createMemoryProvider({ store });
const request = {
  key: 'bench:driver',
  identity: 'bench',
  ttlMs: 10_000,
  signal: new AbortController().signal,
};

const passes = {
  'bare driver (attempt + release)': async () => {
    const attempt = await driver.attempt(request, undefined);
    await driver.release(request.key, attempt.grant);
  },
  'provider: acquire + release': async () => {
    const lease = await provider.acquire('bench:provider', { ttlMs: 10_000 });
    await lease.release();
  },
  'provider: tryAcquire + release': async () => {
    const lease = await provider.tryAcquire('bench:try', { ttlMs: 10_000 });
    await lease.release();
  },
  'provider: acquire with waitMs': async () => {
    const lease = await provider.acquire('bench:wait', { ttlMs: 10_000, waitMs: 5_000 });
    await lease.release();
  },
};
const names = Object.keys(passes);
const perOp = Object.fromEntries(names.map((name) => [name, []]));
// One block of each first, uncounted: it warms the JIT.
for (let block = -1; block < BLOCKS; block++) {
  for (let offset = 0; offset < names.length; offset++) {
    const name = names[(Math.max(0, block) + offset) % names.length];
    const run = passes[name];
    const started = performance.now();
    for (let i = 0; i < PER_BLOCK; i++) await run();
    if (block >= 0) perOp[name].push(((performance.now() - started) / PER_BLOCK) * 1000);
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const [driverName] = names;
console.log(
  `node ${process.version}; ${BLOCKS} interleaved blocks × ${PER_BLOCK} operations; µs per acquire+release`,
);
console.log(`  ${''.padEnd(34)} median   core on top (median of per-block differences)`);
for (const name of names) {
  const over = perOp[name].map((value, i) => value - perOp[driverName][i]);
  const extra = name === driverName ? '' : `${median(over).toFixed(2).padStart(8)}`;
  console.log(`  ${name.padEnd(34)} ${median(perOp[name]).toFixed(2).padStart(6)} ${extra}`);
}
await provider.close();
