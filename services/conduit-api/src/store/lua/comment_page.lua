-- One page of an article's comments, newest first, with the total. KEYS = comment ids,
-- comments; ARGV = offset, limit, byte budget. Returns {total, json, json, ...}: at most
-- `limit` comments, and no more once their stored size passes the budget (the first is always
-- included), so a page of long comments stays small. Read in chunks, so a page never makes
-- Redis hold more than one chunk beyond the budget either.
local offset, limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {redis.call('ZCARD', KEYS[1])}
if limit <= 0 then return out end
local ids = redis.call('ZREVRANGE', KEYS[1], offset, offset + limit - 1)
local used, chunk = 0, 25
for first = 1, #ids, chunk do
  local part = {unpack(ids, first, math.min(first + chunk - 1, #ids))}
  for _, raw in ipairs(redis.call('HMGET', KEYS[2], unpack(part))) do
    if raw then
      if #out > 1 and used + #raw > budget then return out end
      used = used + #raw
      out[#out + 1] = raw
    end
  end
end
return out
