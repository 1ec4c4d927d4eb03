import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { PLACE_MS, QUEUE_PRELUDE } from './queue-lua.js';

/** A standalone, Sentinel-managed or Cluster ioredis client. */
export type RedisClient = Redis | Cluster;

export interface LuaScript {
  readonly source: string;
  readonly sha1: string;
}

export function lua(source: string): LuaScript {
  return { source, sha1: createHash('sha1').update(source).digest('hex') };
}

/**
 * Every compare-owner script matches the *owner prefix* `dlock1:<32 hex>:`: 128 random bits, chosen
 * once per acquire request and sent with each of its attempts, so a value written by an attempt whose
 * reply was lost is still recognised — adopted or deleted — by what was sent. `pcall`: a key that an
 * application overwrote with a hash is simply not ours, not a script error.
 */
const OWNER_RULE = `
local function owned_by(value, owner)
  return type(value) == 'string' and string.sub(value, 1, #owner) == owner
end
`;

/**
 * Shared by the acquire and holder scripts: what may sit at a lock key. A lock is a string with an
 * expiry whose value is a dlock value (`dlock1:<32 hex>:<token>:<identity>`), a `redlock` value (32
 * hex digits) or an `@dlock/redlock` value (32 hex digits, ':', identity). Anything else — a key with
 * no expiry, another type (GET fails: `pcall`), another value — is application data that shares the
 * name (issue 12 #9): `not_a_lock` then returns `found`'s `{-1, key, type, pttl, first 64 bytes}`.
 */
const LOCK_VALUE_RULE = `
local hex32 = string.rep('[0-9a-f]', 32)
local function is_lock_value(value)
  return string.find(value, '^dlock1:' .. hex32 .. ':%d+:') ~= nil
    or string.find(value, '^' .. hex32 .. '$') ~= nil
    or string.find(value, '^' .. hex32 .. ':') ~= nil
end
local function found(key, value)
  local preview = ''
  if type(value) == 'string' then preview = string.sub(value, 1, 64) end
  return {-1, key, redis.call('TYPE', key).ok, redis.call('PTTL', key), preview}
end
local function not_a_lock(key, value, pttl)
  if type(value) == 'string' and pttl >= 0 and is_lock_value(value) then return nil end
  return found(key, value)
end
`;

/**
 * KEYS: the lock's `scriptKeys` (layout.ts): 1 line state hash, 2 line expiry set, 3 line queue set, 4
 * fencing counter, 5 lock key. ARGV: 1 owner prefix, 2 ttl ms, 3 value after the token, 4 the
 * waiter's wake-up channel (where its admit notice goes), or '' for a single try, which never joins
 * the line. A place in line lapses PLACE_MS (queue-lua.ts) after the attempt that last refreshed it.
 * Returns {1, token} when taken, {0, ms} when busy (the holder's pttl, or while the lock is free and an
 * earlier waiter is at the head of the line, the ms until that waiter's place lapses), or the
 * `not_a_lock` reply when the lock key (or the counter) holds application data.
 *
 * "Already mine" comes first: when the lock holds this request's owner prefix, an earlier attempt of
 * the same request took it and its reply was lost. The lock is adopted: its ttl is set anew and its
 * token returned, in this one round trip (Curator's protected-mode idea, issue 11 #1).
 *
 * The waiting line (issue 13: no thundering herd): a waiting request that finds the lock busy joins a
 * FIFO line beside the lock (queue-lua.ts, the semaphore's line), or refreshes its place there. A free
 * lock goes to the head of the line (after dropping places that lapsed by the server clock), or to
 * anyone when nobody waits; the release script wakes only the head. With nobody in line the script
 * touches no line key (one EXISTS), so an uncontended acquire costs what it did before.
 *
 * The token is max(counter + 1, server time in µs). While the node keeps its data that is at least the
 * counter plus one, so tokens grow strictly whatever the clock does. When the counter is lost (a restart
 * without persistence, a failover to a replica that never received it) the server clock still puts the
 * next token above every earlier one, unless that clock stepped back or the key averaged more than one
 * acquisition per µs. The arithmetic is exact: µs since 1970 fit in a double's 53 bits until 2255.
 *
 * Every check comes before the first write, so a script refused on its first write (READONLY after a
 * failover) has written nothing; the only writes before the lock's SET drop lapsed places in line,
 * which any later script would drop too.
 */
