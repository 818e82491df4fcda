-- Shared start of a commit step that runs in the caller's user slot.
-- KEYS[1] = the request's idempotency record (or any key of the same slot when the request has
-- no Idempotency-Key); ARGV[1] = the caller's lease on it ('' without a key). A step already
-- committed returns its stored result instead of writing again.
local idem, lease = KEYS[1], ARGV[1]
if lease ~= '' then
  local rec = redis.call('HMGET', idem, 'state', 'lease', 'result')
  if rec[1] == 'committed' or rec[1] == 'done' then return {'ok', rec[3] or ''} end
  if rec[1] ~= 'pending' or rec[2] ~= lease then return {'err', 'lease_lost'} end
end
