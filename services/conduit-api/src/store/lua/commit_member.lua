-- Commit step that adds or removes one member of a set or sorted set of the caller.
-- KEYS[2] = the set; ARGV[2] = 'sadd' | 'srem' | 'zadd' | 'zrem', ARGV[3] = member (for a sorted
-- set also its score), ARGV[4] = the result to record.
local function run()
  local op, member, result = ARGV[2], ARGV[3], ARGV[4]
  if op == 'sadd' then redis.call('SADD', KEYS[2], member)
  elseif op == 'srem' then redis.call('SREM', KEYS[2], member)
  elseif op == 'zadd' then redis.call('ZADD', KEYS[2], member, member)
  elseif op == 'zrem' then redis.call('ZREM', KEYS[2], member)
  else return {'err', 'bad_op'} end
  return {'ok', result}
end
