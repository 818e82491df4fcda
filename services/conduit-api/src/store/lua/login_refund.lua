-- Gives back one reserved login attempt (the login succeeded, was refused by another counter,
-- or could not be checked). KEYS[1] = the counter. A counter whose window ended stays gone: a
-- plain DECR would make it again, without an expiry.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  redis.call('DECR', KEYS[1])
end
return 0
