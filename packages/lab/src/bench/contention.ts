import { setImmediate as nextTurn } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { deadlineSignal, pause } from './histogram.js';

const BENCH_TTL_MS = 10_000;
const ERROR_BACKOFF_MS = 50;

/** One block of a contention level. */
export interface ContentionBlock {
  /** Acquire + release pairs completed before the deadline, per contender. */
  readonly perContender: number[];
  readonly seconds: number;
  readonly errors: number;
}

/**
 * `contenders` loops of acquire + release for `budgetMs`, spread over `keys` keys and over the given
 * providers (separate clients). Operations finishing after the deadline do not count.
 */
export async function measureContention(
  providers: readonly LockProvider[],
  contenders: number,
  keys: number,
  keyPrefix: string,
  budgetMs: number,
  parent: AbortSignal,
): Promise<ContentionBlock> {
  const { signal, clear } = deadlineSignal(budgetMs, parent);
  const deadline = performance.now() + budgetMs;
  const perContender = Array.from({ length: contenders }, () => 0);
  let errors = 0;
  const loop = async (index: number) => {
    const provider = providers[index % providers.length] as LockProvider;
    const key = `${keyPrefix}:${index % keys}`;
    while (!signal.aborted && performance.now() < deadline) {
      try {
        const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, signal });
        await lease.release();
        if (performance.now() <= deadline) perContender[index] = (perContender[index] as number) + 1;
        // An in-process backend settles everything in microtasks; give timers (the deadline) a turn.
        if ((perContender[index] as number) % 64 === 0) await nextTurn();
      } catch {
        if (signal.aborted) break;
        errors++;
        await pause(ERROR_BACKOFF_MS, signal);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: contenders }, (_, index) => loop(index)));
  } finally {
    clear();
  }
  parent.throwIfAborted();
  return { perContender, seconds: budgetMs / 1000, errors };
}
