//! Redis key names: the only place that spells a key. Scripts never build one; they get every
//! key they touch in `KEYS`.
//!
//! Every key is `<prefix>:{<tag>}:<name>`. The part in braces is the Redis Cluster hash tag: keys
//! with the same tag live in the same slot, so a script or pipeline over them is one atomic step
//! on one node. The tags:
//! - `{u:<id>}`: one user and everything only that user writes (user hash, following, followers,
//!   feed, authored articles, favorites, the user's idempotency records);
//! - `{a:<id>}`: one article (hash, favorited-by set, comments);
//! - `{slug:…}`, `{name:…}`, `{email:…}`: one unique-value claim each (slug, lowercase username,
//!   email), so claiming a value is one `SET`-like step on its own key;
//! - `{tags:<n>}`: one of [`TAG_BUCKETS`] buckets of tags, holding each tag's article index and
//!   the bucket's usage counts, so tagging an article is one atomic step;
//! - `{all:<n>}`: one of [`ARTICLE_BUCKETS`] buckets of the global article index (bucket = id mod
//!   the bucket count), so no single slot takes every article;
//! - `{fanout}`: the stream of feed fan-out jobs;
//! - `{seq}`: the id counters; `{anon:…}`: idempotency records of anonymous requests;
//!   `{lf:…}`: failed-login counters; `{iq:…}`: anonymous idempotency records per client
//!   address; `{reg:…}`: registrations per client address.
//!
//! Ids are decimal numbers from `INCR`. Every user-supplied string that becomes part of a key (a
//! tag, a slug, an idempotency key, an email, a client address) goes through [`escape`], so `:`,
//! `{`, `}`, `*`, `?`, `[`, spaces and bytes outside ASCII can never form key, hash-tag or pattern
//! syntax.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Buckets of the global article index.
pub const ARTICLE_BUCKETS: u64 = 16;
/// Buckets of the tag indexes and tag counts.
pub const TAG_BUCKETS: u64 = 16;

