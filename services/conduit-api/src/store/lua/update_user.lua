-- Commit step of a user update: the user hash. KEYS[2] = user hash; ARGV[2..] = field/value
-- pairs. The username and email claims are taken before and released after this step.
local function run()
  local ukey = KEYS[2]
  local id = redis.call('HGET', ukey, 'id')
  if not id then return {'err', 'not_found', 'user'} end
  local t = redis.call('TIME')
  local args = {'updated_at', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
  for i = 2, #ARGV, 2 do args[#args + 1] = ARGV[i]; args[#args + 1] = ARGV[i + 1] end
  redis.call('HSET', ukey, unpack(args))
  return {'ok', id}
end
