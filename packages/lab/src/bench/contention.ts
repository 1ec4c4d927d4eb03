import { setImmediate as nextTurn } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { deadlineSignal, pause } from './histogram.js';

const BENCH_TTL_MS = 10_000;
const ERROR_BACKOFF_MS = 50;

/** One block of a contention level. */
export interface ContentionBlock {
  /** Acquire + release pairs completed in the measured window, per contender. */
  readonly perContender: number[];
  /** The measured window: the block less its warm-up. */
  readonly seconds: number;
  readonly errors: number;
}

/** The first part of a block, while every contender connects and queues up, is not counted. */
const WARMUP_SHARE = 0.25;

/**
 * `contenders` loops of acquire + release for `budgetMs`, spread over `keys` keys and over the given
 * providers (separate clients). Only operations completing after the warm-up (the first quarter, when
 * all contenders arrive at once) and before the deadline count, so a block measures the steady state.
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
  const measuredFrom = performance.now() + budgetMs * WARMUP_SHARE;
  const deadline = performance.now() + budgetMs;
  const perContender = Array.from({ length: contenders }, () => 0);
  let errors = 0;
  const loop = async (index: number) => {
    const provider = providers[index % providers.length] as LockProvider;
    const key = `${keyPrefix}:${index % keys}`;
    for (let iteration = 1; !signal.aborted && performance.now() < deadline; iteration++) {
      try {
        const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, signal });
        await lease.release();
        const completedAt = performance.now();
        if (completedAt >= measuredFrom && completedAt <= deadline)
          perContender[index] = (perContender[index] as number) + 1;
        // An in-process backend settles everything in microtasks; give timers (the deadline) a turn.
        if (iteration % 64 === 0) await nextTurn();
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
  return { perContender, seconds: (budgetMs * (1 - WARMUP_SHARE)) / 1000, errors };
}
