import { randomBytes } from 'node:crypto';

/**
 * The two scripts dlock runs on each node, and the owner value they compare. The key layout and the
 * value format are those of the `redlock` library (redlock 5.0.0-beta.2: one string key per lock, a
 * random value, a `PX` ttl), so dlock and plain `redlock` clients exclude each other on the same key.
 *
 * Both are sent with EVAL, never EVALSHA: after a NOSCRIPT reply (a restart, a failover or `SCRIPT
 * FLUSH` emptied the script cache) a client re-sends the script's text behind whatever was queued on
 * that connection in the meantime, so an extension's re-send could land after the release that
 * followed it and re-create a released lock. EVAL keeps every node's commands in the order they were
 * sent; the scripts are a few hundred bytes.
 */

/**
 * Claim the key for an owner value: refresh its ttl when it already holds that value; when it is
 * absent, create it if ARGV[3] is "1"; refuse when it holds anything else. Returns 1 (refreshed),
 * 2 (created), 0 (refused: another owner's lock), -1 (absent, not created) or -2 (refused: the key
 * holds data that no RedLock client writes, a value of another type or a string without expiry — an
 * application's key that collides with the lock name). Nothing is ever overwritten. Three purposes:
 * - acquire (create): a request re-sent with the owner value of an earlier attempt whose reply was lost
 *   adopts what that attempt took (refresh), instead of being refused by its own lock;
 * - extend (do not create): a node that answers -1 lost the key (restarted without persistence,
 *   FLUSHALL) or never had it;
 * - repair (create): once an extension has confirmed that a majority still holds the lease, the nodes
 *   that lost the key get it back (dlock issue 12 #7). A lease that a majority has forgotten is
 *   reported lost instead, never silently re-taken.
 */
export const CLAIM_SCRIPT = `
  local current = redis.pcall("get", KEYS[1])
  if type(current) == "table" then return -2 end
  if current == ARGV[1] then
    redis.call("pexpire", KEYS[1], ARGV[2])
    return 1
  end
  if current then
    if redis.call("pttl", KEYS[1]) == -1 then return -2 end
    return 0
  end
  if ARGV[3] ~= "1" then return -1 end
  redis.call("set", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 2
`;

/** CLAIM_SCRIPT's third argument: create the key when it is absent, or only report it. */
export const CREATE = '1';
export const ONLY_REFRESH = '0';

/** CLAIM_SCRIPT's answer for a node that does not have the key (when not creating it). */
export const ABSENT = -1;

/** CLAIM_SCRIPT's answer for a key that holds application data, not a lock. */
export const NOT_A_LOCK = -2;

/**
 * Delete the key if it holds the owner value, and tell waiters subscribed on this node. Returns 1 when
 * it deleted the key, 0 when the key held something else (already gone, expired, taken over).
 */
export const RELEASE_SCRIPT = `
  local current = redis.pcall("get", KEYS[1])
  if current ~= ARGV[1] then return 0 end
  redis.call("del", KEYS[1])
  redis.call("publish", KEYS[1] .. ":released", "")
  return 1
`;

/**
 * Read the key for holder(): {1, value} for a lock value, {0} when absent, {-2, what} for data that no
 * RedLock client writes (another type, or a string without expiry).
 */
export const READ_SCRIPT = `
  local kind = redis.call("type", KEYS[1])["ok"]
  if kind == "none" then return {0} end
  if kind ~= "string" then return {-2, "a " .. kind} end
  if redis.call("pttl", KEYS[1]) == -1 then return {-2, "a string without expiry"} end
  return {1, redis.call("get", KEYS[1])}
`;

/** Where the release script announces a release: the lock key plus this suffix, on each node. */
export const releaseChannel = (lockKey: string): string => `${lockKey}:released`;

const OWNER_VALUE = /^[0-9a-f]{32}:/;

/**
 * The value stored at the lock key: 32 random hex digits (the `redlock` library's own format, the
 * secret that extend and release compare) followed by `:` and the holder's identity, so `holder()` can
 * name it from the one key every node already stores. Random per request, so adopting a key that holds
 * it can only adopt what this same request took.
 */
export function newOwnerValue(identity: string): string {
  return `${randomBytes(16).toString('hex')}:${identity}`;
}

/** The identity inside a dlock owner value; a value written by plain redlock is its own identity. */
export function identityOf(value: string): string {
  return OWNER_VALUE.test(value) ? value.slice(33) : value;
}
