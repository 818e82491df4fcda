-- Claims a unique value (slug, username, email) for an owner. KEYS[1] = the claim.
-- ARGV[1] = owner id, ARGV[2] = an owner found stale that may be replaced ('' none),
-- ARGV[3] = milliseconds a claim must be old before it may be replaced.
-- Returns {'ok'} or {'taken', owner, age in ms}. Claiming again for the same owner is a no-op.
local owner, stale, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local cur = redis.call('HMGET', KEYS[1], 'owner', 'since')
if cur[1] == owner then return {'ok'} end
local age = tonumber(now) - tonumber(cur[2] or '0')
if (not cur[1]) or (stale ~= '' and cur[1] == stale and age >= grace) then
  redis.call('HSET', KEYS[1], 'owner', owner, 'since', now)
  return {'ok'}
end
return {'taken', cur[1], tostring(math.floor(age))}
