//! Idempotency-Key: at most one execution per user and key, replayed from any replica.

use crate::helpers::{spawn_app, spawn_with, test_config, unique_prefix, Reply, TestApp};
use conduit_api::store::{Begin, NewArticle, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &serde_json::Value) -> Reply {
    app.raw(
        Method::POST,
        "/api/articles",
        Some(token),
        Some(body.to_string().into_bytes()),
        &[("Idempotency-Key", key)],
    )
    .await
}

fn article_count(app: &TestApp) -> usize {
    app.keys()
        .iter()
        .filter(|k| k.starts_with(&format!("{}:{{a:", app.prefix)) && k.ends_with("}:article"))
        .count()
}

#[tokio::test]
async fn a_retried_write_is_replayed_not_repeated() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let body = json!({"article": {"title": "Once", "description": "d", "body": "b"}});
    let first = post_with_key(&app, &token, "key-1", &body).await;
    let second = post_with_key(&app, &token, "key-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body, second.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(article_count(&app), 1);
    // A new key is a new write.
    assert_eq!(
        post_with_key(&app, &token, "key-2", &body).await.status,
        StatusCode::CREATED
    );
    assert_eq!(article_count(&app), 2);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    post_with_key(
        &app,
        &token,
        "k",
        &json!({"article": {"title": "One", "description": "d", "body": "b"}}),
    )
    .await;
    let other = post_with_key(
        &app,
        &token,
        "k",
        &json!({"article": {"title": "Two", "description": "d", "body": "b"}}),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(other.errors().contains_key("Idempotency-Key"));
    assert_eq!(article_count(&app), 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_user() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    let body = json!({"article": {"title": "Same", "description": "d", "body": "b"}});
    let a = post_with_key(&app, &jake, "shared", &body).await;
    let b = post_with_key(&app, &anne, "shared", &body).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_ne!(a.body["article"]["author"], b.body["article"]["author"]);
    assert!(b.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn concurrent_duplicates_execute_once() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let body =
        json!({"article": {"title": "Race", "description": "d", "body": "b", "tagList": ["t"]}});
    let replies =
        futures_util::future::join_all((0..12).map(|_| post_with_key(&app, &token, "race", &body)))
            .await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    for conflict in replies.iter().filter(|r| r.status == StatusCode::CONFLICT) {
        conflict.errors();
        assert!(conflict.headers.contains_key("retry-after"));
    }
    assert_eq!(article_count(&app), 1);
    assert_eq!(app.get("/api/tags", None).await.body["tags"], json!(["t"]));
}

#[tokio::test]
async fn a_write_committed_by_a_replica_that_died_is_not_repeated_by_the_retry() {
    // Arrange: a replica and a user.
    let prefix = unique_prefix();
    let app = spawn_with(test_config(&prefix, "survivor")).await;
    let token = app.register("jake").await;
    let me = app.get("/api/user", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    let user_id = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        v["sub"].as_str().unwrap().to_owned()
    };
    // Act 1: play a replica that takes the lease, commits the write, and dies before answering.
    let body = json!({"article": {"title": "Crash", "description": "d", "body": "b"}}).to_string();
    let fingerprints = crate::helpers::fingerprints("POST", "/api/articles", body.as_bytes());
    let store = Store::new(
        &test_config(&prefix, "doomed").redis_target(),
        &prefix,
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let Begin::Proceed { lease, .. } = store
        .idempotency_begin(&user_id, "crash-key", &fingerprints, 4, 600)
        .await
        .unwrap()
    else {
        panic!("expected to proceed");
    };
    let tags: Vec<String> = vec![];
    let new = NewArticle {
        slug_base: "crash",
        title: "Crash",
        description: "d",
        body: "b",
        tags: &tags,
    };
    store
        .create_article(Some(&lease), &user_id, &new)
        .await
        .unwrap();
    // While its lease lives, a retry is told to wait.
    let early = app
        .raw(
            Method::POST,
            "/api/articles",
            Some(&token),
            Some(body.clone().into_bytes()),
            &[("Idempotency-Key", "crash-key")],
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    // Act 2: after the lease expires the client's retry reaches a live replica.
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let retry = app
        .raw(
            Method::POST,
            "/api/articles",
            Some(&token),
            Some(body.into_bytes()),
            &[("Idempotency-Key", "crash-key")],
        )
        .await;
    // Assert: the client gets the article the dead replica wrote, and there is still only one.
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body["article"]["slug"], "crash");
    assert_eq!(article_count(&app), 1);
}

#[tokio::test]
async fn bad_keys_are_refused() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let long = "k".repeat(300);
    let reply = post_with_key(
        &app,
        &token,
        &long,
        &json!({"article": {"title": "t", "description": "d", "body": "b"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.errors().contains_key("Idempotency-Key"));
    assert_eq!(article_count(&app), 0);
}

#[tokio::test]
async fn login_is_never_stored_however_its_path_is_spelled() {
    // Arrange
    let app = spawn_app().await;
    app.register("jake").await;
    let body = json!({"user": {"email": "jake@example.com", "password": "password123"}});

    // Act: the login route, once as written and once with a percent-encoded letter.
    for path in ["/api/users/login", "/api/users/%6Cogin"] {
        let reply = app
            .raw(
                reqwest::Method::POST,
                path,
                None,
                Some(body.to_string().into_bytes()),
                &[("Idempotency-Key", "login-key")],
            )
            .await;
        assert_eq!(
            reply.status,
            reqwest::StatusCode::OK,
            "{path}: {}",
            reply.body
        );
    }

    // Assert: no idempotency record holds a login's fresh token.
    let stored: Vec<String> = app
        .keys()
        .into_iter()
        .filter(|k| k.contains("login-key"))
        .collect();
    assert_eq!(stored, Vec::<String>::new());
}

/// The bound the junk flood below must stay under: the records one anonymous address and one
/// user may create at the caps it sets (20 each), at well under 400 bytes a record, plus their
/// two counters.
const JUNK_FLOOD_MAX_BYTES: i64 = 24 * 1024;

#[tokio::test]
async fn ten_thousand_junk_requests_with_fresh_keys_leave_redis_a_bounded_few_bytes() {
    // Arrange: a replica with small caps on records per address and per user, and one user.
    let mut config = test_config(&unique_prefix(), "replica-a");
    config.idempotency_records_per_address = 20;
    config.idempotency_records_per_user = 20;
    config.workers = Some(2);
    let app = spawn_with(config).await;
    let token = app.register("jake").await;
    let before = app.stored_bytes();

    // Act: 10 000 requests, each with a fresh Idempotency-Key: anonymous writes to no route, to
    // routes that need a token, with methods the route does not serve, to login spelled two
    // ways, junk registrations, and the user's junk writes to no route and to a real route.
    use futures_util::StreamExt as _;
    let kinds: [(Method, &str, bool); 9] = [
        (Method::POST, "/api/nothing-here", false),
        (Method::POST, "/api/articles", false),
        (Method::DELETE, "/api/profiles/jake/follow", false),
        (Method::PATCH, "/api/users", false),
        (Method::DELETE, "/api/users", false),
        (Method::POST, "/api/users/%6Cogin", false),
        (Method::POST, "/api/users", false),
        (Method::PUT, "/api/nothing-here", true),
        (Method::POST, "/api/articles", true),
    ];
    let statuses: Vec<u16> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let (method, path, as_user) = kinds[i % kinds.len()].clone();
            let key = format!("junk-{i}");
            let app = &app;
            let token = token.clone();
            async move {
                let body = br#"{"junk": true}"#.to_vec();
                let token = as_user.then_some(token.as_str());
                let reply = app
                    .raw(
                        method,
                        path,
                        token,
                        Some(body),
                        &[("Idempotency-Key", &key)],
                    )
                    .await;
                reply.status.as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Assert: no 500, and Redis holds a bounded few bytes.
    assert!(statuses.iter().all(|s| *s < 500), "a 5xx in the flood");
    let records = app
        .keys()
        .iter()
        .filter(|k| k.contains("idem:") || k.ends_with(":idem"))
        .count();
    let grown = app.stored_bytes() - before;
    println!("the flood left {records} records, {grown} bytes");
    assert!(
        grown < JUNK_FLOOD_MAX_BYTES,
        "10 000 junk requests left {grown} bytes in Redis (bound {JUNK_FLOOD_MAX_BYTES})"
    );
    assert!(records <= 40, "{records} records");
    // And the caps were reached and said so.
    assert!(statuses.contains(&429), "no cap was reached");
    let refused = app
        .raw(
            Method::POST,
            "/api/users",
            None,
            Some(br#"{"junk": true}"#.to_vec()),
            &[("Idempotency-Key", "one-more")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.errors().contains_key("Idempotency-Key"));
    assert!(refused.headers.contains_key("retry-after"));
}

/// The unkeyed fingerprint of before: SHA-256 over the length-prefixed parts.
fn unkeyed_fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), b"", body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn stored_records_hold_no_token_or_password_and_a_replay_still_gets_a_working_token() {
    // Arrange
    let app = spawn_app().await;
    let password = "a-secret-horse-battery";
    let body =
        json!({"user": {"username": "jake", "email": "jake@example.com", "password": password}})
            .to_string()
            .into_bytes();
    let register = |key: &'static str| {
        let headers = [("Idempotency-Key", key)];
        let body = body.clone();
        let app = &app;
        async move {
            app.raw(Method::POST, "/api/users", None, Some(body), &headers)
                .await
        }
    };

    // Act: register, change the bio with a key, and replay both.
    let first = register("reg-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let token = first.body["user"]["token"].as_str().unwrap().to_owned();
    let update = json!({"user": {"bio": "hello"}}).to_string().into_bytes();
    let put = |key: &'static str| {
        let headers = [("Idempotency-Key", key)];
        let (body, app, token) = (update.clone(), &app, &token);
        async move {
            app.raw(Method::PUT, "/api/user", Some(token), Some(body), &headers)
                .await
        }
    };
    let updated = put("put-1").await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);

    // Assert: no value in Redis holds the token, the password, or a plain hash of the body.
    let secrets: [&[u8]; 3] = [
        token.as_bytes(),
        password.as_bytes(),
        &unkeyed_fingerprint("POST", "/api/users", &body).into_bytes(),
    ];
    for value in app.stored_values() {
        for secret in secrets {
            assert!(
                !contains(&value, secret),
                "a stored value holds a secret: {}",
                String::from_utf8_lossy(&value)
            );
        }
    }
    // And each replay carries a token that works.
    for replay in [register("reg-1").await, put("put-1").await] {
        assert_eq!(replay.headers["idempotent-replayed"], "true");
        let fresh = replay.body["user"]["token"].as_str().unwrap();
        assert!(!fresh.is_empty(), "{}", replay.body);
        let me = app.get("/api/user", Some(fresh)).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        assert_eq!(me.body["user"]["username"], "jake");
    }

    // After a password change, replaying the registration signs nothing.
    let changed = app
        .put(
            "/api/user",
            Some(&token),
            json!({"user": {"password": "another-long-password"}}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    let stale = register("reg-1").await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.body);
    assert!(stale.body["user"].is_null());
}
