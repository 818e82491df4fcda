-- Commit step of a comment delete. KEYS = comment ids, comments; ARGV = comment id, the caller,
-- '1' when a retry of this request may already have deleted it.
local cid, me, retry = ARGV[1], ARGV[2], ARGV[3] == '1'
local raw = redis.call('HGET', KEYS[2], cid)
if not raw then
  if retry then return {'ok', ''} end
  return {'err', 'not_found', 'comment'}
end
if cjson.decode(raw).author ~= me then return {'err', 'forbidden', 'comment'} end
redis.call('HDEL', KEYS[2], cid)
redis.call('ZREM', KEYS[1], cid)
return {'ok', ''}
