--[[
  Appends one frame (the accepted logs of one request) to the stream, unless
  the unpersisted backlog is over its limit. The backlog counter and the
  stream change together, atomically, so the counter never drifts from what
  the stream holds.

  KEYS[1] stream
  KEYS[2] backlog counter (logs appended and not yet acknowledged)
  ARGV[1] backlog limit, in logs
  ARGV[2] number of logs in the frame
  ARGV[3] frame rows (COPY text)
  ARGV[4] frame summary (JSON, see src/queue/frame.ts)

  Returns the new entry's ID.
  Errors: "LOGDBACKLOG <backlog>" when the backlog is at or over the limit.
]]
local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
if backlog >= tonumber(ARGV[1]) then
  return redis.error_reply('LOGDBACKLOG ' .. backlog)
end
local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'n', ARGV[2], 'r', ARGV[3], 's', ARGV[4])
redis.call('INCRBY', KEYS[2], ARGV[2])
return id
