//! Redis key names. The only place (with the Lua prelude in `scripts.rs`, which mirrors these
//! patterns for keys a script derives from data it reads) that spells a key.
//!
//! Ids are decimal numbers from `INCR`, so they are safe inside a key. Every user-supplied string
//! that becomes part of a key (a tag, an idempotency key, an email, a client address) goes
//! through [`escape`], so `:`, `{`, `}`, `*`, `?`, `[`, spaces and bytes outside ASCII can never
//! form key or pattern syntax.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

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

    /// The escaped prefix, as passed to scripts.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Hash: one user.
    pub fn user(&self, id: &str) -> String {
        self.key(&["user", id])
    }
    /// Hash: lowercase username -> user id.
    pub fn users_by_username(&self) -> String {
        self.key(&["users", "by_username"])
    }
    /// Hash: lowercase email -> user id.
    pub fn users_by_email(&self) -> String {
        self.key(&["users", "by_email"])
    }
    /// Set: ids of the users `id` follows.
    pub fn following(&self, id: &str) -> String {
        self.key(&["user", id, "following"])
    }
    /// Sorted set: article ids in the feed of user `id` (score = article id).
    pub fn feed(&self, id: &str) -> String {
        self.key(&["user", id, "feed"])
    }
    /// Sorted set: ids of articles written by user `id`.
    pub fn authored(&self, id: &str) -> String {
        self.key(&["user", id, "articles"])
    }
    /// Sorted set: ids of articles user `id` favorited.
    pub fn favorites(&self, id: &str) -> String {
        self.key(&["user", id, "favorites"])
    }
    /// Hash: one article.
    pub fn article(&self, id: &str) -> String {
        self.key(&["article", id])
    }
    /// Sorted set: every article id (score = article id, so newest is highest).
    pub fn articles(&self) -> String {
        self.key(&["articles"])
    }
    /// Hash: slug -> article id.
    pub fn articles_by_slug(&self) -> String {
        self.key(&["articles", "by_slug"])
    }
    /// Set: ids of users who favorited article `id`.
    pub fn favorited_by(&self, id: &str) -> String {
        self.key(&["article", id, "favorited_by"])
    }
    /// Sorted set: comment ids of article `id`.
    pub fn comments(&self, id: &str) -> String {
        self.key(&["article", id, "comments"])
    }
    /// Hash: one comment.
    pub fn comment(&self, id: &str) -> String {
        self.key(&["comment", id])
    }
    /// Sorted set: tag -> number of articles carrying it.
    pub fn tags(&self) -> String {
        self.key(&["tags"])
    }
    /// Sorted set: ids of articles carrying `tag`.
    pub fn tagged(&self, tag: &str) -> String {
        self.key(&["tag", &escape(tag), "articles"])
    }
    /// Hash: the stored outcome of one idempotent request.
    pub fn idempotency(&self, scope: &str, key: &str) -> String {
        self.key(&["idem", &escape(scope), &escape(key)])
    }
    /// String counter: failed logins for one account in the current window.
    pub fn login_failures_account(&self, email: &str) -> String {
        self.key(&["login_failures", "account", &escape(email)])
    }
    /// String counter: failed logins from one client address in the current window.
    pub fn login_failures_address(&self, address: &str) -> String {
        self.key(&["login_failures", "address", &escape(address)])
    }
}

/// Bytes that stay as they are in a key part: `[A-Za-z0-9._-]`. Everything else, including the
/// separator `:`, glob characters and `%` itself, is percent-encoded.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// Percent-encodes every byte outside `[A-Za-z0-9._-]`.
pub fn escape(s: &str) -> String {
    utf8_percent_encode(s, KEY_SAFE).to_string()
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
        assert_eq!(
            keys.tagged("x:articles"),
            "conduit:tag:x%3Aarticles:articles"
        );
        assert_ne!(keys.idempotency("1", "a:b"), keys.idempotency("1:a", "b"));
    }
}
