--[[
  Re-queues one dead-letter entry: appends its original frame to the stream
  (a new entry, so the persister sees it as new), raises the backlog, and
  deletes it from the dead-letter stream, atomically: an entry is never in
  both, nor in neither. The frame's summary (`s`) goes along when it has one.

  KEYS[1] stream
  KEYS[2] backlog counter
  KEYS[3] dead-letter stream
  ARGV[1] dead-letter entry ID

  Returns the new stream entry ID.
  Errors: "LOGDNOENTRY" when there is no such dead-letter entry,
          "LOGDNOTFRAME" when it does not hold a frame (nothing to re-queue).
]]
local found = redis.call('XRANGE', KEYS[3], ARGV[1], ARGV[1])
if #found == 0 then
  return redis.error_reply('LOGDNOENTRY')
end
local f = {}
local fields = found[1][2]
for i = 1, #fields, 2 do
  f[fields[i]] = fields[i + 1]
end
if f['v'] ~= '1' or not tonumber(f['n']) or not f['r'] then
  return redis.error_reply('LOGDNOTFRAME')
end
local frame = { 'v', f['v'], 'n', f['n'], 'r', f['r'] }
if f['s'] then
  frame[#frame + 1] = 's'
  frame[#frame + 1] = f['s']
end
local id = redis.call('XADD', KEYS[1], '*', unpack(frame))
redis.call('INCRBY', KEYS[2], f['n'])
redis.call('XDEL', KEYS[3], ARGV[1])
return id
