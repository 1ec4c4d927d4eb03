/**
 * How long a waiter keeps its place in line without another attempt (server-clock ms). A waiter
 * re-attempts at least every PLACE_REFRESH_MS, so a live waiter never loses its place; a crashed one
 * holds up the line for at most this long.
 */
export const PLACE_MS = 2_000;
/** A waiter re-attempts (refreshing its place) at least this often, whatever else wakes it. */
export const PLACE_REFRESH_MS = PLACE_MS / 2;

/**
 * The server-side waiting line shared by the lock, semaphore and read-write scripts (one copy of the
 * queue logic): Lua text that a script puts before its own body. It works on three keys, always
 * KEYS[1..3]: a state hash (owner → entry, plus `.seq`, the arrival counter), an expiry sorted set
 * (owner → expiry in server-clock ms, holders and waiters alike) and a queue sorted set (waiting owner
 * → arrival number, FIFO order). Every time is the server's clock (TIME), never a client's: an entry
 * whose expiry has passed is reclaimed inside the next script that touches the line, so a crashed
 * waiter's place (and, for permits, a crashed holder's permits) goes by the server's clock alone.
 *
 * Entries: `h:<permits>:<token>:<identity>` for a permit holder, `w:<permits>` for a permit waiter,
 * `w:<permits>:<wake-up channel>` for a lock waiter (the channel its admit notice goes to).
 */
export const QUEUE_PRELUDE: string = `
local function server_time_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function ms(n) return string.format('%.0f', n) end
-- Ends every entry whose expiry has passed (a lapsed holder's permits return, a silent waiter's place
-- goes). Returns true when permits came back.
local function reclaim(now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ms(now))
  if #expired == 0 then return false end
  local freed = false
  for _, owner in ipairs(expired) do
    local entry = redis.call('HGET', KEYS[1], owner)
    if entry then
      if string.sub(entry, 1, 1) == 'h' then
        redis.call('HINCRBY', KEYS[1], '.held', -tonumber(string.match(entry, '^h:(%d+)')))
        freed = true
      end
      redis.call('HDEL', KEYS[1], owner)
    end
    redis.call('ZREM', KEYS[3], owner)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ms(now))
  return freed
end
-- Deletes the line's keys once nobody holds or waits; otherwise keeps them as long as the latest
-- entry, so the state of a name whose every client crashed goes away by itself.
local function settle(now)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', KEYS[1], KEYS[3])
    return
  end
  local keep = ms(math.max(1, tonumber(last[2]) - now))
  redis.call('PEXPIRE', KEYS[1], keep)
  redis.call('PEXPIRE', KEYS[2], keep)
  redis.call('PEXPIRE', KEYS[3], keep)
end
-- This owner's rank in line (0: the head), joining at the back when it is not in line yet.
local function enqueue(owner)
  local rank = redis.call('ZRANK', KEYS[3], owner)
  if rank then return rank end
  redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], '.seq', 1), owner)
  return redis.call('ZCARD', KEYS[3]) - 1
end
-- Writes a waiter's entry and keeps its place for place_ms more (server clock).
local function keep_place(owner, entry, now, place_ms)
  redis.call('HSET', KEYS[1], owner, entry)
  redis.call('ZADD', KEYS[2], ms(now + place_ms), owner)
  settle(now)
end
-- Takes an owner out of the line (a waiter granted, withdrawn, or released). True when it was there.
local function dequeue(owner)
  if redis.call('HDEL', KEYS[1], owner) == 0 then return false end
  redis.call('ZREM', KEYS[2], owner)
  redis.call('ZREM', KEYS[3], owner)
  return true
end
`;
