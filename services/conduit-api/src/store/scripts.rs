//! The Lua scripts behind every multi-key write, so each write is atomic: a replica killed
//! mid-request leaves either all of an article (hash, slug, indexes, tag counts, feeds) or none.
//!
//! Calling convention: `ARGV[1]` is the key prefix. Write scripts take `KEYS[1]` = the
//! idempotency record and `ARGV[2]` = the caller's lease on it ('' when the request has no
//! `Idempotency-Key`); their own arguments start at `ARGV[3]`. Each returns `{'ok', value}` or
//! `{'err', code, detail...}`. When the request is idempotent, the shared prologue returns the
//! already committed result instead of writing again, and the epilogue commits the result in the
//! same atomic step as the write: a retry after a crash can never execute the write twice.
//!
//! Scripts derive some keys from data they read (followers' feeds, tag indexes). They do so with
//! the helpers in `PRELUDE`, which mirror `keys.rs`. This requires a single Redis primary (or a
//! proxy that routes scripts to one), which is the supported deployment.

use redis::Script;

/// Helpers shared by all scripts: key building and escaping that match `keys.rs`, and time.
const PRELUDE: &str = r#"
local P = ARGV[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function esc(s)
  return (string.gsub(s, '[^%w%._%-]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end
local function split_tags(s)
  local out = {}
  for tag in string.gmatch(s, '[^,]+') do out[#out + 1] = tag end
  return out
end
local function untag(id, tag)
  redis.call('ZREM', k('tag', esc(tag), 'articles'), id)
  if tonumber(redis.call('ZINCRBY', k('tags'), -1, tag)) <= 0 then redis.call('ZREM', k('tags'), tag) end
end
local function retag(id, tag)
  redis.call('ZADD', k('tag', esc(tag), 'articles'), id, id)
  redis.call('ZINCRBY', k('tags'), 1, tag)
end
-- The id of the article at `slug`, or nil and the error reply.
local function find_article(slug)
  local id = redis.call('HGET', k('articles', 'by_slug'), slug)
  if not id then return nil, {'err', 'not_found', 'article'} end
  return id
end
-- The id and tags of the article at `slug` if `me` wrote it, or nil and the error reply.
local function own_article(me, slug)
  local id, err = find_article(slug)
  if not id then return nil, err end
  local cur = redis.call('HMGET', k('article', id), 'author', 'tags')
  if cur[1] ~= me then return nil, {'err', 'forbidden', 'article'} end
  return id, cur[2] or ''
end
local function unique_slug(base, id)
  local slugs = k('articles', 'by_slug')
  local function free(s)
    local owner = redis.call('HGET', slugs, s)
    return (not owner) or owner == id
  end
  if free(base) then return base end
  local slug = base .. '-' .. id
  local n = 1
  while not free(slug) do n = n + 1; slug = base .. '-' .. id .. '-' .. n end
  return slug
end
"#;

const PROLOGUE: &str = r#"
local idem, lease = KEYS[1], ARGV[2]
if lease ~= '' then
  local rec = redis.call('HMGET', idem, 'state', 'lease', 'result')
  if rec[1] == 'committed' or rec[1] == 'done' then return {'ok', rec[3] or ''} end
  if rec[1] ~= 'pending' or rec[2] ~= lease then return {'err', 'lease_lost'} end
end
"#;

const EPILOGUE: &str = r#"
local out = run()
if lease ~= '' and out[1] == 'ok' then
  redis.call('HSET', idem, 'state', 'committed', 'result', out[2])
end
return out
"#;

const REGISTER: &str = r#"
local function run()
  local username, username_lc, email, hash = ARGV[3], string.lower(ARGV[3]), ARGV[4], ARGV[5]
  local taken = {'err', 'taken'}
  if redis.call('HEXISTS', k('users', 'by_username'), username_lc) == 1 then taken[#taken + 1] = 'username' end
  if redis.call('HEXISTS', k('users', 'by_email'), email) == 1 then taken[#taken + 1] = 'email' end
  if #taken > 2 then return taken end
  local id = tostring(redis.call('INCR', k('seq', 'user')))
  local now = now_ms()
  redis.call('HSET', k('user', id), 'id', id, 'username', username, 'email', email, 'password', hash,
    'bio', '', 'image', '', 'created_at', now, 'updated_at', now)
  redis.call('HSET', k('users', 'by_username'), username_lc, id)
  redis.call('HSET', k('users', 'by_email'), email, id)
  return {'ok', id}
end
"#;

const UPDATE_USER: &str = r#"
local function run()
  local id = ARGV[3]
  local ukey = k('user', id)
  local cur = redis.call('HMGET', ukey, 'username', 'email')
  if not cur[1] then return {'err', 'not_found', 'user'} end
  local set = {}
  for i = 4, #ARGV, 2 do set[ARGV[i]] = ARGV[i + 1] end
  local taken = {'err', 'taken'}
  local old_lc = string.lower(cur[1])
  local new_lc = set.username and string.lower(set.username)
  if new_lc and new_lc ~= old_lc and redis.call('HEXISTS', k('users', 'by_username'), new_lc) == 1 then
    taken[#taken + 1] = 'username'
  end
  if set.email and set.email ~= cur[2] and redis.call('HEXISTS', k('users', 'by_email'), set.email) == 1 then
    taken[#taken + 1] = 'email'
  end
  if #taken > 2 then return taken end
  if new_lc and new_lc ~= old_lc then
    redis.call('HDEL', k('users', 'by_username'), old_lc)
    redis.call('HSET', k('users', 'by_username'), new_lc, id)
  end
  if set.email and set.email ~= cur[2] then
    redis.call('HDEL', k('users', 'by_email'), cur[2])
    redis.call('HSET', k('users', 'by_email'), set.email, id)
  end
  local args = {'updated_at', now_ms()}
  for f, v in pairs(set) do args[#args + 1] = f; args[#args + 1] = v end
  redis.call('HSET', ukey, unpack(args))
  return {'ok', id}
end
"#;

const FOLLOW: &str = r#"
local function run()
  local me, target_name, on = ARGV[3], string.lower(ARGV[4]), ARGV[5] == '1'
  local target = redis.call('HGET', k('users', 'by_username'), target_name)
  if not target then return {'err', 'not_found', 'profile'} end
  if target == me then return {'err', 'invalid', 'username', 'cannot follow yourself'} end
  local feed = k('user', me, 'feed')
  if on then
    if redis.call('SADD', k('user', me, 'following'), target) == 1 then
      redis.call('SADD', k('user', target, 'followers'), me)
      redis.call('ZUNIONSTORE', feed, 2, feed, k('user', target, 'articles'), 'AGGREGATE', 'MAX')
    end
  elseif redis.call('SREM', k('user', me, 'following'), target) == 1 then
    redis.call('SREM', k('user', target, 'followers'), me)
    local ids = redis.call('ZRANGE', k('user', target, 'articles'), 0, -1)
    for i = 1, #ids, 500 do redis.call('ZREM', feed, unpack(ids, i, math.min(i + 499, #ids))) end
  end
  return {'ok', target}
end
"#;

const CREATE_ARTICLE: &str = r#"
local function run()
  local me, base, title, description, body, tags = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local id = tostring(redis.call('INCR', k('seq', 'article')))
  local slug = unique_slug(base, id)
  local now = now_ms()
  redis.call('HSET', k('article', id), 'id', id, 'slug', slug, 'title', title, 'description', description,
    'body', body, 'tags', tags, 'author', me, 'created_at', now, 'updated_at', now)
  redis.call('HSET', k('articles', 'by_slug'), slug, id)
  redis.call('ZADD', k('articles'), id, id)
  redis.call('ZADD', k('user', me, 'articles'), id, id)
  for _, tag in ipairs(split_tags(tags)) do retag(id, tag) end
  for _, f in ipairs(redis.call('SMEMBERS', k('user', me, 'followers'))) do
    redis.call('ZADD', k('user', f, 'feed'), id, id)
  end
  return {'ok', id}
end
"#;

const UPDATE_ARTICLE: &str = r#"
local function run()
  local me, slug = ARGV[3], ARGV[4]
  local id, tags = own_article(me, slug)
  if not id then return tags end
  local akey = k('article', id)
  local set = {}
  for i = 5, #ARGV, 2 do set[ARGV[i]] = ARGV[i + 1] end
  local args = {'updated_at', now_ms()}
  if set.slug_base then
    local new_slug = unique_slug(set.slug_base, id)
    if new_slug ~= slug then
      redis.call('HDEL', k('articles', 'by_slug'), slug)
      redis.call('HSET', k('articles', 'by_slug'), new_slug, id)
      args[#args + 1] = 'slug'; args[#args + 1] = new_slug
    end
    set.slug_base = nil
  end
  if set.tags then
    local old, new = {}, {}
    for _, t in ipairs(split_tags(tags)) do old[t] = true end
    for _, t in ipairs(split_tags(set.tags)) do new[t] = true end
    for t in pairs(old) do if not new[t] then untag(id, t) end end
    for t in pairs(new) do if not old[t] then retag(id, t) end end
  end
  for f, v in pairs(set) do args[#args + 1] = f; args[#args + 1] = v end
  redis.call('HSET', akey, unpack(args))
  return {'ok', id}
end
"#;

const DELETE_ARTICLE: &str = r#"
local function run()
  local me, slug = ARGV[3], ARGV[4]
  local id, tags = own_article(me, slug)
  if not id then return tags end
  local akey = k('article', id)
  redis.call('HDEL', k('articles', 'by_slug'), slug)
  redis.call('ZREM', k('articles'), id)
  redis.call('ZREM', k('user', me, 'articles'), id)
  for _, tag in ipairs(split_tags(tags)) do untag(id, tag) end
  for _, u in ipairs(redis.call('SMEMBERS', k('article', id, 'favorited_by'))) do
    redis.call('ZREM', k('user', u, 'favorites'), id)
  end
  for _, f in ipairs(redis.call('SMEMBERS', k('user', me, 'followers'))) do
    redis.call('ZREM', k('user', f, 'feed'), id)
  end
  for _, c in ipairs(redis.call('ZRANGE', k('article', id, 'comments'), 0, -1)) do
    redis.call('DEL', k('comment', c))
  end
  redis.call('DEL', akey, k('article', id, 'favorited_by'), k('article', id, 'comments'))
  return {'ok', ''}
end
"#;

const FAVORITE: &str = r#"
local function run()
  local me, slug, on = ARGV[3], ARGV[4], ARGV[5] == '1'
  local id, err = find_article(slug)
  if not id then return err end
  if on then
    if redis.call('SADD', k('article', id, 'favorited_by'), me) == 1 then
      redis.call('ZADD', k('user', me, 'favorites'), id, id)
    end
  elseif redis.call('SREM', k('article', id, 'favorited_by'), me) == 1 then
    redis.call('ZREM', k('user', me, 'favorites'), id)
  end
  return {'ok', id}
end
"#;

const ADD_COMMENT: &str = r#"
local function run()
  local me, slug, body = ARGV[3], ARGV[4], ARGV[5]
  local id, err = find_article(slug)
  if not id then return err end
  local cid = tostring(redis.call('INCR', k('seq', 'comment')))
  local now = now_ms()
  redis.call('HSET', k('comment', cid), 'id', cid, 'article', id, 'author', me, 'body', body,
    'created_at', now, 'updated_at', now)
  redis.call('ZADD', k('article', id, 'comments'), cid, cid)
  return {'ok', cid}
end
"#;

const DELETE_COMMENT: &str = r#"
local function run()
  local me, slug, cid = ARGV[3], ARGV[4], ARGV[5]
  local id, err = find_article(slug)
  if not id then return err end
  local c = redis.call('HMGET', k('comment', cid), 'article', 'author')
  if c[1] ~= id then return {'err', 'not_found', 'comment'} end
  if c[2] ~= me then return {'err', 'forbidden', 'comment'} end
  redis.call('DEL', k('comment', cid))
  redis.call('ZREM', k('article', id, 'comments'), cid)
  return {'ok', ''}
end
"#;

/// One page of article ids for the list endpoint, with the total count, in one round trip.
/// ARGV: prefix, limit, offset, tag, author (lowercase), favorited-by (lowercase); '' = no filter.
const ARTICLE_PAGE: &str = r#"
local limit, offset = tonumber(ARGV[2]), tonumber(ARGV[3])
local tag, author, favorited = ARGV[4], string.lower(ARGV[5]), string.lower(ARGV[6])
local sets = {}
if tag ~= '' then sets[#sets + 1] = k('tag', esc(tag), 'articles') end
for _, pair in ipairs({{author, 'articles'}, {favorited, 'favorites'}}) do
  if pair[1] ~= '' then
    local uid = redis.call('HGET', k('users', 'by_username'), pair[1])
    if not uid then return {0} end
    sets[#sets + 1] = k('user', uid, pair[2])
  end
end
if #sets == 0 then sets[1] = k('articles') end
if #sets == 1 then
  local out = {redis.call('ZCARD', sets[1])}
  if limit > 0 then
    for _, id in ipairs(redis.call('ZREVRANGE', sets[1], offset, offset + limit - 1)) do out[#out + 1] = id end
  end
  return out
end
local all = redis.call('ZINTER', #sets, unpack(sets))
local out = {#all}
local first = #all - offset
for i = first, math.max(first - limit + 1, 1), -1 do out[#out + 1] = all[i] end
return out
"#;

/// Starts an idempotent request. KEYS[1] = record; ARGV: prefix, lease token, fingerprint,
/// lease seconds, record TTL seconds.
const IDEMPOTENCY_BEGIN: &str = r#"
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease_until', 'status', 'body')
local now = tonumber(redis.call('TIME')[1])
local lease_until = now + tonumber(ARGV[4])
if not rec[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[3], 'lease', ARGV[2], 'lease_until', lease_until)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'proceed'}
end
if rec[2] ~= ARGV[3] then return {'mismatch'} end
if rec[1] == 'done' then return {'replay', rec[4], rec[5]} end
if tonumber(rec[3] or '0') > now then return {'in_flight'} end
redis.call('HSET', KEYS[1], 'lease', ARGV[2], 'lease_until', lease_until)
return {'proceed'}
"#;

/// Stores the response of an idempotent request. ARGV: prefix, lease, status, body.
const IDEMPOTENCY_FINISH: &str = r#"
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease')
if rec[1] == 'done' or rec[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
return 1
"#;

/// Gives an idempotency key back after a failure that should not be replayed (5xx): a pending
/// record is deleted, a committed one is released so the next retry re-renders its result.
const IDEMPOTENCY_RELEASE: &str = r#"
local rec = redis.call('HMGET', KEYS[1], 'state', 'lease')
if rec[2] ~= ARGV[2] then return 0 end
if rec[1] == 'pending' then redis.call('DEL', KEYS[1]) return 1 end
if rec[1] == 'committed' then redis.call('HSET', KEYS[1], 'lease_until', 0) return 1 end
return 0
"#;

/// The compiled scripts, loaded once per process (they are code, not state).
pub struct Scripts {
    pub register: Script,
    pub update_user: Script,
    pub follow: Script,
    pub create_article: Script,
    pub update_article: Script,
    pub delete_article: Script,
    pub favorite: Script,
    pub add_comment: Script,
    pub delete_comment: Script,
    pub article_page: Script,
    pub idempotency_begin: Script,
    pub idempotency_finish: Script,
    pub idempotency_release: Script,
}

fn write_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{PROLOGUE}{body}{EPILOGUE}"))
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            register: write_script(REGISTER),
            update_user: write_script(UPDATE_USER),
            follow: write_script(FOLLOW),
            create_article: write_script(CREATE_ARTICLE),
            update_article: write_script(UPDATE_ARTICLE),
            delete_article: write_script(DELETE_ARTICLE),
            favorite: write_script(FAVORITE),
            add_comment: write_script(ADD_COMMENT),
            delete_comment: write_script(DELETE_COMMENT),
            article_page: Script::new(&format!("{PRELUDE}{ARTICLE_PAGE}")),
            idempotency_begin: Script::new(IDEMPOTENCY_BEGIN),
            idempotency_finish: Script::new(IDEMPOTENCY_FINISH),
            idempotency_release: Script::new(IDEMPOTENCY_RELEASE),
        }
    }
}
