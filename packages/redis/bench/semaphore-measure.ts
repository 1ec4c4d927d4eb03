// What the semaphore benchmarks of @dlock/redis and @dlock/redlock share: the floor script, latency
// recording and the contention loop (measure.ts). Compiled with the redis bench (bench/tsconfig.json); the redlock
// bench imports the compiled module.
import { Latencies, contend } from './measure.js';

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

export { Latencies };

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
  return contend(acquirers, CONTENTION_MS, HOLD_MS);
}