/// Key builder bound to one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: escape(prefix),
        }
    }

    /// The escaped prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, tag: &str, name: &str) -> String {
        format!("{}:{{{tag}}}:{name}", self.prefix)
    }

    // --- one user: tag {u:<id>} ---

    /// Hash: one user.
    pub fn user(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "user")
    }
    /// Set: ids of the users `id` follows.
    pub fn following(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "following")
    }
    /// Set: ids of the users following `id`.
    pub fn followers(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "followers")
    }
    /// Sorted set: article ids in the feed of user `id` (score = article id).
    pub fn feed(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "feed")
    }
    /// Sorted set: ids of articles written by user `id` (score = article id).
    pub fn authored(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "articles")
    }
    /// Sorted set: ids of articles user `id` favorited (score = article id).
    pub fn favorites(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "favorites")
    }

    // --- one article: tag {a:<id>} ---

    /// Hash: one article.
    pub fn article(&self, id: &str) -> String {
        self.key(&format!("a:{}", escape(id)), "article")
    }
    /// Set: ids of users who favorited article `id`.
    pub fn favorited_by(&self, id: &str) -> String {
        self.key(&format!("a:{}", escape(id)), "favorited_by")
    }
    /// Set: the users who had favorited article `id` when it was deleted, until the fan-out
    /// has taken it out of their favorites.
    pub fn fans_gone(&self, id: &str) -> String {
        self.key(&format!("a:{}", escape(id)), "fans_gone")
    }
    /// Sorted set: comment ids of article `id` (score = comment id).
    pub fn comment_ids(&self, id: &str) -> String {
        self.key(&format!("a:{}", escape(id)), "comment_ids")
    }
    /// Hash: comment id -> the comment as JSON, for article `id`.
    pub fn comments(&self, id: &str) -> String {
        self.key(&format!("a:{}", escape(id)), "comments")
    }

    // --- unique-value claims: hash {owner, since} ---

    /// Claim on a slug; its owner is the article id.
    pub fn slug_claim(&self, slug: &str) -> String {
        self.key(&format!("slug:{}", escape(slug)), "claim")
    }
    /// Claim on a username (lowercased here); its owner is the user id.
    pub fn username_claim(&self, username: &str) -> String {
        self.key(
            &format!("name:{}", escape(&username.to_lowercase())),
            "claim",
        )
    }
    /// Claim on an email (already lowercased by the caller); its owner is the user id.
    pub fn email_claim(&self, email: &str) -> String {
        self.key(&format!("email:{}", escape(email)), "claim")
    }

    // --- bucketed global indexes ---

    /// Sorted set: the ids of every article in bucket `bucket` (score = id).
    pub fn articles_bucket(&self, bucket: u64) -> String {
        self.key(&format!("all:{bucket}"), "articles")
    }
    /// The global-index bucket of article `id`.
    pub fn article_bucket(id: &str) -> u64 {
        id.parse::<u64>().unwrap_or_else(|_| fnv(id)) % ARTICLE_BUCKETS
    }
    /// All global-index buckets.
    pub fn articles_buckets(&self) -> Vec<String> {
        (0..ARTICLE_BUCKETS)
            .map(|b| self.articles_bucket(b))
            .collect()
    }
    /// The tag bucket of `tag`.
    pub fn tag_bucket(tag: &str) -> u64 {
        fnv(tag) % TAG_BUCKETS
    }
    /// Sorted set: ids of articles carrying `tag` (score = id).
    pub fn tagged(&self, tag: &str) -> String {
        self.key(
            &format!("tags:{}", Self::tag_bucket(tag)),
            &format!("tag:{}", escape(tag)),
        )
    }
    /// Sorted set: tag -> number of articles carrying it, for the tags of bucket `bucket`.
    pub fn tag_counts(&self, bucket: u64) -> String {
        self.key(&format!("tags:{bucket}"), "counts")
    }
    /// The tag-count key of the bucket `tag` is in.
    pub fn tag_counts_of(&self, tag: &str) -> String {
        self.tag_counts(Self::tag_bucket(tag))
    }

    // --- small global keys ---

    /// Stream: feed fan-out jobs, read by every replica through one consumer group.
    pub fn fanout_jobs(&self) -> String {
        self.key("fanout", "jobs")
    }

    /// String counter: the last id given to a `kind` (`user`, `article`, `comment`).
    pub fn sequence(&self, kind: &str) -> String {
        self.key("seq", kind)
    }

    /// Hash: the stored outcome of one idempotent request. A user's records live in the user's
    /// slot (so a write's commit step can record its result atomically); anonymous ones in a
    /// slot of their own.
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        if scope == "anon" {
            self.key(&format!("anon:{}", escape(key)), "idem")
        } else {
            self.key(
                &format!("u:{}", escape(scope)),
                &format!("idem:{}", escape(key)),
            )
        }
    }
    /// String counter: idempotency records user `id` created in the current window. In the
    /// user's slot, beside the records.
    pub fn idempotency_quota_user(&self, id: &str) -> String {
        self.key(&format!("u:{}", escape(id)), "idem_quota")
    }
    /// String counter: anonymous idempotency records created from one client address in the
    /// current window.
    pub fn idempotency_quota_address(&self, address: &str) -> String {
        self.key(&format!("iq:{}", escape(address)), "idem_quota")
    }
    /// String counter: registrations from one client address in the current window.
    pub fn registrations_address(&self, address: &str) -> String {
        self.key(&format!("reg:{}", escape(address)), "registrations")
    }
    /// String counter: failed logins for one account in the current window.
    pub fn login_failures_account(&self, email: &str) -> String {
        self.key(&format!("lf:account:{}", escape(email)), "failures")
    }
    /// String counter: failed logins from one client address in the current window.
    pub fn login_failures_address(&self, address: &str) -> String {
        self.key(&format!("lf:address:{}", escape(address)), "failures")
    }
    /// String counter: failed logins for one account from one client address in the current
    /// window.
    pub fn login_failures_pair(&self, email: &str, address: &str) -> String {
        self.key(
            &format!("lf:pair:{}:{}", escape(email), escape(address)),
            "failures",
        )
    }
}

