-- One page of an article's comments, newest first, with the total. KEYS = comment ids,
-- comments; ARGV = offset, limit. Returns {total, json, json, ...}.
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {redis.call('ZCARD', KEYS[1])}
if limit <= 0 then return out end
local ids = redis.call('ZREVRANGE', KEYS[1], offset, offset + limit - 1)
if #ids == 0 then return out end
for _, raw in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do
  if raw then out[#out + 1] = raw end
end
return out
