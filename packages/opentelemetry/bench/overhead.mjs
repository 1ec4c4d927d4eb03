// What instrument() costs per acquire+release on the memory provider (the cheapest backend, so the
// largest relative cost): not instrumented, instrumented into the API's no-op providers, and into the
// real SDK (metrics aggregated in memory, every span sampled and processed). Interleaved rounds in one
// process, medians; bounded to a few seconds. Run: pnpm bench (after pnpm build).
import { createMemoryProvider } from '@dlock/core';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { instrument } from '../dist/index.js';

const ROUNDS = 6;
const PER_ROUND = 10_000;
const provider = createMemoryProvider();
const spans = new InMemorySpanExporter();
const sdk = {
  meterProvider: new MeterProvider(),
  tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
};

const passes = {
  'not instrumented': () => undefined,
  'instrument() with no SDK (no-op API)': () => instrument(),
  'instrument() into the SDK': () => instrument(sdk),
  'instrument({ holdSpans }) into the SDK': () => instrument({ ...sdk, holdSpans: true }),
};
const perOp = Object.fromEntries(Object.keys(passes).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, start] of Object.entries(passes)) {
    const instrumentation = start();
    const started = performance.now();
    for (let i = 0; i < PER_ROUND; i++) {
      const lease = await provider.acquire('bench', { ttlMs: 10_000 });
      await lease.release();
    }
    // The first round warms the JIT and is not counted.
    if (round > 0) perOp[name].push(((performance.now() - started) / PER_ROUND) * 1000);
    instrumentation?.unsubscribe();
    spans.reset();
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const base = median(perOp['not instrumented']);
console.log(`node ${process.version}; median of ${ROUNDS - 1} rounds × ${PER_ROUND} acquire+release`);
for (const name of Object.keys(passes)) {
  const value = median(perOp[name]);
  console.log(`  ${name.padEnd(40)} ${value.toFixed(2)} µs  (+${(value - base).toFixed(2)} µs)`);
}
await provider.close();
await sdk.meterProvider.shutdown();
await sdk.tracerProvider.shutdown();
