--[[
  Acknowledges persisted frames, lowers the backlog by the logs they held,
  and trims the stream below the oldest entry the group still needs: never
  an unacknowledged one, and in bulk, once per batch. Entries added within
  the resume window (by Redis TIME) stay even when persisted, so a live
  tail that reconnects can read on from where it was.

  KEYS[1] stream
  KEYS[2] backlog counter
  ARGV[1] consumer group
  ARGV[2] resume window, in ms (0: trim everything persisted)
  ARGV[3..] pairs: entry ID, number of logs in it

  Returns { frames acknowledged, logs acknowledged, entries trimmed }.
  Frames already acknowledged (by another persister) count for nothing.
]]
local acked, logs = 0, 0
for i = 3, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    acked = acked + 1
    logs = logs + tonumber(ARGV[i + 1])
  end
end
if logs > 0 then
  redis.call('DECRBY', KEYS[2], logs)
end

-- Everything below the oldest pending entry, or, with nothing pending, up to
-- and including the last delivered one, has been persisted.
local minid
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then
  minid = pending[2]
else
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, last
    for j = 1, #group, 2 do
      if group[j] == 'name' then name = group[j + 1] end
      if group[j] == 'last-delivered-id' then last = group[j + 1] end
    end
    if name == ARGV[1] then
      local ms, seq = string.match(last, '^(%d+)-(%d+)$')
      minid = ms .. '-' .. (tonumber(seq) + 1)
    end
  end
end
-- Entry IDs start with the milliseconds of Redis TIME when added: nothing
-- at or after (now - window) is trimmed.
local window = tonumber(ARGV[2])
if minid and window > 0 then
  local now = redis.call('TIME')
  local keep = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - window
  local ms = tonumber(string.match(minid, '^(%d+)-'))
  if ms >= keep then minid = string.format('%d-0', keep) end
end
local trimmed = 0
if minid then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
end
return { acked, logs, trimmed }
