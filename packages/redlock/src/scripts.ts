import { randomBytes } from 'node:crypto';
import { PLACE_MS, QUEUE_PRELUDE } from '@dlock/redis/primitives';

/**
 * The scripts dlock runs on each node, and the owner value they compare. The key layout and the
 * value format are those of the `redlock` library (redlock 5.0.0-beta.2: one string key per lock, a
 * random value, a `PX` ttl), so dlock and plain `redlock` clients exclude each other on the same key.
 *
 * All are sent with EVAL, never EVALSHA: after a NOSCRIPT reply (a restart, a failover or `SCRIPT
 * FLUSH` emptied the script cache) a client re-sends the script's text behind whatever was queued on
 * that connection in the meantime, so an extension's re-send could land after the release that
 * followed it and re-create a released lock. EVAL keeps every node's commands in the order they were
 * sent. The scripts without the line are a few hundred bytes; the line's (about 3 KB with
 * QUEUE_PRELUDE) are sent only to a node that has a line for the key (issue 13).
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
 * The waiting line beside a lock key on each node (issue 13: no thundering herd): the three keys of
 * @dlock/redis's line (queue-lua.ts: a state hash, an expiry sorted set, a queue sorted set) and the
 * hand-off reservation, named after the lock key, then the lock key itself. Reserved: a lock whose key
 * ends with these suffixes would collide with them (RedlockDriver.validateKey).
 */
export const lineKeys = (lockKey: string): [string, string, string, string, string] => {
  const line = `${lockKey}:lock-queue`;
  return [line, `${line}:expiry`, `${line}:queue`, lockKey, `${line}:handoff`];
};

/**
 * The keys the short scripts need (ACQUIRE_FAST_SCRIPT, RELEASE_FAST_SCRIPT): the lock key and its
 * line's queue, all the uncontended path sends. A reservation exists only while its head has a place,
 * which keeps the queue key alive at least as long (a head admitted with less than HANDOFF_MS of its
 * place left is the exception: then the short script may grant the free key to someone else, which
 * costs that head its hand-off, never exclusion).
 */
export const fastKeys = (lockKey: string): [string, string] => [lockKey, `${lockKey}:lock-queue:queue`];

/**
 * How long a node keeps a freed key for the waiter it has just admitted (server-clock ms): enough for
 * the admit notice to reach that waiter's provider and its claim to come back on a busy machine, short
 * enough that a head that died or hangs costs one such window per release. After it, the key is anyone's
 * again: the reservation only ever refuses, never grants, so it cannot break exclusion, and since it
 * always lapses by the server's clock it cannot keep a key from every client.
 */
export const HANDOFF_MS = 100;

/** ACQUIRE_SCRIPT's answer when the key is free but this node keeps it for the waiter it admitted. */
export const BEHIND = -3;

/**
 * ACQUIRE_SCRIPT's answer to the head of this node's line when the key is held by a value that no dlock
 * client writes (a `redlock` library client, which ignores the line): its release admits nobody, so
 * the head re-attempts soon instead of at its next place refresh (issue 13, starvation by such clients).
 */
export const FOREIGN_HOLDER = -5;

/**
 * The answer of the short scripts (ACQUIRE_FAST_SCRIPT, RELEASE_FAST_SCRIPT) when the node has a
 * waiting line or a reservation for the key, or a waiting request finds the key taken: they wrote
 * nothing, and the caller sends the full script (with the line's Lua) to that node.
 */
export const NEEDS_LINE = -4;

/**
 * The acquire script without the line, for the common case, sent first: the full scripts carry the
 * line's Lua (about 3 KB, which EVAL hashes and the client sends on every call, 1.3× the script cost
 * of an uncontended acquire+release when measured), so an uncontended request costs what it did
 * before the line. KEYS: `fastKeys` (lock key, queue); ARGV: ACQUIRE_SCRIPT's first three. Returns 2 (created), 1 (refreshed), 0
 * (another owner's lock, for a single try), -2 (not a lock), or NEEDS_LINE — before any write — when
 * the node has a line for the key, or a waiting request finds the key taken.
 */
export const ACQUIRE_FAST_SCRIPT = `
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'table' then return -2 end
if redis.call('EXISTS', KEYS[2]) == 1 then return ${NEEDS_LINE} end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if current then
  if redis.call('PTTL', KEYS[1]) == -1 then return -2 end
  if ARGV[3] ~= '' then return ${NEEDS_LINE} end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
`;

/**
 * The release script without the line (see ACQUIRE_FAST_SCRIPT), sent first: compare-owner delete and
 * a notice on the key's release channel (for waiters of dlock versions before the line) when the node
 * has no line for the key; NEEDS_LINE, before any write, when it has one (the caller then sends
 * RELEASE_SCRIPT, which admits the head). KEYS: `fastKeys`; ARGV: owner value.
 */
