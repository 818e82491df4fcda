-- Commit step of an article update. KEYS[1] = article hash; ARGV[1] = the caller,
-- ARGV[2..] = field/value pairs. Returns {'ok', id} or {'err', code, what}.
local cur = redis.call('HMGET', KEYS[1], 'id', 'author')
if not cur[1] then return {'err', 'not_found', 'article'} end
if cur[2] ~= ARGV[1] then return {'err', 'forbidden', 'article'} end
local t = redis.call('TIME')
local args = {'updated_at', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
for i = 2, #ARGV, 2 do args[#args + 1] = ARGV[i]; args[#args + 1] = ARGV[i + 1] end
redis.call('HSET', KEYS[1], unpack(args))
return {'ok', cur[1]}
