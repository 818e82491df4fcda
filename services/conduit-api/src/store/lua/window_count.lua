-- Counts one more on a windowed counter (a login attempt, reserved before the password is
-- checked so no more than the limit are ever verified in a window however many arrive at once;
-- idempotency records of a user or an address; registrations of an address), unless the
-- counter is at its limit.
-- KEYS[1] = the counter; ARGV[1] = the limit; ARGV[2] = the window in milliseconds.
-- Returns {1, ms left in the window} when it fits, else {0, ms left} (not counted).
-- The window starts with the first count and is never renewed; the counter always expires.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PTTL', KEYS[1])}
