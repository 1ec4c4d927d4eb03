import type { LockProvider } from '@dlock/core';
import type { Figure, FloorRecord, LatencyRecord } from '../results.js';
import { figureOf, interleave, pairedRatios } from './blocks.js';
import { type LatencyRecorder, measureLatency } from './histogram.js';
import { guarded, latencyRecord, latencySummary } from './records.js';

const BENCH_TTL_MS = 10_000;
/** The shortest block worth timing (ms): below this a block is mostly warm-up. */
const MIN_LATENCY_BLOCK_MS = 100;
const FIRST_BLOCK_WARMUP = 20;
const BLOCK_WARMUP = 5;

/** acquire + release on a free key: one uncontended critical section, timed back to back in blocks. */
export async function acquireAndRelease(provider: LockProvider, key: string): Promise<void> {
  const lease = await provider.acquire(key, { ttlMs: BENCH_TTL_MS, waitMs: 5_000 });
  await lease.release();
}

/** Something timed back to back for an uncontended figure: a backend, the floor or a peer library. */
export interface LatencySubject {
  readonly kind: 'backend' | 'floor' | 'peer';
  readonly name: string;
  /** Its share of the budget (ms), split evenly over the rounds. */
  readonly budgetMs: number;
  operation(): Promise<void>;
}

/** An uncontended figure's blocks, summarised: the floor, each subject's latency and ratio to the floor. */
export interface TimedSubjects {
  readonly floor: FloorRecord | null;
  /** A subject's latency over its blocks (with the pooled histogram); null, with the reason in `errors`, when too few blocks completed. */
  latency(
    kind: LatencySubject['kind'],
    name: string,
    errors: string[],
  ): (LatencyRecord & { pooled: LatencyRecorder }) | null;
  /** Block p50 ÷ floor block p50 of the same round, over the rounds; null without a floor. */
  ratio(kind: LatencySubject['kind'], name: string, errors: string[]): Figure | null;
}

/**
 * Times every subject in `rounds` interleaved blocks (see `interleave`): each block runs the
 * subject's operation back to back for its share of the budget (at least MIN_LATENCY_BLOCK_MS). A
 * subject whose block fails is reported through `failed` and dropped from later rounds. The floor,
 * if one is among the subjects (kind 'floor', named by its protocol), is summarised into `floor`.
 */
export async function timeInterleaved(
  subjects: readonly LatencySubject[],
  rounds: number,
  signal: AbortSignal,
  report: {
    readonly onBlock: (subject: LatencySubject, round: number) => void;
    readonly failed: (subject: LatencySubject, error: unknown) => void;
    /** Where problems with the floor's and the peers' records go. */
    readonly notes: string[];
    /** The server set ("5× redis"), naming the floor and the peers in notes. */
    readonly label: string;
    /** The figure ("uncontended"), naming a backend's problems in its errors. */
    readonly figure: string;
  },
): Promise<TimedSubjects> {
  const { results, failures } = await interleave(
    subjects,
    rounds,
    async (subject, round) => {
      report.onBlock(subject, round);
      return measureLatency(subject.operation, {
        budgetMs: Math.max(MIN_LATENCY_BLOCK_MS, subject.budgetMs / rounds),
        signal,
        warmup: round === 0 ? FIRST_BLOCK_WARMUP : BLOCK_WARMUP,
      });
    },
    signal,
  );
  for (const [subject, error] of failures) report.failed(subject, error);
  const blocksOf = (kind: LatencySubject['kind'], name: string) => {
    const subject = subjects.find((entry) => entry.kind === kind && entry.name === name);
    return subject ? (results.get(subject) ?? []) : [];
  };
  const floorSubject = subjects.find((subject) => subject.kind === 'floor');
  const floorBlocks = floorSubject ? blocksOf('floor', floorSubject.name) : [];
  const floor: FloorRecord | null = floorSubject
    ? guarded(`${report.label} floor`, report.notes, () => ({
        protocol: floorSubject.name,
        ...latencySummary(floorBlocks),
      }))
    : null;
  return {
    floor,
    latency: (kind, name, errors) =>
      guarded(kind === 'backend' ? report.figure : `${report.label} ${kind} ${name}`, errors, () =>
        latencyRecord(blocksOf(kind, name)),
      ),
    ratio: (kind, name, errors) =>
      floor
        ? guarded('ratio to the floor', errors, () =>
            figureOf(
              pairedRatios(
                blocksOf(kind, name).map((block) => block.percentileMs(50)),
                floorBlocks.map((block) => block.percentileMs(50)),
              ),
            ),
          )
        : null,
  };
}
