--[[
  Moves a stream entry that cannot be persisted to the dead-letter stream,
  with the reason, then acknowledges it and lowers the backlog by its logs:
  visible, counted, never silently dropped.

  KEYS[1] stream
  KEYS[2] backlog counter
  KEYS[3] dead-letter stream
  ARGV[1] consumer group
  ARGV[2] entry ID
  ARGV[3] logs in the entry (0 when it is not a frame)
  ARGV[4] the error
  ARGV[5..] the entry's fields, as they were

  Returns the dead-letter entry's ID, or false when the entry is no longer
  pending (another persister already settled it).
]]
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return false
end
local fields = { 'entry', ARGV[2], 'error', ARGV[4], 'failed_at', tostring(redis.call('TIME')[1]) }
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('DECRBY', KEYS[2], ARGV[3])
end
return id
