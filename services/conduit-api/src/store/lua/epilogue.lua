-- Shared end of a commit step: the result is recorded in the same atomic step as the write.
local out = run()
if lease ~= '' and out[1] == 'ok' then
  redis.call('HSET', idem, 'state', 'committed', 'result', out[2])
end
return out