export const RELEASE_FAST_SCRIPT = `
if redis.call('EXISTS', KEYS[2]) == 1 then return ${NEEDS_LINE} end
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
`;

/**
 * A RedLock attempt on one node, with the waiting line. KEYS: `lineKeys(lockKey)` (state, expiry,
 * queue, lock key, reservation). ARGV: 1 owner value, 2 ttl ms, 3 '1' for a waiting request or '' for
 * a single try (which never joins a line), 4 the provider's admit inbox (where the release script
 * wakes the request when it heads the line). Returns CLAIM_SCRIPT's answers (2 created, 1 refreshed:
 * a re-sent attempt adopts what an attempt with a lost reply took, 0 another owner's lock, -2 not a
 * lock), BEHIND or FOREIGN_HOLDER.
 *
 * A free key goes to whoever asks, unless the node keeps it for the waiter its last release admitted
 * (the reservation, HANDOFF_MS): then to that waiter only, and BEHIND to anyone else. A waiting request
 * joins this node's line at the back (the node's own arrival counter: no client clock orders it) or
 * keeps its place, for PLACE_MS of the node's clock after each attempt, whether this node grants it or
 * not: the lease's release takes the place out, and a give-back after a split vote (RELEASE_SCRIPT)
 * keeps it, so the request stays ahead of those who came later on every node it reached. The head
 * finding the key held by a value no dlock client writes gets FOREIGN_HOLDER instead of 0.
 *
 * Safety does not rest on the line: the lock key is still taken only when absent (SET NX semantics by
 * owner value) and deleted only by its owner. The line decides only who is woken, and a reservation
 * can only refuse, for HANDOFF_MS at most. Lines of different nodes can disagree on their order (two
 * requests arriving at once), which costs a split vote and RedLock's random retry, never exclusion or
 * more than one hand-off window.
 */
export const ACQUIRE_SCRIPT = `${QUEUE_PRELUDE}
local DLOCK_VALUE = '^' .. string.rep('%x', 32) .. ':'
local current = redis.pcall('GET', KEYS[4])
if type(current) == 'table' then return -2 end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[4], ARGV[2])
  return 1
end
if current and redis.call('PTTL', KEYS[4]) == -1 then return -2 end
local reserved = redis.call('GET', KEYS[5])
local free = not current and (not reserved or reserved == ARGV[1])
if ARGV[3] ~= '' then
  local now = math.floor(server_time_us() / 1000)
  reclaim(now)
  enqueue(ARGV[1])
  keep_place(ARGV[1], 'w:1:' .. ARGV[4], now, ${PLACE_MS})
elseif not free then
  if current then return 0 end
  return ${BEHIND}
end
if free then
  if reserved then redis.call('DEL', KEYS[5]) end
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
  return 2
end
if not current then return ${BEHIND} end
if not string.find(current, DLOCK_VALUE) and redis.call('ZRANGE', KEYS[3], 0, 0)[1] == ARGV[1] then
  return ${FOREIGN_HOLDER}
end
return 0
`;

/**
 * Compare-owner delete, and the hand-off. KEYS: `lineKeys(lockKey)`. ARGV: 1 owner value, 2 '1' for
 * a give-back (a waiting request's attempt lost the vote and it tries again: it keeps its places), or
 * absent for a release or a withdrawal (the owner leaves this node's line, and drops a reservation
 * made for it). Deletes the key if it holds the owner value. Then, if the key is free and somebody
 * else heads the line, publishes `admit:<owner value>` on that head's inbox only (the others sleep
 * on) and, unless this is a give-back, keeps the key for it for HANDOFF_MS (the reservation; a
 * give-back reserves nothing, so that two heads of disagreeing lines retry on equal terms instead of
 * refusing each other). With no line, a deleted key gets a notice on the key's release channel.
 * Returns 1 when it deleted the key, 0 when the key held something else (already gone, expired,
 * taken over). Idempotent.
 */
export const RELEASE_SCRIPT = `${QUEUE_PRELUDE}
local current = redis.pcall('GET', KEYS[4])
local deleted = current == ARGV[1]
if deleted then redis.call('DEL', KEYS[4]) end
if redis.call('EXISTS', KEYS[3]) == 0 then
  if not deleted then return 0 end
  redis.call('PUBLISH', KEYS[4] .. ':released', '')
  return 1
end
local giveBack = ARGV[2] == '1'
local now = math.floor(server_time_us() / 1000)
reclaim(now)
if not giveBack then
  dequeue(ARGV[1])
  if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
end
settle(now)
if deleted or not current then
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  local entry = head and head ~= ARGV[1] and redis.call('HGET', KEYS[1], head)
  if entry then
    if not giveBack then redis.call('SET', KEYS[5], head, 'NX', 'PX', ${HANDOFF_MS}) end
    redis.call('PUBLISH', string.sub(entry, 5), 'admit:' .. head)
  end
end
if deleted then return 1 end
return 0
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
