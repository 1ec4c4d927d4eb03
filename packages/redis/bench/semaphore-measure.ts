// What the semaphore benchmarks of @dlock/redis and @dlock/redlock share: the floor script, latency
// recording and the contention loop. Compiled with the redis bench (bench/tsconfig.json); the redlock
// bench imports the compiled module.
import { setTimeout as sleep } from 'node:timers/promises';
import { type Histogram, build } from 'hdr-histogram-js';

export const HOLD_MS = 1;
export const CONTENTION_MS = 3_000;

/**
 * The floor: the least a server-clock semaphore can do in the same two round trips, acquire = one
 * script (drop expired entries by TIME, count, add), release = ZREM.
 */
export const FLOOR_ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0`;

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

export interface Contended {
  readonly acquisitions: number;
  readonly waits: Latencies;
  readonly mostInside: number;
}

/**
 * CONTENDERS loops acquire → hold HOLD_MS → release on one semaphore of LIMIT permits for
 * CONTENTION_MS; `waits` is how long each acquire took. `mostInside` checks the limit held.
 */
export async function contention(acquirers: Array<() => Promise<() => Promise<void>>>): Promise<Contended> {
  const waits = new Latencies();
  let acquisitions = 0;
  let inside = 0;
  let mostInside = 0;
  const deadline = performance.now() + CONTENTION_MS;
  await Promise.all(
    acquirers.map(async (acquire) => {
      while (performance.now() < deadline) {
        const started = performance.now();
        const release = await acquire();
        waits.add(performance.now() - started);
        inside++;
        mostInside = Math.max(mostInside, inside);
        acquisitions++;
        await sleep(HOLD_MS);
        inside--;
        await release();
      }
    }),
  );
  return { acquisitions, waits, mostInside };
}
