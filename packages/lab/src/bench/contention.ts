import { setImmediate as nextTurn } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { deadlineSignal, pause } from './histogram.js';

const BENCH_TTL_MS = 10_000;
const ERROR_BACKOFF_MS = 50;

/**
 * The shortest block worth measuring (ms): below this a block is mostly start-up (32 contenders
 * arriving at once, a waiter subscribing) and its result is noise. A short --duration makes the run
 * longer than asked rather than its figures meaningless.
 */
export const MIN_BLOCK_MS = { contention: 400, handoff: 200 } as const;
/** Separate clients shared by the contention loops: enough to contend for real, few enough for 2 cores. */
export const MAX_PROVIDERS = 8;

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

/** The part of a block that counts: after the warm-up, before the deadline. */
export interface MeasuredWindow {
  readonly seconds: number;
  /** Whether `at` (performance.now()) lies after the warm-up and before the deadline. */
  contains(at: number): boolean;
  /** Whether `at` lies after the warm-up (an acquire begun then counts its wait, however it ends). */
  afterWarmup(at: number): boolean;
}

/**
 * `contenders` loops of `operation` for `budgetMs`, sharing one deadline signal (each loop's pending
 * acquire is aborted with it). A failed operation is counted and retried after a short pause. Only
 * what completes inside the window (after the first quarter, when every contender arrives at once, and
 * before the deadline) should be counted by `operation`, so a block measures the steady state.
 */
export async function runContenders(
  contenders: number,
  budgetMs: number,
  parent: AbortSignal,
  operation: (index: number, signal: AbortSignal, window: MeasuredWindow) => Promise<void>,
): Promise<{ readonly seconds: number; readonly errors: number }> {
  const { signal, clear } = deadlineSignal(budgetMs, parent);
  const measuredFrom = performance.now() + budgetMs * WARMUP_SHARE;
  const deadline = performance.now() + budgetMs;
  const window: MeasuredWindow = {
    seconds: (budgetMs * (1 - WARMUP_SHARE)) / 1000,
    contains: (at) => at >= measuredFrom && at <= deadline,
    afterWarmup: (at) => at >= measuredFrom,
  };
  let errors = 0;
  const loop = async (index: number) => {
    for (let iteration = 1; !signal.aborted && performance.now() < deadline; iteration++) {
      try {
        await operation(index, signal, window);
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
  return { seconds: window.seconds, errors };
}

/**
 * `contenders` loops of acquire + release for `budgetMs`, spread over `keys` keys and over the given
 * providers (separate clients), counted per contender within the measured window.
 */
export async function measureContention(
  providers: readonly LockProvider[],
  contenders: number,
  keys: number,
  keyPrefix: string,
  budgetMs: number,
  parent: AbortSignal,
): Promise<ContentionBlock> {
  const perContender = Array.from({ length: contenders }, () => 0);
  const { seconds, errors } = await runContenders(
    contenders,
    budgetMs,
    parent,
    async (index, signal, window) => {
      const provider = providers[index % providers.length] as LockProvider;
      const lease = await provider.acquire(`${keyPrefix}:${index % keys}`, { ttlMs: BENCH_TTL_MS, signal });
      await lease.release();
      if (window.contains(performance.now())) perContender[index] = (perContender[index] as number) + 1;
    },
  );
  return { perContender, seconds, errors };
}
