//! User fields: username, email, password, bio and image.

use super::text::check_text;

/// A username: 1 to 40 letters, digits, `_`, `-` or `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 1, 40, false)?;
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err("may only contain letters, digits, '_', '-' and '.'".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, stored lowercased so uniqueness ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 3, 254, false)?;
        let invalid = || "is invalid".to_owned();
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || s.chars().any(char::is_whitespace)
            || local.contains('@')
        {
            return Err(invalid());
        }
        Ok(Self(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8 to 128 characters. Only ever held long enough to hash it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        let len = s.chars().count();
        if len < 8 {
            return Err("is too short (minimum is 8 characters)".into());
        }
        if len > 128 {
            return Err("is too long (maximum is 128 characters)".into());
        }
        if s.contains('\0') {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A biography, up to 1000 characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

impl Bio {
    pub fn parse(s: &str) -> Result<Self, String> {
        check_text(s, 0, 1000, true)?;
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An avatar URL (http or https, up to 2048 characters), or empty for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl(String);

impl ImageUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 0, 2048, false)?;
        let web_url = s.starts_with("http://") || s.starts_with("https://");
        if !(s.is_empty() || web_url) || s.chars().any(char::is_whitespace) {
            return Err("must be an http or https URL".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_accept_the_usual_characters_and_refuse_key_syntax() {
        assert!(Username::parse("jake_1.b-2").is_ok());
        for bad in [
            "",
            "   ",
            "a:b",
            "a{b}",
            "a*b",
            "a b",
            "a\0b",
            &"x".repeat(41),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_are_lowercased_and_must_look_like_addresses() {
        assert_eq!(
            Email::parse(" Jake@Example.COM ").unwrap().as_str(),
            "jake@example.com"
        );
        for bad in [
            "",
            "jake",
            "@x.io",
            "jake@",
            "ja ke@x.io",
            "a@.x",
            "a\0@x.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_have_bounds_and_hide_in_debug() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        let p = Password::parse("long enough").unwrap();
        assert!(!format!("{p:?}").contains("long enough"));
    }

    #[test]
    fn images_must_be_web_urls_or_empty() {
        assert!(ImageUrl::parse("").is_ok());
        assert!(ImageUrl::parse("https://x.io/a.png").is_ok());
        assert!(ImageUrl::parse("javascript:alert(1)").is_err());
        assert!(ImageUrl::parse("https://x.io/a b.png").is_err());
    }
}
