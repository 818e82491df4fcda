-- Starts an idempotent request. KEYS[1] = the record; ARGV = lease token, fingerprint, lease
-- seconds, record TTL seconds, then the request's fingerprints under the ring's other keys (a
-- record begun before a key rotation still matches its retry). Returns {'proceed', 'new'} (the
-- record was created now), {'proceed', 'resumed'}, {'replay', status, body, token user, token
-- generation}, {'in_flight'} or {'mismatch'}.
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease_until', 'status', 'body', 'tsub', 'tgen')
local now = tonumber(redis.call('TIME')[1])
local lease_until = now + tonumber(ARGV[3])
if not rec[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[2], 'lease', ARGV[1], 'lease_until', lease_until)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'proceed', 'new'}
end
local same = rec[2] == ARGV[2]
for i = 5, #ARGV do
  if rec[2] == ARGV[i] then same = true end
end
if not same then return {'mismatch'} end
if rec[1] == 'done' then return {'replay', rec[4], rec[5], rec[6] or '', rec[7] or ''} end
if tonumber(rec[3] or '0') > now then return {'in_flight'} end
redis.call('HSET', KEYS[1], 'lease', ARGV[1], 'lease_until', lease_until)
return {'proceed', 'resumed'}
