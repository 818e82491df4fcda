//! JSON Web Tokens signed with HS256 from a key ring.
//!
//! The ring holds several keys, each with a `kid`. New tokens are signed with the first (current)
//! key and name it in the header; any key in the ring verifies. Rotation is therefore a config
//! change: add the new key second, roll the replicas, move it first, roll again, and drop the old
//! key once every token signed with it has expired.
//!
//! The same keys, each through a key derived for that one use, also MAC the fingerprints of
//! idempotent requests (see [`KeyRing::request_macs`]).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What the fingerprint key of a ring key is derived from (HMAC-SHA256 under the secret).
const FINGERPRINT_LABEL: &[u8] = b"conduit-api idempotency request fingerprint v1";

/// Shortest accepted secret, in bytes (HS256 wants at least the hash size).
const MIN_SECRET_LEN: usize = 32;
/// Tokens longer than this are rejected before any parsing.
const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between replicas, in seconds.
const LEEWAY_SECS: u64 = 30;

/// The claims of a Conduit token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// The user's token generation when the token was signed; a password change moves it on,
    /// so routes that read the user record anyway refuse older tokens. Absent in tokens signed
    /// before generations existed: 0.
    #[serde(default)]
    pub gen: u64,
}

/// Why a key ring could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("no signing key configured")]
    Empty,
    #[error("entry {0} is not of the form kid:secret")]
    Malformed(usize),
    #[error("key id {0:?} has invalid characters (use letters, digits, '-', '_', '.')")]
    BadKid(String),
    #[error("key {0:?} is shorter than {MIN_SECRET_LEN} bytes")]
    TooShort(String),
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
}

/// Why a token was refused. The variants are for logs; clients only see "invalid token".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token too long")]
    TooLong,
    #[error("token header unreadable or not HS256")]
    BadHeader,
    #[error("token names no key id")]
    MissingKid,
    #[error("token signed with unknown key id")]
    UnknownKid,
    #[error("token expired")]
    Expired,
    #[error("token rejected: {0}")]
    Invalid(String),
}

struct Key {
    kid: String,
    secret: SecretString,
    /// HMAC-SHA256 keyed with [`FINGERPRINT_LABEL`] MACed under the secret: a key of its own
    /// for request fingerprints, so a fingerprint is never a JWT signature of anything.
    fingerprint: Hmac<Sha256>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The signing and verifying keys shared by every replica.
pub struct KeyRing {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("kids", &kids)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl KeyRing {
    /// Parses `kid:secret` entries separated by commas or newlines; blank lines and lines
    /// starting with `#` are ignored. The first entry is the signing key.
    pub fn parse(
        spec: &str,
        issuer: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> Result<Self, KeyRingError> {
        let mut keys = Vec::new();
        let mut by_kid = HashMap::new();
        let entries = spec
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let (kid, secret) = entry
                .split_once(':')
                .ok_or(KeyRingError::Malformed(i + 1))?;
            let (kid, secret) = (kid.trim(), secret.trim());
            if kid.is_empty()
                || kid.len() > 64
                || !kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(KeyRingError::BadKid(kid.to_owned()));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyRingError::TooShort(kid.to_owned()));
            }
            if by_kid.insert(kid.to_owned(), keys.len()).is_some() {
                return Err(KeyRingError::Duplicate(kid.to_owned()));
            }
            keys.push(Key {
                kid: kid.to_owned(),
                fingerprint: fingerprint_key(secret.as_bytes()),
                encoding: EncodingKey::from_secret(secret.as_bytes()),
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                secret: SecretString::from(secret.to_owned()),
            });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self {
            keys,
            by_kid,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs,
        })
    }

