// The Lua scripts spillway runs in Redis.
//
// Private to spillway::redis (and its benchmark, which runs the GCRA once
// per write as the baseline). Both read Redis TIME, the server's clock; both
// touch only the one key they are given, so they run on Redis Cluster.
//
// Thread safety: constant data.

#ifndef SPILLWAY_LIB_REDIS_SCRIPTS_H_
#define SPILLWAY_LIB_REDIS_SCRIPTS_H_

namespace spillway::internal {

// The fleet budget as a GCRA (formula in spillway/redis/global_budget.h). Times
// are microseconds of the server's TIME; the state is the theoretical arrival
// time `tat`, kept as an integer string that expires when the bucket would
// be full again.
//   KEYS[1]  the budget's key
//   ARGV     rate (tokens/s), burst (tokens), want (tokens, >= 1)
//   returns  {granted, wait_us}: wait_us is the time until one more token
//            when granted < want, else 0.
inline constexpr char kGcraScript[] = R"lua(
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
if not rate or not burst or not want or rate <= 0 or burst < 1 or want < 1 then
  return redis.error_reply('ERR spillway budget: bad arguments')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tau = burst * interval
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = tonumber(stored)
  if not tat then
    return redis.error_reply('ERR spillway budget: key ' .. KEYS[1] ..
                             ' holds a non-numeric value')
  end
  if tat < now then tat = now end
end
local room = math.floor((now + tau - tat) / interval)
local grant = math.max(0, math.min(want, room))
if grant > 0 then
  tat = tat + grant * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
             math.ceil((tat - now) / 1000) + 1)
end
local wait = 0
if grant < want then
  wait = math.max(0, math.ceil(tat + interval - tau - now))
end
return {grant, wait}
)lua";

// One heartbeat, one round trip. Times are milliseconds of the server's
// TIME.
//   KEYS[1]  the fleet's hash: instance id -> "offered admitted expiry_ms"
//   ARGV     id, offered rate, admitted rate, ttl_ms
//   returns  {id, value, id, value, ...} of the live instances (this one
//            included); expired entries are deleted.
inline constexpr char kHeartbeatScript[] = R"lua(
local ttl = tonumber(ARGV[4])
if not ttl or ttl < 1 then
  return redis.error_reply('ERR spillway registry: bad ttl')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1],
           ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. string.format('%.0f', now + ttl))
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local expiry = tonumber(string.match(all[i + 1], '(%S+)$') or '')
  if expiry == nil or expiry < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return live
)lua";

}  // namespace spillway::internal

#endif  // SPILLWAY_LIB_REDIS_SCRIPTS_H_
