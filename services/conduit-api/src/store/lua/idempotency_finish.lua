-- Stores the response of an idempotent request. KEYS[1] = the record; ARGV = lease, status, body.
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease')
if rec[1] == 'done' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
return 1