export const acquireScript = lua(`${OWNER_RULE}${LOCK_VALUE_RULE}
local place_ms = 0
if ARGV[4] ~= '' then place_ms = ${PLACE_MS} end
local value = redis.pcall('GET', KEYS[5])
local pttl, adopted, counter
if value then
  if owned_by(value, ARGV[1]) then
    redis.call('PEXPIRE', KEYS[5], ARGV[2])
    adopted = string.match(string.sub(value, #ARGV[1] + 1), '^%d+')
    if redis.call('EXISTS', KEYS[3]) == 0 then return {1, adopted} end
  else
    pttl = redis.call('PTTL', KEYS[5])
    local conflict = not_a_lock(KEYS[5], value, pttl)
    if conflict then return conflict end
    if place_ms == 0 then return {0, pttl} end
  end
else
  counter = redis.pcall('GET', KEYS[4])
  if counter and (type(counter) ~= 'string' or not string.find(counter, '^%d+$')) then
    return found(KEYS[4], counter)
  end
end
local now_us = redis.call('TIME')
now_us = tonumber(now_us[1]) * 1000000 + tonumber(now_us[2])
local function take()
  local token_text = string.format('%.0f', math.max((tonumber(counter) or 0) + 1, now_us))
  redis.call('SET', KEYS[4], token_text)
  redis.call('SET', KEYS[5], ARGV[1] .. token_text .. ARGV[3], 'PX', ARGV[2])
  return {1, token_text}
end
-- The fast path: a free lock and nobody in line (the line's functions are not even defined).
if not value and redis.call('EXISTS', KEYS[3]) == 0 then return take() end
${QUEUE_PRELUDE}
local now = math.floor(now_us / 1000)
if adopted then
  if dequeue(ARGV[1]) then settle(now) end
  return {1, adopted}
end
if value then
  enqueue(ARGV[1])
  keep_place(ARGV[1], 'w:1:' .. ARGV[4], now, place_ms)
  return {0, pttl}
end
reclaim(now)
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if head and head ~= ARGV[1] then
  if place_ms > 0 then
    enqueue(ARGV[1])
    keep_place(ARGV[1], 'w:1:' .. ARGV[4], now, place_ms)
  else
    settle(now)
  end
  return {0, math.max(0, tonumber(redis.call('ZSCORE', KEYS[2], head)) - now)}
end
dequeue(ARGV[1])
settle(now)
return take()
`);

/**
 * KEYS: lock key. Returns {0} when free, {1, value, pttl} when a lock holds it, or the `not_a_lock`
 * reply. A script rather than GET, so that holder() recognises application data by the same rules as
 * acquire; the pttl is what `inspect()` reports as the time left, read in the same step.
 */
export const holderScript = lua(`${LOCK_VALUE_RULE}
local value = redis.pcall('GET', KEYS[1])
if not value then return {0} end
local pttl = redis.call('PTTL', KEYS[1])
local conflict = not_a_lock(KEYS[1], value, pttl)
if conflict then return conflict end
return {1, value, pttl}
`);

/** KEYS: lock key. ARGV: owner prefix, ttl ms. Returns 1 extended, 0 no lock, -1 something else there. */
export const extendScript = lua(`${OWNER_RULE}
local value = redis.pcall('GET', KEYS[1])
if owned_by(value, ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if value then return -1 end
return 0
`);

/**
 * KEYS: the lock's `releaseKeys`: the line's three keys as for acquire, then the lock key (no
 * counter). ARGV: owner prefix, release channel. Deletes the lock
 * if this owner holds it and takes this owner out of the line; then, if the lock is free and somebody
 * waits, publishes `admit:<owner prefix>` to the head waiter's own channel only (the others sleep on),
 * and otherwise, when it deleted the lock, `released` on the key's release channel. Returns 1, or 0
 * when there was no lock of this owner's to delete. A release, the withdrawal of a waiter and the undo
 * of an attempt whose reply was lost all run it: idempotent, so core may send it again after a
 * transient failure.
 */
export const releaseScript = lua(`${OWNER_RULE}
local value = redis.pcall('GET', KEYS[4])
local deleted = owned_by(value, ARGV[1])
if deleted then redis.call('DEL', KEYS[4]) end
if redis.call('EXISTS', KEYS[3]) == 1 then
  ${QUEUE_PRELUDE}
  local now = math.floor(server_time_us() / 1000)
  reclaim(now)
  dequeue(ARGV[1])
  settle(now)
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head and (deleted or not value) then
    local entry = redis.call('HGET', KEYS[1], head)
    if entry then redis.call('PUBLISH', string.sub(entry, 5), 'admit:' .. head) end
    if deleted then return 1 end
    return 0
  end
end
if deleted then
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
`);

/**
 * EVALSHA, falling back to EVAL when the server does not have the script cached (first use, a restart,
 * SCRIPT FLUSH, a failover). The script is not registered on the client with defineCommand, because the
 * client may be the application's own.
 */
export async function runScript(
  client: RedisClient,
  script: LuaScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await client.evalsha(script.sha1, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return client.eval(script.source, keys.length, ...keys, ...args);
  }
}
