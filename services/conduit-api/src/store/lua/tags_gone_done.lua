-- The last step of an article update: the tags in ARGV[1] have left their indexes, so they are
-- struck from the article's `tags_gone` unless another update changed it meanwhile.
-- KEYS[1] = article hash.
if redis.call('HGET', KEYS[1], 'tags_gone') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'tags_gone')
end
return 1
