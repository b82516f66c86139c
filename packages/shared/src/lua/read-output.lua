--[[
  Reads a session's replay log from a byte offset.

  KEYS[1] log stream (entry format: appendChunk in output-log.ts)
  ARGV[1] from: first byte offset wanted (decimal string)
  ARGV[2] maxBytes: stop after at least this many payload bytes
  ARGV[3] maxEntries: stop after this many entries

  Returns { firstStart, lastEnd, payload1, payload2, ... } where firstStart is the
  start offset of the oldest entry still in the log and lastEnd the offset just
  past the newest (both -1 when the log is empty), and each
  payload is an entry as appended (header + bytes), in offset order, beginning
  with the entry that contains `from`.
]]
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then return { -1, -1 } end
local firstStart = tonumber(string.match(first[1][1], '^(%d+)'))
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastEnd = tonumber(string.match(last[1][1], '^(%d+)')) + #last[1][2][2] - 9
local out = { firstStart, lastEnd }
local from = tonumber(ARGV[1])
local maxBytes = tonumber(ARGV[2])
local maxEntries = tonumber(ARGV[3])
local total = 0
local n = 0
local prev = redis.call('XREVRANGE', KEYS[1], ARGV[1] .. '-1', '-', 'COUNT', 1)
if #prev > 0 then
  local s = tonumber(string.match(prev[1][1], '^(%d+)'))
  local p = prev[1][2][2]
  if s + #p - 9 > from then
    out[#out + 1] = p
    total = total + #p - 9
    n = n + 1
  end
end
if total < maxBytes and n < maxEntries then
  local rest = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-1', '+', 'COUNT', maxEntries - n)
  for _, e in ipairs(rest) do
    local p = e[2][2]
    out[#out + 1] = p
    total = total + #p - 9
    if total >= maxBytes then break end
  end
end
return out
