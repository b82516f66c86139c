--[[
  A sliding-window rate limit: at most ARGV[1] requests in any ARGV[2] milliseconds,
  on Redis' own clock (every API node counts against the same time, whatever its own).

  KEYS[1] the subject's log: a sorted set of accepted requests, scored by time (µs)
  ARGV[1] limit: requests allowed in a window
  ARGV[2] window in milliseconds
  ARGV[3] a member unique to this request

  Returns 0 when the request is accepted (and counted), else the milliseconds until
  the oldest counted request leaves the window. Refused requests are not counted.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
