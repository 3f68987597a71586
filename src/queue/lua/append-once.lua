--[[
  Appends one frame like append.lua, for a source that numbers its entries
  and resends after a failure (systemd-journal-upload: __SEQNUM within a
  __SEQNUM_ID). The frame holds, per source, entries numbered first..last;
  the highest number stored per source is kept in a hash, set together with
  the append, so an entry resent after a lost answer is never stored twice.

  KEYS[1] stream
  KEYS[2] backlog counter
  KEYS[3] hash: source -> highest number stored
  ARGV[1] backlog limit, in logs
  ARGV[2] number of logs in the frame
  ARGV[3] frame rows (COPY text)
  ARGV[4] frame summary (JSON, see src/queue/frame.ts)
  ARGV[5..] triples: source, first number, last number (decimal)

  Returns the new entry's ID.
  Errors: "LOGDBACKLOG <backlog>" when the backlog is at or over the limit;
  "LOGDSTALE <source> <stored>" when a source's first number is not above
  the one stored (nothing is appended: the caller drops what is stored and
  retries).
]]
local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
if backlog >= tonumber(ARGV[1]) then
  return redis.error_reply('LOGDBACKLOG ' .. backlog)
end
for i = 5, #ARGV, 3 do
  local stored = redis.call('HGET', KEYS[3], ARGV[i])
  if stored and tonumber(stored) >= tonumber(ARGV[i + 1]) then
    return redis.error_reply('LOGDSTALE ' .. ARGV[i] .. ' ' .. stored)
  end
end
local id = redis.call('XADD', KEYS[1], '*', 'v', '1', 'n', ARGV[2], 'r', ARGV[3], 's', ARGV[4])
redis.call('INCRBY', KEYS[2], ARGV[2])
for i = 5, #ARGV, 3 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
end
return id