/// A key under a prefix, read back into its family, for tools that walk the data set (ids and
/// tags stay escaped, as in the key). [`Keys::parse`] is the inverse of the builders above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFamily {
    User(String),
    Following(String),
    Followers(String),
    Feed(String),
    Authored(String),
    Favorites(String),
    /// A user's idempotency record, or an anonymous one (`scope` = `anon`).
    Idempotency {
        scope: String,
    },
    Article(String),
    FavoritedBy(String),
    FansGone(String),
    CommentIds(String),
    Comments(String),
    SlugClaim(String),
    UsernameClaim(String),
    EmailClaim(String),
    ArticlesBucket(u64),
    /// A tag's article index; `tag` is escaped.
    Tagged {
        bucket: u64,
        tag: String,
    },
    TagCounts(u64),
    FanoutJobs,
    Sequence(String),
    LoginFailures,
    /// A count of idempotency records, of one user or of one client address.
    IdempotencyQuota,
    /// Registrations from one client address.
    Registrations,
    /// Under the prefix but of no known family.
    Unknown,
}

impl Keys {
    /// The family of `key`, or `None` when it is not under this prefix.
    pub fn parse(&self, key: &str) -> Option<KeyFamily> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let Some((tag, name)) = rest.split_once("}:") else {
            return Some(KeyFamily::Unknown);
        };
        let (kind, value) = tag.split_once(':').unwrap_or((tag, ""));
        let value = value.to_owned();
        let family = match (kind, name) {
            ("u", "user") => KeyFamily::User(value),
            ("u", "following") => KeyFamily::Following(value),
            ("u", "followers") => KeyFamily::Followers(value),
            ("u", "feed") => KeyFamily::Feed(value),
            ("u", "articles") => KeyFamily::Authored(value),
            ("u", "favorites") => KeyFamily::Favorites(value),
            ("u", "idem_quota") | ("iq", "idem_quota") => KeyFamily::IdempotencyQuota,
            ("u", n) if n.starts_with("idem:") => KeyFamily::Idempotency { scope: value },
            ("anon", "idem") => KeyFamily::Idempotency {
                scope: "anon".to_owned(),
            },
            ("a", "article") => KeyFamily::Article(value),
            ("a", "favorited_by") => KeyFamily::FavoritedBy(value),
            ("a", "fans_gone") => KeyFamily::FansGone(value),
            ("a", "comment_ids") => KeyFamily::CommentIds(value),
            ("a", "comments") => KeyFamily::Comments(value),
            ("slug", "claim") => KeyFamily::SlugClaim(value),
            ("name", "claim") => KeyFamily::UsernameClaim(value),
            ("email", "claim") => KeyFamily::EmailClaim(value),
            ("all", "articles") => match value.parse() {
                Ok(bucket) => KeyFamily::ArticlesBucket(bucket),
                Err(_) => KeyFamily::Unknown,
            },
            ("tags", "counts") => match value.parse() {
                Ok(bucket) => KeyFamily::TagCounts(bucket),
                Err(_) => KeyFamily::Unknown,
            },
            ("tags", n) => match (value.parse(), n.strip_prefix("tag:")) {
                (Ok(bucket), Some(t)) => KeyFamily::Tagged {
                    bucket,
                    tag: t.to_owned(),
                },
                _ => KeyFamily::Unknown,
            },
            ("fanout", "jobs") => KeyFamily::FanoutJobs,
            ("seq", n) => KeyFamily::Sequence(n.to_owned()),
            ("lf", "failures") => KeyFamily::LoginFailures,
            ("reg", "registrations") => KeyFamily::Registrations,
            _ => KeyFamily::Unknown,
        };
        Some(family)
    }
}

