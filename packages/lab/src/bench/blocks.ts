import { type Figure, NOISY_SPREAD } from '../results.js';

/** Fewer blocks than this give no median worth the name; the CLI and the validator both enforce it. */
export const MIN_BLOCKS = 3;

const round = (value: number) => Math.round(value * 1000) / 1000;

/**
 * The figure of a set of block results (or independent samples): their median, their min–max spread,
 * and whether that spread is wide. Throws with fewer than MIN_BLOCKS values: one or two numbers have no
 * median, and the report must not print one as if they had.
 */
export function figureOf(values: readonly number[]): Figure {
  if (values.length < MIN_BLOCKS) {
    throw new Error(
      `only ${values.length} of the blocks completed; a figure needs at least ${MIN_BLOCKS} (see the other errors of this backend)`,
    );
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median =
    sorted.length % 2 === 1
      ? (sorted[middle] as number)
      : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
  const min = sorted[0] as number;
  const max = sorted.at(-1) as number;
  return {
    median: round(median),
    min: round(min),
    max: round(max),
    blocks: values.length,
    noisy: max - min > NOISY_SPREAD * median,
  };
}

/** The same round's results of two subjects, divided pairwise (a backend's p50 ÷ the floor's p50). */
export function pairedRatios(numerators: readonly number[], denominators: readonly number[]): number[] {
  return numerators.flatMap((value, index) => {
    const base = denominators[index];
    return base && base > 0 ? [value / base] : [];
  });
}

/**
 * Runs `block` for every subject, `rounds` times, interleaved: each round visits every subject once,
 * starting one further along than the round before, so no subject always runs first (on a cold cache)
 * or last (after the machine warmed up). Returns each subject's block results in round order; a subject
 * whose block throws is dropped from later rounds and its error returned.
 */
export async function interleave<S, T>(
  subjects: readonly S[],
  rounds: number,
  block: (subject: S, round: number) => Promise<T>,
  signal: AbortSignal,
): Promise<{ results: Map<S, T[]>; failures: Map<S, unknown> }> {
  const results = new Map<S, T[]>(subjects.map((subject) => [subject, []]));
  const failures = new Map<S, unknown>();
  for (let round = 0; round < rounds; round++) {
    for (let step = 0; step < subjects.length; step++) {
      const subject = subjects[(round + step) % subjects.length] as S;
      if (failures.has(subject)) continue;
      signal.throwIfAborted();
      try {
        results.get(subject)?.push(await block(subject, round));
      } catch (error) {
        signal.throwIfAborted();
        failures.set(subject, error);
      }
    }
  }
  return { results, failures };
}
