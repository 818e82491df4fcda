-- Writes a new article's hash unless it exists (a retry). KEYS[1] = article hash;
-- ARGV = id, slug, title, description, body, tags (comma-separated), author. The favorites
-- count starts at 0 (favorited_by.lua keeps it).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'slug', ARGV[2], 'title', ARGV[3], 'description', ARGV[4],
  'body', ARGV[5], 'tags', ARGV[6], 'author', ARGV[7], 'created_at', now, 'updated_at', now,
  'favorites', 0)
return 1