/// FNV-1a, a stable hash for choosing a bucket.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Bytes that stay as they are in a key part: `[A-Za-z0-9._-]`. Everything else, including the
/// separator `:`, glob characters, braces and `%` itself, is percent-encoded.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// Percent-encodes every byte outside `[A-Za-z0-9._-]`.
pub fn escape(s: &str) -> String {
    utf8_percent_encode(s, KEY_SAFE).to_string()
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag (or of the whole key when it
/// has none) mod 16384, as the cluster spec defines it.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_removes_all_key_and_pattern_syntax() {
        let escaped = escape("a:b{c}*d?[e] f\0é%");
        assert_eq!(escaped, "a%3Ab%7Bc%7D%2Ad%3F%5Be%5D%20f%00%C3%A9%25");
        assert!(!escaped.contains([':', '{', '}', '*', '?', '[', ' ', '\0']));
    }

    #[test]
    fn user_strings_cannot_reach_into_another_key() {
        let keys = Keys::new("conduit");
        let tagged = keys.tagged("x:articles}{");
        assert!(tagged.ends_with(":tag:x%3Aarticles%7D%7B"), "{tagged}");
        assert_eq!(tagged.matches('{').count(), 1);
        assert_ne!(keys.idempotency("1", "a:b"), keys.idempotency("1:a", "b"));
        assert_ne!(keys.idempotency("anon", "k"), keys.idempotency("1", "k"));
    }

    #[test]
    fn slot_matches_the_cluster_spec_examples() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
    }

    #[test]
    fn buckets_are_stable_and_in_range() {
        assert_eq!(Keys::article_bucket("17"), 1);
        assert!(Keys::tag_bucket("rust") < TAG_BUCKETS);
        assert_eq!(Keys::tag_bucket("rust"), Keys::tag_bucket("rust"));
        assert_eq!(
            Keys::new("p").articles_buckets().len() as u64,
            ARTICLE_BUCKETS
        );
    }

    #[test]
    fn parse_reads_back_every_builder() {
        let k = Keys::new("p");
        let cases = [
            (k.user("7"), KeyFamily::User("7".into())),
            (k.following("7"), KeyFamily::Following("7".into())),
            (k.followers("7"), KeyFamily::Followers("7".into())),
            (k.feed("7"), KeyFamily::Feed("7".into())),
            (k.authored("7"), KeyFamily::Authored("7".into())),
            (k.favorites("7"), KeyFamily::Favorites("7".into())),
            (k.article("9"), KeyFamily::Article("9".into())),
            (k.favorited_by("9"), KeyFamily::FavoritedBy("9".into())),
            (k.fans_gone("9"), KeyFamily::FansGone("9".into())),
            (k.comment_ids("9"), KeyFamily::CommentIds("9".into())),
            (k.comments("9"), KeyFamily::Comments("9".into())),
            (k.slug_claim("a-b"), KeyFamily::SlugClaim("a-b".into())),
            (
                k.username_claim("Ann"),
                KeyFamily::UsernameClaim("ann".into()),
            ),
            (k.email_claim("a@b"), KeyFamily::EmailClaim(escape("a@b"))),
            (k.articles_bucket(3), KeyFamily::ArticlesBucket(3)),
            (k.tag_counts(4), KeyFamily::TagCounts(4)),
            (k.fanout_jobs(), KeyFamily::FanoutJobs),
            (k.sequence("user"), KeyFamily::Sequence("user".into())),
            (k.login_failures_account("a@b"), KeyFamily::LoginFailures),
            (k.login_failures_address("::1"), KeyFamily::LoginFailures),
            (k.idempotency_quota_user("7"), KeyFamily::IdempotencyQuota),
            (
                k.idempotency_quota_address("2001:db8::/64"),
                KeyFamily::IdempotencyQuota,
            ),
            (
                k.registrations_address("10.0.0.1"),
                KeyFamily::Registrations,
            ),
            (
                k.idempotency("7", "x:y"),
                KeyFamily::Idempotency { scope: "7".into() },
            ),
            (
                k.idempotency("anon", "x"),
                KeyFamily::Idempotency {
                    scope: "anon".into(),
                },
            ),
        ];
        for (key, family) in cases {
            assert_eq!(k.parse(&key), Some(family), "{key}");
        }
        let tagged = k.tagged("a b");
        assert_eq!(
            k.parse(&tagged),
            Some(KeyFamily::Tagged {
                bucket: Keys::tag_bucket("a b"),
                tag: escape("a b"),
            })
        );
        assert_eq!(k.parse("q:{u:1}:user"), None);
        assert_eq!(k.parse("p:{u:1}:other"), Some(KeyFamily::Unknown));
    }
}
