//! User fields (username, email, password, bio and image) and the validated registration,
//! login and update a request makes. Each field's OpenAPI schema sits next to its `parse`.

use super::text::{check_text, schema_of_string, text_pattern};

/// A username: 1 to 40 letters, digits, `_`, `-` or `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

const USERNAME_MAX: usize = 40;
schema_of_string!(
    Username,
    1,
    USERNAME_MAX,
    Some(r"^[A-Za-z0-9_.-]+$".to_owned())
);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 1, USERNAME_MAX, false)?;
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

const EMAIL_MIN: usize = 3;
const EMAIL_MAX: usize = 254;
// One `@` with something on each side, no whitespace or control characters, and a domain that
// neither starts nor ends with a dot.
schema_of_string!(
    Email,
    EMAIL_MIN,
    EMAIL_MAX,
    Some(
        r"^[^@\s\x00-\x1F\x7F-\x9F]+@[^@\s.\x00-\x1F\x7F-\x9F]([^@\s\x00-\x1F\x7F-\x9F]*[^@\s.\x00-\x1F\x7F-\x9F])?$"
            .to_owned()
    )
);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, EMAIL_MIN, EMAIL_MAX, false)?;
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

const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 128;
schema_of_string!(
    Password,
    PASSWORD_MIN,
    PASSWORD_MAX,
    Some(r"^[^\x00]*$".to_owned())
);

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        let len = s.chars().count();
        if len < PASSWORD_MIN {
            return Err(format!(
                "is too short (minimum is {PASSWORD_MIN} characters)"
            ));
        }
        if len > PASSWORD_MAX {
            return Err(format!(
                "is too long (maximum is {PASSWORD_MAX} characters)"
            ));
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

/// A password as typed at login: not empty, at most 1024 bytes. The rules for new passwords are
/// not applied, so an account made under older rules can still log in.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginPassword(String);

impl std::fmt::Debug for LoginPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginPassword(..)")
    }
}

const LOGIN_PASSWORD_MAX_BYTES: usize = 1024;
// Documented in characters: 256 characters always fit in 1024 bytes of UTF-8.
schema_of_string!(LoginPassword, 1, LOGIN_PASSWORD_MAX_BYTES / 4, None);

impl LoginPassword {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            Err("can't be blank".to_owned())
        } else if s.len() > LOGIN_PASSWORD_MAX_BYTES {
            Err("is too long".to_owned())
        } else {
            Ok(Self(s.to_owned()))
        }
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A biography, up to 1000 characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

const BIO_MAX: usize = 1000;
schema_of_string!(Bio, 0, BIO_MAX, Some(text_pattern(0, true, "")));

impl Bio {
    pub fn parse(s: &str) -> Result<Self, String> {
        check_text(s, 0, BIO_MAX, true)?;
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An avatar URL (http or https, up to 2048 characters), or empty for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl(String);

const IMAGE_URL_MAX: usize = 2048;
schema_of_string!(
    ImageUrl,
    0,
    IMAGE_URL_MAX,
    Some(r"^(https?://[^\s\x00-\x1F\x7F-\x9F]*)?$".to_owned())
);

impl ImageUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 0, IMAGE_URL_MAX, false)?;
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

/// A registration, every field valid.
#[derive(Debug)]
pub struct Registration {
    pub username: Username,
    pub email: Email,
    pub password: Password,
}

/// Login credentials in a valid shape (whether they match is for the store and the hash).
#[derive(Debug)]
pub struct Credentials {
    pub email: Email,
    pub password: LoginPassword,
}

/// Changes to a user, every field sent valid; `None` leaves a field as it is, and an empty bio
/// or image clears it.
#[derive(Debug)]
pub struct UserUpdate {
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub password: Option<Password>,
    pub bio: Option<Bio>,
    pub image: Option<ImageUrl>,
}

#[cfg(test)]
mod tests {
    use super::super::text::stated_max_length;
    use super::*;

    #[test]
    fn schemas_state_the_lengths_parse_checks() {
        fn at_limit<T: utoipa::PartialSchema>(parse: fn(&str) -> Result<T, String>) {
            let max = stated_max_length::<T>();
            assert!(parse(&"x".repeat(max)).is_ok(), "{max}");
            assert!(parse(&"x".repeat(max + 1)).is_err(), "{max}");
        }
        at_limit(Username::parse);
        at_limit(Password::parse);
        at_limit(Bio::parse);
        // An email and an image URL need their shape around the characters counted.
        let email = |s: &str| Email::parse(&format!("{}@x.io", &s[5.min(s.len())..]));
        at_limit(email);
        let image = |s: &str| ImageUrl::parse(&format!("http://{}", &s[7.min(s.len())..]));
        at_limit(image);
    }

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
