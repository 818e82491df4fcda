-- Writes a new user's hash unless it exists (a retry). KEYS[1] = user hash;
-- ARGV = id, username, email, password hash.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'username', ARGV[2], 'email', ARGV[3], 'password', ARGV[4],
  'bio', '', 'image', '', 'created_at', now, 'updated_at', now)
return 1
