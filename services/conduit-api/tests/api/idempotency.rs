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
    let fingerprint =
        conduit_api::idempotency::fingerprint("POST", "/api/articles", "", body.as_bytes());
    let store = Store::new(
        &test_config(&prefix, "doomed").redis_target(),
        &prefix,
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let Begin::Proceed(lease) = store
        .idempotency_begin(&user_id, "crash-key", &fingerprint, 4, 600)
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
