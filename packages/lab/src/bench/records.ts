import type { LatencyRecord } from '../results.js';
import { figureOf } from './blocks.js';
import { LatencyRecorder } from './histogram.js';

export const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Pools the blocks of one subject: p50 as the median of block p50s (of the blocks that timed anything),
 * p99 and max over everything.
 */
export function latencyRecord(
  blocks: readonly LatencyRecorder[],
): LatencyRecord & { pooled: LatencyRecorder } {
  const pooled = new LatencyRecorder();
  for (const block of blocks) pooled.add(block);
  return {
    samples: pooled.count,
    p50Ms: figureOf(blocks.filter((block) => block.count > 0).map((block) => block.percentileMs(50))),
    p99Ms: pooled.percentileMs(99),
    maxMs: pooled.maxMs,
    pooled,
  };
}

/** The same without the pooled histogram, as results.json records it. */
export function latencySummary(blocks: readonly LatencyRecorder[]): LatencyRecord {
  const { pooled: _, ...summary } = latencyRecord(blocks);
  return summary;
}

/** A figure from blocks that may have failed part-way: null (with the reason in `errors`) below MIN_BLOCKS. */
export function guarded<T>(what: string, errors: string[], build: () => T): T | null {
  try {
    return build();
  } catch (error) {
    errors.push(`${what}: ${errorText(error)}`);
    return null;
  }
}

/** Each contender's operations over every block (contenders are numbered alike in every block). */
export function perContenderTotals(
  blocks: readonly { readonly perContender: readonly number[] }[],
  contenders: number,
): number[] {
  return Array.from({ length: contenders }, (_, index) =>
    blocks.reduce((sum, block) => sum + (block.perContender[index] ?? 0), 0),
  );
}
