--[[
  Appends one output chunk to a session's replay log and publishes it live, in
  one atomic step, so a chunk is either in the log before any reader looks or
  reaches subscribers after it: readers never miss a byte between the two.
  Workers send it on a connection with replies off (redis-writer.ts): it must
  not fail for any reason but a lost connection.

  KEYS[1] log stream (entry id "<startOffset>-1", field "p" = payload)
  KEYS[2] live output channel
  ARGV[1] start offset of the chunk (decimal string)
  ARGV[2] payload: 9-byte header ("d" + uint64 BE offset) + chunk bytes
  ARGV[3] lowest offset to keep (end - replay window); older entries are trimmed
          by the same XADD (exact MINID trimming)
  ARGV[4] log TTL in ms (the log of an abandoned session disappears by itself)

  An entry at or below the newest id is already in the log (a command resent
  after a reconnect, or a worker re-seeding the log after a Redis restart): the
  XADD error is ignored and the chunk is published again, which readers drop by
  offset.
]]
redis.pcall('XADD', KEYS[1], 'MINID', ARGV[3] .. '-0', ARGV[1] .. '-1', 'p', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('PUBLISH', KEYS[2], ARGV[2])
