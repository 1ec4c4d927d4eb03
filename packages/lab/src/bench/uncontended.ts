import type { LockProvider } from '@dlock/core';

const BENCH_TTL_MS = 10_000;

/** acquire + release on a free key: one uncontended critical section, timed back to back in blocks. */
export async function acquireAndRelease(provider: LockProvider, key: string): Promise<void> {
  const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, waitMs: 5_000 });
  await lease.release();
}
