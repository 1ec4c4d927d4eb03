import { QUEUE_PRELUDE } from './queue-lua.js';
import { lua } from './scripts.js';

/*
 * The scripts behind semaphores and read-write locks (one per operation, one round trip each), over
 * the keys of permit-layout.ts. KEYS are always: 1 state hash, 2 expiry sorted set, 3 queue sorted
 * set, 4 fencing counter. Every time is the server's clock (TIME), never a client's: an entry whose
 * expiry has passed is reclaimed inside the next script that touches the name, so a crashed holder's
 * permits come back, and a crashed waiter's place in line goes, by the server's clock alone.
 *
 * The admission rule (FIFO without barging, as in redis-semaphore's and Curator's semaphores): a
 * request is granted when the permits held, plus the permits of every live waiter ahead of it in the
 * queue, plus its own fit the limit. Nobody overtakes a waiter whose permits do not fit; waiters
 * ahead that would fit too are not held up by it (they are granted at their next attempt).
 */
const PRELUDE = `${QUEUE_PRELUDE}
-- Wakes only the waiters at the head of the queue whose permits now fit (they may go; the rest sleep
-- on: no herd). Each waiter takes at least one permit, so at most 'free' of them can fit.
local function admit(channel)
  local free = tonumber(redis.call('HGET', KEYS[1], '.limit') or '0')
    - tonumber(redis.call('HGET', KEYS[1], '.held') or '0')
  if free <= 0 then return end
  local owners = {}
  for _, owner in ipairs(redis.call('ZRANGE', KEYS[3], 0, math.min(free, 1000) - 1)) do
    local waiting = redis.call('HGET', KEYS[1], owner)
    local permits = waiting and tonumber(string.match(waiting, '^w:(%d+)')) or 0
    if permits > free then break end
    free = free - permits
    owners[#owners + 1] = owner
  end
  if #owners > 0 then redis.call('PUBLISH', channel, 'admit:' .. table.concat(owners, ',')) end
end
`;

/**
 * ARGV: 1 owner, 2 permits, 3 limit, 4 ttl ms, 5 place ms (how long a waiter keeps its place without
 * another attempt; 0: do not queue, and ignore the queue), 6 identity, 7 wake-up channel, 8 '1' to hand
 * out a fencing token (token = max(counter + 1, server time in µs), as for locks) or '0' for token 0.
 *
 * Returns {1, token} granted (also when this owner already holds: an earlier attempt whose reply was
 * lost is adopted, its ttl counted from now); {0, ms} busy, ms until the earliest other entry expires
 * (-1: none); {-1, stored limit} when the name is in use with another limit.
 */
export const permitAcquireScript = lua(`${PRELUDE}
local now_us = server_time_us()
local now = math.floor(now_us / 1000)
reclaim(now)
local owner = ARGV[1]
local permits = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local place_ms = tonumber(ARGV[5])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
end
local entry = redis.call('HGET', KEYS[1], owner)
if entry and string.sub(entry, 1, 1) == 'h' then
  redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[4])), owner)
  settle(now)
  return {1, string.match(entry, '^h:%d+:(%d+):')}
end
local stored = redis.call('HGET', KEYS[1], '.limit')
if stored and tonumber(stored) ~= limit then
  return {-1, tonumber(stored)}
end
local held = tonumber(redis.call('HGET', KEYS[1], '.held') or '0')
local ahead = 0
if place_ms > 0 then
  local rank = enqueue(owner)
  if rank > 0 then
    for _, before in ipairs(redis.call('ZRANGE', KEYS[3], 0, rank - 1)) do
      local waiting = redis.call('HGET', KEYS[1], before)
      if waiting then ahead = ahead + tonumber(string.match(waiting, '^w:(%d+)')) end
    end
  end
end
if held + ahead + permits <= limit then
  local token = '0'
  if ARGV[8] == '1' then
    token = ms(math.max((tonumber(redis.call('GET', KEYS[4])) or 0) + 1, now_us))
    redis.call('SET', KEYS[4], token)
  end
  redis.call('ZREM', KEYS[3], owner)
  redis.call('HSET', KEYS[1], owner, 'h:' .. ARGV[2] .. ':' .. token .. ':' .. ARGV[6], '.limit', ARGV[3])
  held = redis.call('HINCRBY', KEYS[1], '.held', permits)
  redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[4])), owner)
  settle(now)
  -- Waiters behind may fit too: let them try now rather than at their next re-check.
  if held < limit and redis.call('ZCARD', KEYS[3]) > 0 then admit(ARGV[7]) end
  return {1, token}
end
if place_ms > 0 then
  redis.call('HSET', KEYS[1], '.limit', ARGV[3])
  keep_place(owner, 'w:' .. ARGV[2], now, place_ms)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 1, 'WITHSCORES')
for i = 1, #first, 2 do
  if first[i] ~= owner then return {0, tonumber(first[i + 1]) - now} end
end
return {0, -1}
`);

/**
 * ARGV: 1 owner, 2 ttl ms. Returns 1 extended; 0 when this owner holds nothing (its entry expired by
 * the server's clock, was reclaimed, or was deleted).
 */
export const permitExtendScript = lua(`${PRELUDE}
local now = math.floor(server_time_us() / 1000)
local entry = redis.call('HGET', KEYS[1], ARGV[1])
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if entry and string.sub(entry, 1, 1) == 'h' and expiry and tonumber(expiry) > now then
  redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[2])), ARGV[1])
  settle(now)
  return 1
end
return 0
`);

/**
 * Release a holder, give up a place in line, or undo a grant whose reply was lost: all by owner, so it
 * is idempotent. ARGV: 1 owner, 2 wake-up channel, 3 '0' to publish nothing (else '1'). With a queue, publishes `admit:<owner>,...` naming
 * the waiters at its head that now fit; without one (RedLock nodes keep none, so the script cannot
 * tell who waits) publishes `released` when permits came free, which wakes every waiter. Returns 1 when the owner had an entry, 0 otherwise.
 */
export const permitLeaveScript = lua(`${PRELUDE}
local now = math.floor(server_time_us() / 1000)
local changed = reclaim(now)
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  if string.sub(entry, 1, 1) == 'h' then
    redis.call('HINCRBY', KEYS[1], '.held', -tonumber(string.match(entry, '^h:(%d+)')))
  end
  dequeue(ARGV[1])
  changed = true
end
settle(now)
if ARGV[3] == '0' then
  -- The undo of a failed RedLock quorum: its contenders retry by themselves, and a notice would only
  -- send every waiter into the same race again.
elseif redis.call('ZCARD', KEYS[3]) > 0 then
  admit(ARGV[2])
elseif changed then
  redis.call('PUBLISH', ARGV[2], 'released')
end
if entry then return 1 end
return 0
`);

/**
 * Read-only. Returns the stored limit ('0' when none), then the live holders: limit, owner, entry,
 * owner, entry, ...
 */
export const permitHoldersScript = lua(`
local t = redis.call('TIME')
local now = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local out = {redis.call('HGET', KEYS[1], '.limit') or '0'}
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%.0f', now), '+inf')) do
  local entry = redis.call('HGET', KEYS[1], owner)
  if entry and string.sub(entry, 1, 1) == 'h' then
    out[#out + 1] = owner
    out[#out + 1] = entry
  end
end
return out
`);