    /// The key id new tokens are signed with.
    pub fn current_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// All key ids, signing key first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// A short fingerprint of the ring (never the secrets) for logs.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for key in &self.keys {
            hasher.update(key.kid.as_bytes());
            hasher.update(key.secret.expose_secret().as_bytes());
        }
        let digest = hasher.finalize();
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The MAC of `parts` (each length-prefixed, so no two lists of parts collide) under the
    /// fingerprint key of every ring key, the signing key's first, as lowercase hex. A record
    /// stores the first; a retry matches any, so a retry in flight survives a rotation as long
    /// as the key it began under is still in the ring.
    pub fn request_macs(&self, parts: &[&[u8]]) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| {
                let mut mac = key.fingerprint.clone();
                for part in parts {
                    mac.update(&(part.len() as u64).to_be_bytes());
                    mac.update(part);
                }
                mac.finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect()
    }

    /// Signs a token for `user_id` with the current key.
    pub fn issue(&self, user_id: &str, generation: u64) -> anyhow::Result<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            gen: generation,
        };
        let key = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &key.encoding)?)
    }

    /// Verifies a token: HS256 only, a known `kid`, a valid signature, and `exp`, `nbf`, `iss`
    /// and `aud` as this ring expects.
    ///
    /// This runs on every authenticated request, so each part of the token is decoded once:
    /// the header into the two fields that choose the key, the signature checked by
    /// `jsonwebtoken` against the base64 text as sent, then the claims into [`Claims`], whose
    /// fields are all required. (`jsonwebtoken::decode` would read the header three times and
    /// the claims twice; it made the token check the largest cost of `GET /api/user`.) The
    /// checks are those of `jsonwebtoken::Validation` for HS256 with `iss`, `aud`, `exp` and
    /// `nbf` required, with [`LEEWAY_SECS`] of clock skew.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_with_kid(token).map(|(claims, _)| claims)
    }

    /// [`verify`](Self::verify), also returning the id of the key that signed the token.
    pub fn verify_with_kid(&self, token: &str) -> Result<(Claims, &str), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::BadHeader)?;
        let (header, payload) = message.split_once('.').ok_or(TokenError::BadHeader)?;
        let header: TokenHeader = decode_part(header).ok_or(TokenError::BadHeader)?;
        // Pinning the algorithm rules out `none` and HS/RS confusion.
        if header.alg != "HS256" {
            return Err(TokenError::BadHeader);
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let index = *self.by_kid.get(&kid).ok_or(TokenError::UnknownKid)?;
        let key = &self.keys[index].decoding;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, Algorithm::HS256) {
            Ok(true) => {}
            _ => return Err(TokenError::Invalid("bad signature".into())),
        }
        let claims: Claims = decode_part(payload)
            .ok_or_else(|| TokenError::Invalid("claims missing or malformed".into()))?;
        let now = now_secs();
        if claims.exp < now.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECS {
            return Err(TokenError::Invalid("not yet valid".into()));
        }
        if claims.iss != self.issuer {
            return Err(TokenError::Invalid("wrong issuer".into()));
        }
        if claims.aud != self.audience {
            return Err(TokenError::Invalid("wrong audience".into()));
        }
        Ok((claims, &self.keys[index].kid))
    }
}

/// The header fields that decide how a token is checked.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// Decodes one base64url part of a token as JSON.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The fingerprint MAC of a ring key: keyed with HMAC-SHA256(secret, [`FINGERPRINT_LABEL`]).
fn fingerprint_key(secret: &[u8]) -> Hmac<Sha256> {
    let mut derive =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    derive.update(FINGERPRINT_LABEL);
    let derived = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&derived).expect("HMAC takes a key of any length")
}

