import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from '@dlock/core';

/**
 * Where one lock lives in Redis. The lock key is exactly `<keyPrefix><key>` so other Redis lock
 * libraries using the same key (redlock with no prefix, for one) exclude dlock and the other way round.
 */
export interface RedisKeyLayout {
  /** `<keyPrefix><key>`: holds the owner's value while locked, with a PX expiry; absent when free. */
  readonly lockKey: string;
  /** The fencing counter: the last token handed out for this key. Persists on purpose (see README). */
  readonly fenceKey: string;
  /** Published to by the release script (`released`) when nobody waits in line; kept for older clients. */
  readonly releaseChannel: string;
  /**
   * What the lock scripts take as KEYS: the waiting line's state hash, expiry and queue sorted sets
   * (`{T}L:lock-queue`, `…:expiry`, `…:queue`, laid out like a semaphore's: queue-lua.ts), the fencing
   * counter, the lock key.
   */
  readonly scriptKeys: readonly string[];
  /** What the release script takes as KEYS: the line's three keys, the lock key. */
  readonly releaseKeys: readonly string[];
}

/**
 * The default `keyPrefix`. Locks live in a namespace of their own, so a lock name can never land on an
 * application's key (issue 12 #9), and the lock keys, counters and channels can be found, scanned and
 * granted by ACL (`~dlock:*`) as one group. `keyPrefix: ''` is the `redlock` library's layout.
 */
export const DEFAULT_KEY_PREFIX = 'dlock:';

const FENCE_SUFFIX = ':fence';
/**
 * Endings of the counter, of the lock's waiting line and of the semaphore and read-write keys
 * (permit-layout.ts): no lock key may have them.
 */
const RESERVED_SUFFIX = /:(fence|(semaphore|rwlock|lock-queue)(:expiry|:queue)?)$/;
const RELEASE_CHANNEL_SUFFIX = ':released';
const VALUE_PATTERN = /^dlock1:([0-9a-f]{32}):(\d+):([\s\S]*)$/;

/**
 * The part of `key` Redis Cluster hashes: the text between the first `{` and the first `}` after it,
 * when that text is not empty; otherwise the whole key is hashed and there is no tag.
 */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/**
 * The counter must live in the lock key's Cluster slot, because one script touches both. A lock key
 * with a hash tag keeps its slot when a suffix is appended; a lock key without one is wrapped in braces
 * whole, so the tag is the entire lock key and hashes like it. (Wrapping only works when the lock key
 * has no `}`; `validateLockKey` rejects the rest on Cluster clients.)
 */
export function redisKeyLayout(key: string, keyPrefix: string): RedisKeyLayout {
  const lockKey = `${keyPrefix}${key}`;
  const fenceKey =
    hashTag(lockKey) === undefined ? `{${lockKey}}${FENCE_SUFFIX}` : `${lockKey}${FENCE_SUFFIX}`;
  const line = lineBase(lockKey, 'lock-queue');
  return {
    lockKey,
    fenceKey,
    releaseChannel: `${lockKey}${RELEASE_CHANNEL_SUFFIX}`,
    scriptKeys: [line, `${line}:expiry`, `${line}:queue`, fenceKey, lockKey],
    releaseKeys: [line, `${line}:expiry`, `${line}:queue`, lockKey],
  };
}

/**
 * The base of a waiting line's keys (a lock's, a semaphore's, a read-write lock's): `{T}L:<kind>`, with
 * L = keyPrefix + name and T = L's hash tag, or all of L when it has none, so every key of the line
 * hashes to L's Cluster slot (the one its fencing counter and lock key are in). `{T}L` rather than
 * `{L}` keeps names apart that `{L}` would merge (`x` and `{x}` both give `{x}`).
 */
export function lineBase(fullName: string, kind: string): string {
  return `{${hashTag(fullName) ?? fullName}}${fullName}:${kind}`;
}

/** Whether a Redis key is a counter, waiting-line, semaphore or read-write key rather than a lock key. */
export function isReservedKey(redisKey: string): boolean {
  return RESERVED_SUFFIX.test(redisKey);
}

/**
 * The layouts of recently used keys, so the hot path does not build the same three strings again per
 * attempt and release (cleared when it reaches its size: a bound, not an LRU).
 */
export class KeyLayouts {
  readonly #keyPrefix: string;
  readonly #layouts = new Map<string, RedisKeyLayout>();

  constructor(keyPrefix: string) {
    this.#keyPrefix = keyPrefix;
  }

  of(key: string): RedisKeyLayout {
    let layout = this.#layouts.get(key);
    if (!layout) {
      if (this.#layouts.size >= 1_024) this.#layouts.clear();
      layout = redisKeyLayout(key, this.#keyPrefix);
      this.#layouts.set(key, layout);
    }
    return layout;
  }
}

const OWNER_BYTES = 16;
/** CSPRNG output drawn 4 KiB at a time: one randomFillSync per 256 owner tokens, not one call each. */
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

/** 128 random bits as 32 hex digits: the owner token of a request (a lock value's, a permit's). */
export function newOwnerToken(): string {
  if (randomOffset + OWNER_BYTES > randomPool.length) {
    randomPool = randomFillSync(Buffer.allocUnsafe(256 * OWNER_BYTES));
    randomOffset = 0;
  }
  const token = randomPool.toString('hex', randomOffset, randomOffset + OWNER_BYTES);
  randomOffset += OWNER_BYTES;
  return token;
}

/**
 * Every fencing counter key ends with ':fence', and every waiting-line, semaphore or read-write key
 * with ':lock-queue', ':semaphore' or ':rwlock' (optionally followed by ':expiry' or ':queue'), so refusing names with those endings
 * keeps them apart: a lock can never be taken on (or deleted from under) a counter or a semaphore.
 */
export function validateLockKey(key: string, keyPrefix: string, cluster: boolean): void {
  const lockKey = `${keyPrefix}${key}`;
  if (RESERVED_SUFFIX.test(lockKey)) {
    throw new InvalidArgumentError(
      'key',
      key,
      "a key whose Redis key (keyPrefix + key) does not end with ':fence', ':lock-queue', ':semaphore', ':rwlock' or those plus ':expiry' / ':queue' (reserved for counters, waiting lines, semaphores and read-write locks)",
    );
  }
  if (cluster && hashTag(lockKey) === undefined && lockKey.includes('}')) {
    throw new InvalidArgumentError(
      'key',
      key,
      "on Redis Cluster, a key with a non-empty '{hash tag}' or with no '}' at all, so its fencing counter can share its slot",
    );
  }
}

/**
 * The value stored at the lock key is `head + fencing token + tail`: the random owner token first (what
 * compare-owner scripts match on, with the rest), then what `holder()` reports. The acquire script puts
 * the token in, since only the script knows it.
 */
export function lockValueParts(ownerToken: string, identity: string): { head: string; tail: string } {
  return { head: `dlock1:${ownerToken}:`, tail: `:${identity}` };
}

export interface DecodedLockValue {
  readonly fencingToken: bigint;
  readonly identity: string;
}

/** Undefined for a value dlock did not write (a redlock lock, for one). */
export function decodeLockValue(value: string): DecodedLockValue | undefined {
  const match = VALUE_PATTERN.exec(value);
  if (!match) return undefined;
  return { fencingToken: BigInt(match[2]!), identity: match[3]! };
}
