-- Records which entity an idempotent request is about before its first write, so a retry with
-- the same key works on the same entity. KEYS[1] = the idempotency record; ARGV[1] = lease,
-- ARGV[2] = candidate id ('' when there is none). Returns {'ok', id, fresh ('1' when this call
-- recorded it)} or {'err', 'lease_lost'}.
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease', 'rid')
if rec[1] ~= 'pending' and rec[1] ~= 'committed' then return {'err', 'lease_lost'} end
if rec[2] ~= ARGV[1] then return {'err', 'lease_lost'} end
if rec[3] then return {'ok', rec[3], '0'} end
redis.call('HSET', KEYS[1], 'rid', ARGV[2])
return {'ok', ARGV[2], '1'}
