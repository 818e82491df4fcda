-- Starts an idempotent request. KEYS[1] = the record; ARGV = lease token, fingerprint, lease
-- seconds, record TTL seconds. Returns {'proceed'}, {'replay', status, body}, {'in_flight'} or
-- {'mismatch'}.
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease_until', 'status', 'body')
local now = tonumber(redis.call('TIME')[1])
local lease_until = now + tonumber(ARGV[3])
if not rec[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[2], 'lease', ARGV[1], 'lease_until', lease_until)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'proceed'}
end
if rec[2] ~= ARGV[2] then return {'mismatch'} end
if rec[1] == 'done' then return {'replay', rec[4], rec[5]} end
if tonumber(rec[3] or '0') > now then return {'in_flight'} end
redis.call('HSET', KEYS[1], 'lease', ARGV[1], 'lease_until', lease_until)
return {'proceed'}
