import type { LockProvider } from '@dlock/core';
import { type LatencyRecorder, measureLatency } from './histogram.js';

const BENCH_TTL_MS = 10_000;

/** acquire + release on a free key, back to back: the cost of one uncontended critical section. */
export function measureUncontended(
  provider: LockProvider,
  key: string,
  budgetMs: number,
  signal: AbortSignal,
): Promise<LatencyRecorder> {
  return measureLatency(
    async () => {
      const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, waitMs: 5_000 });
      await lease.release();
    },
    { budgetMs, signal, warmup: 10 },
  );
}
