-- Commit step of a new comment, in the article's slot. KEYS = article hash, comment ids,
-- comments; ARGV = comment id, author, body. A retry with the same id changes nothing.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'err', 'not_found', 'article'} end
local cid = ARGV[1]
if redis.call('HEXISTS', KEYS[3], cid) == 1 then return {'ok', cid} end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[3], cid, cjson.encode({id = cid, author = ARGV[2], body = ARGV[3],
  created_at = now, updated_at = now}))
redis.call('ZADD', KEYS[2], cid, cid)
return {'ok', cid}
