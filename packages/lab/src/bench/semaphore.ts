import { setTimeout as sleep } from 'node:timers/promises';
import { runContenders, timedAcquire } from './contention.js';
import { LatencyRecorder } from './histogram.js';

/** Takes one permit (waiting until `signal` aborts, where the library can be aborted) and answers how to give it back. */
export type PermitTaker = (signal: AbortSignal) => Promise<() => Promise<void>>;

/** One block of many contenders on one semaphore. */
export interface PermitContentionBlock {
  /** Acquisitions completed in the measured window, per contender. */
  readonly perContender: number[];
  readonly seconds: number;
  /** How long each acquire begun after the warm-up waited (see `timedAcquire`). */
  readonly waits: LatencyRecorder;
  readonly mostInside: number;
  readonly errors: number;
}

/**
 * `contenders` loops of acquire → hold `holdMs` → release on one semaphore, spread over `takers`
 * (one per client). Counts acquisitions per contender and the most permits held at once as the
 * contenders saw them: counted up once an acquire resolved and down before the release is sent, so
 * a count above the limit is a real violation, never an artefact.
 */
export async function measurePermitContention(
  takers: readonly PermitTaker[],
  contenders: number,
  holdMs: number,
  budgetMs: number,
  parent: AbortSignal,
): Promise<PermitContentionBlock> {
  const perContender = Array.from({ length: contenders }, () => 0);
  const waits = new LatencyRecorder();
  let inside = 0;
  let mostInside = 0;
  const { seconds, errors } = await runContenders(
    contenders,
    budgetMs,
    parent,
    async (index, signal, window) => {
      const take = takers[index % takers.length] as PermitTaker;
      const release = await timedAcquire(() => take(signal), waits, window.afterWarmup(performance.now()));
      const acquiredAt = performance.now();
      mostInside = Math.max(mostInside, ++inside);
      try {
        await sleep(holdMs);
      } finally {
        inside--;
        await release();
      }
      if (window.contains(acquiredAt)) perContender[index] = (perContender[index] as number) + 1;
    },
  );
  return { perContender, seconds, waits, mostInside, errors };
}
