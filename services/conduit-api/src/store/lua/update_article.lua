-- Commit step of an article update. KEYS[1] = article hash; ARGV[1] = the caller,
-- ARGV[2..] = field/value pairs. Returns {'ok', id, tags_gone} or {'err', code, what}.
-- When the tags change, the tags dropped join the hash's `tags_gone` field in the same step, so
-- whoever finishes the update (this request, its retry or the next update) takes the article
-- out of their indexes even though the hash no longer names them.
local cur = redis.call('HMGET', KEYS[1], 'id', 'author', 'tags', 'tags_gone')
if not cur[1] then return {'err', 'not_found', 'article'} end
if cur[2] ~= ARGV[1] then return {'err', 'forbidden', 'article'} end
local t = redis.call('TIME')
local args = {'updated_at', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
local gone = cur[4] or ''
for i = 2, #ARGV, 2 do
  args[#args + 1] = ARGV[i]; args[#args + 1] = ARGV[i + 1]
  if ARGV[i] == 'tags' then
    -- gone = (what was gone before + the old tags) - the new tags
    local keep, listed, out = {}, {}, {}
    for tag in string.gmatch(ARGV[i + 1], '[^,]+') do keep[tag] = true end
    for _, list in ipairs({gone, cur[3] or ''}) do
      for tag in string.gmatch(list, '[^,]+') do
        if not keep[tag] and not listed[tag] then
          listed[tag] = true
          out[#out + 1] = tag
        end
      end
    end
    gone = table.concat(out, ',')
  end
end
redis.call('HSET', KEYS[1], unpack(args))
if gone == '' then redis.call('HDEL', KEYS[1], 'tags_gone') else redis.call('HSET', KEYS[1], 'tags_gone', gone) end
return {'ok', cur[1], gone}
