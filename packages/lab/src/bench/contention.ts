import { setImmediate as nextTurn } from 'node:timers/promises';
import type { LockProvider } from '@dlock/core';
import { LatencyRecorder, deadlineSignal, pause } from './histogram.js';

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
  /** How long each acquire begun after the warm-up waited (see `timedAcquire`). */
  readonly waits: LatencyRecorder;
  readonly errors: number;
}

/**
 * Takes the lock `key` (waiting until `signal` aborts, where the library can be aborted) and answers
 * how to give it back: a dlock provider's acquire, or a peer library's.
 */
export type LockTaker = (key: string, signal: AbortSignal) => Promise<() => Promise<void>>;

/** A dlock provider as a `LockTaker`. */
export function providerTaker(provider: LockProvider): LockTaker {
  return async (key, signal) => {
    const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, signal });
    return () => lease.release();
  };
}

/**
 * Times one acquire into `waits` when it began after the warm-up: until it resolved, or — when the
 * end of the block aborted it — until then, a lower bound, so a contender starved for the whole block
 * still shows in the tail rather than vanishing from it.
 */
export async function timedAcquire<T>(
  acquire: () => Promise<T>,
  waits: LatencyRecorder,
  counts: boolean,
): Promise<T> {
  const startedAt = performance.now();
  try {
    const granted = await acquire();
    if (counts) waits.recordMs(performance.now() - startedAt);
    return granted;
  } catch (error) {
    if (counts) waits.recordMs(performance.now() - startedAt);
    throw error;
  }
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
 * takers (separate clients: dlock providers or a peer library's), counted per contender within the
 * measured window, with every acquire's wait.
 */
export async function measureContention(
  takers: readonly LockTaker[],
  contenders: number,
  keys: number,
  keyPrefix: string,
  budgetMs: number,
  parent: AbortSignal,
): Promise<ContentionBlock> {
  const perContender = Array.from({ length: contenders }, () => 0);
  const waits = new LatencyRecorder();
  const { seconds, errors } = await runContenders(
    contenders,
    budgetMs,
    parent,
    async (index, signal, window) => {
      const take = takers[index % takers.length] as LockTaker;
      const release = await timedAcquire(
        () => take(`${keyPrefix}:${index % keys}`, signal),
        waits,
        window.afterWarmup(performance.now()),
      );
      await release();
      if (window.contains(performance.now())) perContender[index] = (perContender[index] as number) + 1;
    },
  );
  return { perContender, seconds, waits, errors };
}
