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
 * KEYS: lock key, fencing counter. ARGV: value before the token, ttl ms, value after the token.
 * Returns {1, token} when taken, {0, pttl of the current holder} when busy (-1: it has no expiry).
 *
 * The token is max(counter + 1, server time in µs). While the node keeps its data that is at least the
 * counter plus one, so tokens grow strictly whatever the clock does. When the counter is lost (a restart
 * without persistence, a failover to a replica that never received it) the server clock still puts the
 * next token above every earlier one, unless that clock stepped back or the key averaged more than one
 * acquisition per µs. The arithmetic is exact: µs since 1970 fit in a double's 53 bits until 2255.
 */
export const acquireScript = lua(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('PTTL', KEYS[1])}
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local token = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now_us)
local token_text = string.format('%.0f', token)
redis.call('SET', KEYS[2], token_text)
redis.call('SET', KEYS[1], ARGV[1] .. token_text .. ARGV[3], 'PX', ARGV[2])
return {1, token_text}
`);

/** KEYS: lock key. ARGV: owner's value, ttl ms. Returns 1 extended, 0 no lock, -1 another owner's lock. */
export const extendScript = lua(`
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if value then return -1 end
return 0
`);

/** KEYS: lock key. ARGV: owner's value, release channel. Returns 1 released, 0 not the owner. */
export const releaseScript = lua(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
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
