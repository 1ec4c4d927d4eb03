import { KeyConflictError } from '@dlock/core';

/** What was found at a Redis key that cannot be a lock (KeyConflictError's `found` from this backend). */
export interface KeyConflictFound {
  /** The Redis type (`string`, `hash`, `list`, ...). */
  readonly type: string;
  /** Its remaining time to live in ms; -1 when it has no expiry. */
  readonly ttlMs: number;
  /** The first 64 bytes of a string value ('' for other types). */
  readonly preview: string;
}

/**
 * The error for a lock's Redis key (or its fencing counter) that holds application data: a key with no
 * expiry, another type, or a value no lock writes (dlock's `dlock1:…` or `redlock`'s 32 hex digits).
 * Thrown at once by `acquire`, `tryAcquire` and `holder`, never retried. A `keyPrefix` (default
 * `'dlock:'`) keeps locks and application data apart.
 */
export function keyConflict(
  key: string,
  redisKey: string,
  found: KeyConflictFound,
): KeyConflictError<KeyConflictFound> {
  const ttl = found.ttlMs < 0 ? 'no expiry' : `ttl ${found.ttlMs} ms`;
  const value = found.type === 'string' ? `, value ${JSON.stringify(found.preview)}` : '';
  return new KeyConflictError(
    key,
    redisKey,
    found,
    `Redis key "${redisKey}" holds data that is not a lock (a ${found.type} with ${ttl}${value}). ` +
      'A lock key must be absent or hold a dlock or redlock lock value with an expiry; ' +
      'use a keyPrefix (default "dlock:") so locks never share keys with application data',
  );
}
