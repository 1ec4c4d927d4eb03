import { setMaxListeners } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { pause } from '@dlock/core';
import { build } from 'hdr-histogram-js';
import type { PercentilePoint } from '../results.js';

const DISTRIBUTION_PERCENTILES = [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100];
const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Latencies in an HDR histogram (microsecond resolution, 3 significant digits). */
export class LatencyRecorder {
  readonly #histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });

  get count(): number {
    return this.#histogram.totalCount;
  }

  recordMs(ms: number): void {
    this.#histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  /** Adds every value recorded by `other` (blocks pooled into one distribution). */
  add(other: LatencyRecorder): void {
    this.#histogram.add(other.#histogram);
  }

  /**
   * The value at `percentile`. An HDR histogram answers with the highest value equivalent to the
   * bucket it falls in, which can lie above the largest value actually recorded (a p99 of 8.631 ms
   * beside a max of 8.628 ms); clamping to the recorded range keeps p50 ≤ p99 ≤ max.
   */
  percentileMs(percentile: number): number {
    const { minNonZeroValue, maxValue } = this.#histogram;
    const value = this.#histogram.getValueAtPercentile(percentile);
    return round(Math.min(maxValue, Math.max(minNonZeroValue, value)) / 1000);
  }

  get maxMs(): number {
    return round(this.#histogram.maxValue / 1000);
  }

  distribution(): PercentilePoint[] {
    return DISTRIBUTION_PERCENTILES.map((percentile) => ({ percentile, ms: this.percentileMs(percentile) }));
  }
}

export interface LatencyLoopOptions {
  readonly budgetMs: number;
  readonly signal: AbortSignal;
  /** Untimed runs first (connection setup, script caching, JIT). */
  readonly warmup?: number;
  readonly maxSamples?: number;
}

/** Runs `operation` back to back until the budget is spent (at least once), timing each run. */
export async function measureLatency(
  operation: () => Promise<void>,
  options: LatencyLoopOptions,
): Promise<LatencyRecorder> {
  const recorder = new LatencyRecorder();
  for (let i = 0; i < (options.warmup ?? 5); i++) await operation();
  const deadline = performance.now() + options.budgetMs;
  const maxSamples = options.maxSamples ?? 100_000;
  do {
    options.signal.throwIfAborted();
    const startedAt = performance.now();
    await operation();
    recorder.recordMs(performance.now() - startedAt);
    // In-process operations never leave the microtask queue; let timers and I/O run now and then.
    if (recorder.count % 256 === 0) await nextTurn();
  } while (performance.now() < deadline && recorder.count < maxSamples);
  return recorder;
}

/**
 * A signal that aborts after `ms` or when `parent` aborts, with a cleanup for its timer. Every
 * contender of a block waits on it (32 and more listeners at once, by design), so Node's
 * MaxListenersExceededWarning, meant to catch leaks, is turned off for it.
 */
export function deadlineSignal(ms: number, parent: AbortSignal): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('benchmark slice over')), ms);
  const signal = AbortSignal.any([controller.signal, parent]);
  setMaxListeners(0, signal);
  return { signal, clear: () => clearTimeout(timer) };
}

export { pause };