/// A fresh ring line `kid:secret` with 48 random bytes, base64url encoded.
pub fn keygen_line(kid: Option<&str>) -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let kid = kid
        .map(str::to_owned)
        .unwrap_or_else(|| format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    format!("{kid}:{secret}")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const A: &str = "a:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "b:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec, "conduit", "conduit", 60).unwrap()
    }

    fn forge(header: &str, claims: &serde_json::Value, sig: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            sig
        )
    }

    fn claims_now(exp_offset: i64) -> serde_json::Value {
        let now = now_secs() as i64;
        serde_json::json!({"sub":"1","iss":"conduit","aud":"conduit","iat":now,"nbf":now,"exp":now+exp_offset})
    }

    #[test]
    fn a_token_issued_by_the_ring_verifies() {
        let ring = ring(A);
        let claims = ring.verify(&ring.issue("42", 0).unwrap()).unwrap();
        assert_eq!(claims.sub, "42");
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = ring(A);
        let old_token = old.issue("7", 0).unwrap();
        // Step 1: the new key joins second; old tokens still verify, new ones still use the old key.
        let step1 = ring(&format!("{A},{B}"));
        assert!(step1.verify(&old_token).is_ok());
        assert_eq!(step1.current_kid(), "a");
        // Step 2: the new key signs; tokens from before still verify.
        let step2 = ring(&format!("{B}\n{A}"));
        let new_token = step2.issue("7", 0).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some("b")
        );
        assert!(step2.verify(&old_token).is_ok());
        assert!(
            step1.verify(&new_token).is_ok(),
            "a replica still on step 1 accepts step-2 tokens"
        );
        // Step 3: the old key is gone; its tokens stop working, new ones keep working.
        let step3 = ring(B);
        assert_eq!(step3.verify(&old_token), Err(TokenError::UnknownKid));
        assert!(step3.verify(&new_token).is_ok());
    }

    #[test]
    fn request_macs_are_keyed_per_ring_key_and_survive_a_rotation() {
        let parts: [&[u8]; 2] = [b"POST", b"{\"password\":\"hunter22\"}"];
        let before = ring(A).request_macs(&parts);
        let rotated = ring(&format!("{B},{A}")).request_macs(&parts);
        // The signing key's MAC comes first; the key a record began under still matches.
        assert_eq!(rotated.len(), 2);
        assert_eq!(rotated[1], before[0]);
        assert_ne!(rotated[0], before[0]);
        // Another split of the same bytes is another request.
        let split: [&[u8]; 2] = [b"POS", b"T{\"password\":\"hunter22\"}"];
        assert_ne!(ring(A).request_macs(&split), before);
    }

    #[test]
    fn a_token_from_another_ring_is_rejected() {
        let token = ring(A).issue("1", 0).unwrap();
        let other = ring("a:cccccccccccccccccccccccccccccccccccccccc");
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn alg_none_is_rejected() {
        let token = forge(
            r#"{"alg":"none","kid":"a","typ":"JWT"}"#,
            &claims_now(60),
            "",
        );
        assert!(ring(A).verify(&token).is_err());
    }

    #[test]
    fn rs256_header_is_rejected_even_with_a_known_kid() {
        let token = forge(
            r#"{"alg":"RS256","kid":"a","typ":"JWT"}"#,
            &claims_now(60),
            "c2ln",
        );
        assert_eq!(ring(A).verify(&token), Err(TokenError::BadHeader));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_rejected() {
        let ring = ring(A);
        let key = EncodingKey::from_secret(&A.as_bytes()[2..]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".into());
        let expired = jsonwebtoken::encode(&header, &claims_now(-3600), &key).unwrap();
        assert_eq!(ring.verify(&expired), Err(TokenError::Expired));
        let mut future = claims_now(7200);
        future["nbf"] = serde_json::json!(now_secs() + 3600);
        let early = jsonwebtoken::encode(&header, &future, &key).unwrap();
        assert!(matches!(ring.verify(&early), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn wrong_audience_or_issuer_is_rejected() {
        let key = EncodingKey::from_secret(&A.as_bytes()[2..]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".into());
        for (field, value) in [("aud", "other"), ("iss", "other")] {
            let mut claims = claims_now(60);
            claims[field] = serde_json::json!(value);
            let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            assert!(
                matches!(ring(A).verify(&token), Err(TokenError::Invalid(_))),
                "{field}"
            );
        }
    }

    #[test]
    fn a_tampered_payload_is_rejected() {
        let ring = ring(A);
        let token = ring.issue("1", 0).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = serde_json::json!("2");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(matches!(
            ring.verify(&parts.join(".")),
            Err(TokenError::Invalid(_))
        ));
    }

    /// A correctly signed token over `claims` with the ring's key `a`.
    fn signed(claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".to_owned());
        let key = EncodingKey::from_secret(A.split_once(':').unwrap().1.as_bytes());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    #[test]
    fn a_signed_token_missing_a_required_claim_or_with_a_wrong_type_is_rejected() {
        let ring = ring(A);
        assert!(ring.verify(&signed(&claims_now(60))).is_ok());
        for field in ["sub", "iss", "aud", "iat", "nbf", "exp"] {
            let mut claims = claims_now(60);
            claims.as_object_mut().unwrap().remove(field);
            assert!(
                matches!(ring.verify(&signed(&claims)), Err(TokenError::Invalid(_))),
                "{field}"
            );
        }
        for (field, value) in [
            ("aud", serde_json::json!(["conduit"])),
            ("exp", serde_json::json!("never")),
            ("sub", serde_json::json!(1)),
        ] {
            let mut claims = claims_now(60);
            claims[field] = value;
            assert!(
                matches!(ring.verify(&signed(&claims)), Err(TokenError::Invalid(_))),
                "{field}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let ring = ring(A);
        let token = ring.issue("1", 0).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        for bad in [
            String::new(),
            "abc".to_owned(),
            message.to_owned(),
            format!("{token}.extra"),
            format!("{message}.{signature}="),
            format!("{message}.!{signature}"),
            format!("=={token}"),
            token.replacen('.', "..", 1),
        ] {
            assert!(ring.verify(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_and_unknown_kids_are_rejected() {
        let key = EncodingKey::from_secret(&A.as_bytes()[2..]);
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims_now(60), &key).unwrap();
        assert_eq!(ring(A).verify(&token), Err(TokenError::MissingKid));
        let token = ring(B).issue("1", 0).unwrap();
        assert_eq!(ring(A).verify(&token), Err(TokenError::UnknownKid));
    }

    #[test]
    fn oversize_tokens_are_rejected_before_parsing() {
        assert_eq!(ring(A).verify(&"a".repeat(5000)), Err(TokenError::TooLong));
    }

    #[test]
    fn ring_parsing_rejects_bad_entries() {
        let parse = |s: &str| KeyRing::parse(s, "i", "a", 1).map(|_| ());
        assert_eq!(parse(""), Err(KeyRingError::Empty));
        assert_eq!(
            parse("# only a comment, with a comma\n"),
            Err(KeyRingError::Empty)
        );
        assert_eq!(parse("nocolon"), Err(KeyRingError::Malformed(1)));
        assert_eq!(parse("a:short"), Err(KeyRingError::TooShort("a".into())));
        assert_eq!(
            parse(&format!("{A},{A}")),
            Err(KeyRingError::Duplicate("a".into()))
        );
        assert_eq!(
            parse("b a:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            Err(KeyRingError::BadKid("b a".into()))
        );
    }

    #[test]
    fn keygen_lines_parse_as_a_ring_and_differ() {
        let one = keygen_line(Some("k1"));
        let two = keygen_line(Some("k1"));
        assert_ne!(one, two);
        assert_eq!(
            KeyRing::parse(&one, "i", "a", 1).unwrap().current_kid(),
            "k1"
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let shown = format!("{:?}", ring(A));
        assert!(!shown.contains("aaaaaaaa"), "{shown}");
    }
}
