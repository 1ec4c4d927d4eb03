import type { AcquireOptions, Lease, LockProvider } from '@dlock/core';
import { LatencyRecorder, pause } from './histogram.js';

const BENCH_TTL_MS = 10_000;
/** Time for the waiter's request to reach the backend and queue or subscribe before the release. */
const WAITER_SETTLE_MS = 30;
const HANDOFF_WAIT_MS = 15_000;
const MAX_SAMPLES = 200;

/** How a hand-off takes what is handed over on `key` through `provider`: the lock, by default. */
export type HandoffTake = (provider: LockProvider, key: string, options: AcquireOptions) => Promise<Lease>;

const takeLock: HandoffTake = (provider, key, options) => provider.acquire(key, options);

/**
 * Release → a waiting contender (another client) holds: the time from calling release() to the
 * waiter's acquire resolving. Push-wakeup backends hand over in a round trip or two; polling ones
 * take up to their poll interval. `take` says what is handed over (a lock, or a semaphore's permit).
 */
export async function measureHandoff(
  first: LockProvider,
  second: LockProvider,
  key: string,
  budgetMs: number,
  signal: AbortSignal,
  take: HandoffTake = takeLock,
): Promise<LatencyRecorder> {
  const recorder = new LatencyRecorder();
  const deadline = performance.now() + budgetMs;
  const options = { ttlMs: BENCH_TTL_MS, waitMs: HANDOFF_WAIT_MS };
  let holder: Lease = await take(first, key, options);
  let waiterProvider = second;
  let holderProvider = first;
  try {
    do {
      signal.throwIfAborted();
      let grantedAt = 0;
      const waiting = take(waiterProvider, key, options).then((lease) => {
        grantedAt = performance.now();
        return lease;
      });
      waiting.catch(() => {});
      await pause(WAITER_SETTLE_MS);
      const releasedAt = performance.now();
      await holder.release();
      holder = await waiting;
      recorder.recordMs(grantedAt - releasedAt);
      [holderProvider, waiterProvider] = [waiterProvider, holderProvider];
    } while (performance.now() < deadline && recorder.count < MAX_SAMPLES);
  } finally {
    await holder.release().catch(() => {});
  }
  return recorder;
}
