import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

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
 * KEYS: lock key, fencing counter. ARGV: owner prefix, ttl ms, value after the token.
 * Returns {1, token} when taken, {0, pttl of the current holder} when busy, or the `not_a_lock` reply
 * when the lock key (or the counter) holds application data.
 *
 * "Already mine" comes first: when the lock holds this request's owner prefix, an earlier attempt of
 * the same request took it and its reply was lost. The lock is adopted: its ttl is set anew and its
 * token returned, in this one round trip (Curator's protected-mode idea, issue 11 #1).
 *
 * The token is max(counter + 1, server time in µs). While the node keeps its data that is at least the
 * counter plus one, so tokens grow strictly whatever the clock does. When the counter is lost (a restart
 * without persistence, a failover to a replica that never received it) the server clock still puts the
 * next token above every earlier one, unless that clock stepped back or the key averaged more than one
 * acquisition per µs. The arithmetic is exact: µs since 1970 fit in a double's 53 bits until 2255.
 *
 * Nothing is written before the first SET, and every check comes before it, so a script that fails
 * (OOM, READONLY after a failover: Redis refuses a script's first write) has written nothing.
 */
export const acquireScript = lua(`${OWNER_RULE}${LOCK_VALUE_RULE}
local value = redis.pcall('GET', KEYS[1])
if value then
  if owned_by(value, ARGV[1]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, string.match(string.sub(value, #ARGV[1] + 1), '^%d+')}
  end
  local pttl = redis.call('PTTL', KEYS[1])
  local conflict = not_a_lock(KEYS[1], value, pttl)
  if conflict then return conflict end
  return {0, pttl}
end
local counter = redis.pcall('GET', KEYS[2])
if counter and (type(counter) ~= 'string' or not string.find(counter, '^%d+$')) then
  return found(KEYS[2], counter)
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local token_text = string.format('%.0f', math.max((tonumber(counter) or 0) + 1, now_us))
redis.call('SET', KEYS[2], token_text)
redis.call('SET', KEYS[1], ARGV[1] .. token_text .. ARGV[3], 'PX', ARGV[2])
return {1, token_text}
`);

/**
 * KEYS: lock key. Returns {0} when free, {1, value} when a lock holds it, or the `not_a_lock` reply.
 * A script rather than GET, so that holder() recognises application data by the same rules as acquire.
 */
export const holderScript = lua(`${LOCK_VALUE_RULE}
local value = redis.pcall('GET', KEYS[1])
if not value then return {0} end
local conflict = not_a_lock(KEYS[1], value, redis.call('PTTL', KEYS[1]))
if conflict then return conflict end
return {1, value}
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
 * KEYS: lock key. ARGV: owner prefix, release channel. Deletes the lock if this owner holds it and
 * publishes the release notice; returns 1, or 0 when there was nothing of this owner's to delete.
 * Both a release and the withdrawal of an attempt whose reply was lost run it: idempotent, so core
 * may send it again after a transient failure.
 */
export const releaseScript = lua(`${OWNER_RULE}
if owned_by(redis.pcall('GET', KEYS[1]), ARGV[1]) then
  redis.call('DEL', KEYS[1])
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
