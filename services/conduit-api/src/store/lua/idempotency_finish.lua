-- Stores the response of an idempotent request. KEYS[1] = the record; ARGV = lease, status,
-- body, and for a response that carried a token (taken out of the stored body) the user and
-- token generation a replay signs a fresh one for, else empty strings.
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease')
if rec[1] == 'done' or rec[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'tsub', ARGV[4], 'tgen', ARGV[5])
end
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
return 1
