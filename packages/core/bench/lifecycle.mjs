// What core's lease lifecycle costs per acquire+release: the memory provider against its own bare
// driver (attempt + release, no core around it), interleaved in one process. Bounded: a few seconds.
import { MemoryLockStore, createMemoryDriver, createMemoryProvider } from '../dist/index.js';

const ROUNDS = 6;
const PER_ROUND = 20_000;
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
  'provider (acquire + release)': async () => {
    const lease = await provider.acquire('bench:provider', { ttlMs: 10_000 });
    await lease.release();
  },
};
const perOp = Object.fromEntries(Object.keys(passes).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of Object.entries(passes)) {
    const started = performance.now();
    for (let i = 0; i < PER_ROUND; i++) await run();
    // The first round warms the JIT and is not counted.
    if (round > 0) perOp[name].push(((performance.now() - started) / PER_ROUND) * 1000);
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const [driverName, providerName] = Object.keys(passes);
console.log(`node ${process.version}; median of ${ROUNDS - 1} rounds × ${PER_ROUND} operations`);
for (const name of Object.keys(passes))
  console.log(`  ${name.padEnd(34)} ${median(perOp[name]).toFixed(2)} µs`);
const overhead = median(perOp[providerName]) - median(perOp[driverName]);
console.log(`  core lifecycle overhead            ${overhead.toFixed(2)} µs per acquire+release`);
await provider.close();
