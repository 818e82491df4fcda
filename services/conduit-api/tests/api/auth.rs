//! Token checks: every bad token is a 401 with the Token challenge and the error body.

use crate::helpers::{spawn_app, spawn_with, test_config, unique_prefix, OTHER_KEY, TEST_KEYS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(kid: Option<&str>, secret: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"sub": sub, "iss": "conduit", "aud": "conduit", "iat": now(), "nbf": now(), "exp": now() + 600})
}

fn secret(ring_line: &str) -> &str {
    ring_line.split_once(':').unwrap().1
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let app = spawn_app().await;
    let good = app.register("jake").await;
    let sub = {
        let payload = good.split('.').nth(1).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        v["sub"].as_str().unwrap().to_owned()
    };
    let key = secret(TEST_KEYS);
    let mut expired = claims(&sub);
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    expired["nbf"] = json!(now() - 7200);
    let mut early = claims(&sub);
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims(&sub);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(&sub);
    wrong_iss["iss"] = json!("someone-else");
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims("999").to_string());
        parts.join(".")
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"test1"}"#),
        URL_SAFE_NO_PAD.encode(claims(&sub).to_string())
    );
    // HS/RS confusion: an RS256 header over an HMAC made with the shared secret.
    let rs_confusion = {
        forged::token(
            r#"{"alg":"RS256","typ":"JWT","kid":"test1"}"#,
            &claims(&sub),
            key,
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("alg confusion", format!("Token {rs_confusion}")),
        (
            "expired",
            format!("Token {}", sign(Some("test1"), key, expired)),
        ),
        (
            "not yet valid",
            format!("Token {}", sign(Some("test1"), key, early)),
        ),
        (
            "wrong audience",
            format!("Token {}", sign(Some("test1"), key, wrong_aud)),
        ),
        (
            "wrong issuer",
            format!("Token {}", sign(Some("test1"), key, wrong_iss)),
        ),
        (
            "wrong key",
            format!(
                "Token {}",
                sign(Some("test1"), secret(OTHER_KEY), claims(&sub))
            ),
        ),
        (
            "unknown kid",
            format!("Token {}", sign(Some("nope"), key, claims(&sub))),
        ),
        ("no kid", format!("Token {}", sign(None, key, claims(&sub)))),
        ("tampered", format!("Token {tampered}")),
        ("alg none", format!("Token {alg_none}")),
        ("garbage", "Token not.a.jwt".to_owned()),
        ("oversize", format!("Token {}", "a".repeat(6000))),
        ("wrong scheme", format!("Basic {good}")),
        ("no token", "Token".to_owned()),
    ];
    for (name, header) in cases {
        let reply = app.get_with_authorization("/api/user", &header).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(reply.headers["www-authenticate"], "Token", "{name}");
        assert!(reply.errors().contains_key("token"), "{name}");
    }
    // Missing header.
    let reply = app.get("/api/user", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["www-authenticate"], "Token");
    // An invalid token on an endpoint where auth is optional is still refused, not ignored.
    let optional = app
        .get_with_authorization("/api/articles", "Token not.a.jwt")
        .await;
    assert_eq!(optional.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_and_token_schemes_both_work() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    for header in [
        format!("Token {token}"),
        format!("Bearer {token}"),
        format!("bearer {token}"),
    ] {
        let reply = app.get_with_authorization("/api/user", &header).await;
        assert_eq!(reply.status, StatusCode::OK, "{header}");
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_until_the_old_key_leaves_the_ring() {
    // Arrange: a replica on the original ring issues a token.
    let prefix = unique_prefix();
    let old = spawn_with(test_config(&prefix, "old")).await;
    let old_token = old.register("jake").await;
    // Act: a replica with the new key first and the old one second.
    let mut rotated = test_config(&prefix, "rotated");
    rotated.jwt_keys = Some(format!("{OTHER_KEY},{TEST_KEYS}"));
    let rotated = spawn_with(rotated).await;
    let me = rotated.get("/api/user", Some(&old_token)).await;
    let login = rotated.login("jake").await;
    // Assert: the old token still works (and is handed back as it was), and a fresh login is
    // signed with the new key.
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["token"], old_token.as_str());
    assert_eq!(login.status, StatusCode::OK);
    let new_token = login.body["user"]["token"].as_str().unwrap().to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("test2")
    );
    // A replica that has only the new key refuses the old token and accepts the new one.
    let mut retired = test_config(&prefix, "retired");
    retired.jwt_keys = Some(OTHER_KEY.to_owned());
    let retired = spawn_with(retired).await;
    assert_eq!(
        retired.get("/api/user", Some(&old_token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        retired.get("/api/user", Some(&new_token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_replica_without_a_key_refuses_to_start_and_says_how_to_make_one() {
    let mut config = test_config(&unique_prefix(), "keyless");
    config.jwt_keys = None;
    let err = match conduit_api::Application::build(config) {
        Ok(_) => panic!("started without a key"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("conduit-api keygen"), "{err}");
}

/// Builds a token with any header, signed with HMAC-SHA256 over `header.payload`.
mod forged {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    pub fn token(header: &str, claims: &serde_json::Value, secret: &str) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // Reuse jsonwebtoken's HS256 signer for the MAC itself.
        let mac = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        format!("{signing_input}.{mac}")
    }
}
