-- Adds user ARGV[1] to (ARGV[2] = '1') or removes them from the article's favorited-by set, and
-- stores the set's size in the article hash, so a page reads the count with the article.
-- KEYS = favorited-by set, article hash (one slot). Repeating it changes nothing; a deleted
-- article's hash is not brought back.
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
else
  redis.call('SREM', KEYS[1], ARGV[1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'favorites', redis.call('SCARD', KEYS[1]))
end
return 1
