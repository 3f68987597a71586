--[[
  Marks cached answers stale once a batch is committed: sets the statistics
  version and the version of every device in the batch to a token never used
  before, so every cached value tagged with an earlier version misses.
  Version keys expire like every cache key, later than the values they guard
  (an absent version is the tag "", see src/cache/cache.ts).

  KEYS[1] statistics version (on a Redis Cluster, where the keys of one call
          share a slot, the first device version of the call)
  KEYS[2..] device versions
  ARGV[1] token
  ARGV[2] TTL of KEYS[1], in s
  ARGV[3] TTL of the device versions, in s

  Returns the number of keys set.
]]
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[3])
end
return #KEYS
