-- Records the result of a write whose commit step ran in another slot. KEYS[1] = the
-- idempotency record; ARGV[1] = lease, ARGV[2] = result.
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease')
if rec[2] ~= ARGV[1] or (rec[1] ~= 'pending' and rec[1] ~= 'committed') then return 0 end
redis.call('HSET', KEYS[1], 'state', 'committed', 'result', ARGV[2])
return 1
