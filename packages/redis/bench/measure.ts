// What the benchmarks of @dlock/redis share (and @dlock/redlock's, through semaphore-measure.ts):
// latency recording, interleaved blocks with per-block ratios, and the contention loop.
import { type Histogram, build } from 'hdr-histogram-js';

/** Milliseconds, recorded at microsecond resolution. */
export class Latencies {
  readonly histogram: Histogram = build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
  add(ms: number): void {
    this.histogram.recordValue(Math.max(1, Math.round(ms * 1_000)));
  }
  at(percentile: number): number {
    return this.histogram.getValueAtPercentile(percentile) / 1_000;
  }
  get max(): number {
    return this.histogram.maxValue / 1_000;
  }
  get count(): number {
    return this.histogram.totalCount;
  }
}

/** One variant's latencies: pooled over the run, and per block (for per-block ratios). */
export interface Blocks {
  readonly pooled: Latencies;
  readonly blocks: Latencies[];
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/**
 * Runs every variant in blocks of `perBlock` operations, `blocks` times, the order rotating each
 * round, so drift in the machine's load hits all of them alike; one warm-up block each first.
 */
export async function interleaved<Name extends string>(
  variants: Record<Name, () => Promise<void>>,
  blocks: number,
  perBlock: number,
): Promise<Record<Name, Blocks>> {
  const names = Object.keys(variants) as Name[];
  const results = {} as Record<Name, Blocks>;
  for (const name of names) results[name] = { pooled: new Latencies(), blocks: [] };
  for (const name of names) for (let i = 0; i < perBlock; i++) await variants[name]();
  for (let round = 0; round < blocks; round++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(round + offset) % names.length]!;
      const block = new Latencies();
      const run = variants[name];
      for (let i = 0; i < perBlock; i++) {
        const started = performance.now();
        await run();
        const elapsed = performance.now() - started;
        block.add(elapsed);
        results[name].pooled.add(elapsed);
      }
      results[name].blocks.push(block);
    }
  }
  return results;
}

/** The ratio of `a` to `b` at a percentile, block by block: median, and the lowest and highest. */
export function blockRatio(
  a: Blocks,
  b: Blocks,
  percentile: number,
): { median: number; low: number; high: number } {
  const ratios = a.blocks.map((block, i) => block.at(percentile) / b.blocks[i]!.at(percentile));
  return { median: median(ratios), low: Math.min(...ratios), high: Math.max(...ratios) };
}

/** What a contention run measured. `waits`: how long each acquire call took (started before the deadline). */
export interface ContentionRun {
  readonly acquisitions: number;
  readonly seconds: number;
  readonly waits: Latencies;
  /** Acquisitions completed before the deadline, per contender. */
  readonly perContender: number[];
  /** Acquisitions that went to a different contender than the one before. */
  readonly ownerChanges: number;
  /** The most holders seen inside at once (1 for a lock, at most the limit for a semaphore). */
  readonly mostInside: number;
}

/**
 * `acquirers.length` contenders loop acquire → hold `holdMs` (0: release at once) → release for `ms`.
 * Throughput counts acquisitions completed before the deadline; every acquire started before the
 * deadline is awaited and its wait recorded, so a contender starved until the end still counts.
 */
export async function contend(
  acquirers: Array<() => Promise<() => Promise<void>>>,
  ms: number,
  holdMs = 0,
): Promise<ContentionRun> {
  const waits = new Latencies();
  const perContender = acquirers.map(() => 0);
  let acquisitions = 0;
  let ownerChanges = 0;
  let lastOwner = -1;
  let inside = 0;
  let mostInside = 0;
  const deadline = performance.now() + ms;
  await Promise.all(
    acquirers.map(async (acquire, index) => {
      while (performance.now() < deadline) {
        const started = performance.now();
        const release = await acquire();
        const heldAt = performance.now();
        waits.add(heldAt - started);
        inside++;
        mostInside = Math.max(mostInside, inside);
        if (heldAt < deadline) {
          acquisitions++;
          perContender[index]!++;
          if (index !== lastOwner) ownerChanges++;
          lastOwner = index;
        }
        if (holdMs > 0) await new Promise((resolve) => setTimeout(resolve, holdMs));
        inside--;
        await release();
      }
    }),
  );
  return { acquisitions, seconds: ms / 1_000, waits, perContender, ownerChanges, mostInside };
}

export const fixed = (value: number, digits = 3, width = 7): string => value.toFixed(digits).padStart(width);

/** `<rate>/s  p50 p99 max  slowest contender's share` for a contention run. */
export function contentionRow(label: string, run: ContentionRun): string {
  const slowest = Math.min(...run.perContender) / Math.max(1, run.acquisitions);
  return `  ${label.padEnd(30)}${fixed(run.acquisitions / run.seconds, 0, 7)}/s ${fixed(run.waits.at(50), 2, 8)} ${fixed(run.waits.at(99), 2, 8)} ${fixed(run.waits.max, 2, 8)}   ${(slowest * 100).toFixed(2).padStart(5)}% (fair ${(100 / run.perContender.length).toFixed(2)}%)`;
}

/**
 * The server's µs in the given top-level commands, from an `INFO commandstats` reply. A script's
 * `usec` includes the commands it calls (which commandstats also lists on their own), so callers
 * name only the commands they sent. Throws when a command is missing (it was never called).
 */
export function commandMicros(info: string, commands: readonly string[]): number {
  let micros = 0;
  for (const command of commands) {
    const match = new RegExp(`^cmdstat_${command}:calls=\\d+,usec=(\\d+)`, 'm').exec(info);
    if (!match) throw new Error(`INFO commandstats lists no ${command}`);
    micros += Number(match[1]);
  }
  return micros;
}
