-- Commit step of an article delete: the article and everything in its slot go at once.
-- KEYS = article hash, favorited-by set, comment ids, comments; ARGV[1] = the caller.
-- UNLINK frees the memory off the main thread, so this is O(1) however many comments there are.
local author = redis.call('HGET', KEYS[1], 'author')
if not author then return {'err', 'not_found', 'article'} end
if author ~= ARGV[1] then return {'err', 'forbidden', 'article'} end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {'ok', ''}
