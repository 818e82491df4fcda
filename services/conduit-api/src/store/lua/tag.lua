-- Puts article ARGV[1] into (ARGV[3] = '1') or out of the index of tag ARGV[2], and keeps the
-- tag's count in step. KEYS = the tag's index, its bucket's counts (one slot). Repeating it
-- changes nothing: the count moves only when the index did.
local id, tag, on = ARGV[1], ARGV[2], ARGV[3] == '1'
if on then
  if redis.call('ZADD', KEYS[1], id, id) == 1 then redis.call('ZINCRBY', KEYS[2], 1, tag) end
elseif redis.call('ZREM', KEYS[1], id) == 1 then
  if tonumber(redis.call('ZINCRBY', KEYS[2], -1, tag)) <= 0 then redis.call('ZREM', KEYS[2], tag) end
end
return 1
