import { LockError } from '@dlock/core';

/** What was found at a Redis key that cannot be a lock. */
export interface KeyConflictFound {
  /** The Redis type (`string`, `hash`, `list`, ...). */
  readonly type: string;
  /** Its remaining time to live in ms; -1 when it has no expiry. */
  readonly ttlMs: number;
  /** The first 64 bytes of a string value ('' for other types). */
  readonly preview: string;
}

/**
 * A lock's Redis key (or its fencing counter) holds application data: a key with no expiry, another
 * type, or a value no lock writes (dlock's `dlock1:…` or `redlock`'s 32 hex digits). Such a key never
 * frees up the way a lock does, so waiting for it would last until the application deletes it
 * (issue 12 #9: `SET orders:1 '{"x":1}'`, then `acquire('orders:1')` waited forever). Thrown at once by
 * `acquire`, `tryAcquire` and `holder`, never retried. A `keyPrefix` (default `'dlock:'`) keeps locks
 * and application data apart.
 *
 * Its code is INVALID_ARGUMENT (the key cannot be used as a lock name here) until core has a code of its own for it.
 */
export class KeyConflictError extends LockError {
  /** The lock key as the caller gave it. */
  readonly key: string;
  /** The Redis key holding the data: the lock key with its prefix, or the key's fencing counter. */
  readonly redisKey: string;
  readonly found: KeyConflictFound;

  constructor(key: string, redisKey: string, found: KeyConflictFound) {
    const ttl = found.ttlMs < 0 ? 'no expiry' : `ttl ${found.ttlMs} ms`;
    const value = found.type === 'string' ? `, value ${JSON.stringify(found.preview)}` : '';
    super(
      'INVALID_ARGUMENT',
      `lock "${key}" cannot use Redis key "${redisKey}": it holds data that is not a lock (a ${found.type} with ${ttl}${value}). ` +
        'A lock key must be absent or hold a dlock or redlock lock value with an expiry; ' +
        'use a keyPrefix (default "dlock:") so locks never share keys with application data',
    );
    this.key = key;
    this.redisKey = redisKey;
    this.found = found;
  }
}
