-- Gives an idempotency key back after a failure that should not be replayed (5xx). A record
-- that never reserved an entity is deleted; one that did (or committed) keeps what it recorded
-- and only drops its lease, so the next retry finishes the same write instead of starting anew.
-- KEYS[1] = the record; ARGV[1] = lease.
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease', 'rid')
if rec[2] ~= ARGV[1] then return 0 end
if rec[1] == 'pending' and not rec[3] then redis.call('DEL', KEYS[1]) return 1 end
if rec[1] == 'pending' or rec[1] == 'committed' then redis.call('HSET', KEYS[1], 'lease_until', 0) return 1 end
return 0
