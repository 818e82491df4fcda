-- Dumps what scripts/chaos.sh checks acknowledged writes against, one record per line with
-- tab-separated fields (services/chaos-report/src/verify.rs reads it):
--   U username id | S slug article-id | A id slug author title | C id article author body
--   F article-id user-id (favorited) | W user-id followed-user-id
-- Run after the load has stopped, on a single Redis: EVAL <this> 0 <key prefix>
-- It walks the key layout of services/conduit-api/src/store/keys.rs with KEYS (a test tool, not
-- a request path).
local p = ARGV[1]
local function clean(s)
  if not s then return '' end
  return (string.gsub(s, '[\t\r\n]', ' '))
end
local function esc(s)
  return (string.gsub(s, '[^%w%._%-]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
local out = {}
for _, key in ipairs(redis.call('KEYS', p .. ':{u:*}:user')) do
  local u = redis.call('HMGET', key, 'id', 'username')
  if u[1] and u[2] then
    local claim = redis.call('HGET', p .. ':{name:' .. esc(string.lower(u[2])) .. '}:claim', 'owner')
    if claim == u[1] then out[#out + 1] = 'U\t' .. string.lower(u[2]) .. '\t' .. u[1] end
    for _, f in ipairs(redis.call('SMEMBERS', p .. ':{u:' .. u[1] .. '}:following')) do
      out[#out + 1] = 'W\t' .. u[1] .. '\t' .. f
    end
  end
end
for _, key in ipairs(redis.call('KEYS', p .. ':{a:*}:article')) do
  local a = redis.call('HMGET', key, 'id', 'slug')
  if a[1] and a[2] and redis.call('HGET', p .. ':{slug:' .. esc(a[2]) .. '}:claim', 'owner') == a[1] then
    out[#out + 1] = 'S\t' .. a[2] .. '\t' .. a[1]
  end
end
for _, bucket in ipairs(redis.call('KEYS', p .. ':{all:*}:articles')) do
  for _, id in ipairs(redis.call('ZRANGE', bucket, 0, -1)) do
    local a = redis.call('HMGET', p .. ':{a:' .. id .. '}:article', 'slug', 'author', 'title')
    out[#out + 1] = 'A\t' .. id .. '\t' .. clean(a[1]) .. '\t' .. clean(a[2]) .. '\t' .. clean(a[3])
  end
end
-- Comments and favorites of every stored article, also of one whose creation failed after its
-- tags were indexed but before the global index (others can find it by tag and comment on it).
for _, key in ipairs(redis.call('KEYS', p .. ':{a:*}:article')) do
  local id = redis.call('HGET', key, 'id')
  if id then
    local comments = p .. ':{a:' .. id .. '}:comments'
    for _, cid in ipairs(redis.call('ZRANGE', p .. ':{a:' .. id .. '}:comment_ids', 0, -1)) do
      local raw = redis.call('HGET', comments, cid)
      if raw then
        local c = cjson.decode(raw)
        out[#out + 1] = 'C\t' .. cid .. '\t' .. id .. '\t' .. clean(c.author) .. '\t' .. clean(c.body)
      end
    end
    for _, u in ipairs(redis.call('SMEMBERS', p .. ':{a:' .. id .. '}:favorited_by')) do
      out[#out + 1] = 'F\t' .. id .. '\t' .. u
    end
  end
end
return out
