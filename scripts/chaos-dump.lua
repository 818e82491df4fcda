-- Dumps what scripts/chaos.sh checks acknowledged writes against, one record per line with
-- tab-separated fields (services/chaos-report/src/verify.rs reads it):
--   U username id | S slug article-id | A id slug author title | C id article author body
--   F article-id user-id (favorited) | W user-id followed-user-id
-- Run after the load has stopped: EVAL <this> 0 <key prefix>
local p = ARGV[1]
local function clean(s)
  if not s then return '' end
  return (string.gsub(s, '[\t\r\n]', ' '))
end
local out = {}
local users = redis.call('HGETALL', p .. ':users:by_username')
for i = 1, #users, 2 do
  out[#out + 1] = 'U\t' .. users[i] .. '\t' .. users[i + 1]
  for _, f in ipairs(redis.call('SMEMBERS', p .. ':user:' .. users[i + 1] .. ':following')) do
    out[#out + 1] = 'W\t' .. users[i + 1] .. '\t' .. f
  end
end
local slugs = redis.call('HGETALL', p .. ':articles:by_slug')
for i = 1, #slugs, 2 do
  out[#out + 1] = 'S\t' .. slugs[i] .. '\t' .. slugs[i + 1]
end
for _, id in ipairs(redis.call('ZRANGE', p .. ':articles', 0, -1)) do
  local a = redis.call('HMGET', p .. ':article:' .. id, 'slug', 'author', 'title')
  out[#out + 1] = 'A\t' .. id .. '\t' .. clean(a[1]) .. '\t' .. clean(a[2]) .. '\t' .. clean(a[3])
  for _, cid in ipairs(redis.call('ZRANGE', p .. ':article:' .. id .. ':comments', 0, -1)) do
    local c = redis.call('HMGET', p .. ':comment:' .. cid, 'article', 'author', 'body')
    out[#out + 1] = 'C\t' .. cid .. '\t' .. clean(c[1]) .. '\t' .. clean(c[2]) .. '\t' .. clean(c[3])
  end
  for _, u in ipairs(redis.call('SMEMBERS', p .. ':article:' .. id .. ':favorited_by')) do
    out[#out + 1] = 'F\t' .. id .. '\t' .. u
  end
end
return out
