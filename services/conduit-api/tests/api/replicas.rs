//! Several replicas sharing only Redis and the key ring answer as one service.

use crate::helpers::{spawn_with, test_config, unique_prefix};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn any_replica_serves_any_request() {
    // Arrange: three replicas on three ports.
    let prefix = unique_prefix();
    let a = spawn_with(test_config(&prefix, "replica-1")).await;
    let b = spawn_with(test_config(&prefix, "replica-2")).await;
    let c = spawn_with(test_config(&prefix, "replica-3")).await;

    // Act: register on the first, write on the second, read on the third.
    let token = a.register("jake").await;
    let me_b = b.get("/api/user", Some(&token)).await;
    let me_c = c.get("/api/user", Some(&token)).await;
    let created = b
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": "Shared", "description": "d", "body": "b"}}),
        )
        .await;
    let read = c.get("/api/articles/shared", Some(&token)).await;
    let faved = a
        .post("/api/articles/shared/favorite", Some(&token), json!({}))
        .await;
    let listed = c.get("/api/articles?favorited=jake", Some(&token)).await;

    // Assert
    assert_eq!((me_b.status, me_c.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["article"]["author"]["username"], "jake");
    assert_eq!(faved.body["article"]["favoritesCount"], 1);
    assert_eq!(listed.body["articlesCount"], 1);
    assert_eq!(listed.body["articles"][0]["favorited"], true);
    let served: HashSet<String> = [&me_b, &me_c, &created, &read, &faved]
        .iter()
        .map(|r| r.served_by())
        .collect();
    assert_eq!(
        served,
        HashSet::from([
            "replica-1".to_owned(),
            "replica-2".to_owned(),
            "replica-3".to_owned()
        ])
    );
}

#[tokio::test]
async fn an_idempotent_retry_on_another_replica_is_replayed() {
    let prefix = unique_prefix();
    let a = spawn_with(test_config(&prefix, "replica-1")).await;
    let b = spawn_with(test_config(&prefix, "replica-2")).await;
    let token = a.register("jake").await;
    let body = json!({"article": {"title": "Retry", "description": "d", "body": "b"}})
        .to_string()
        .into_bytes();
    let first = a
        .raw(
            Method::POST,
            "/api/articles",
            Some(&token),
            Some(body.clone()),
            &[("Idempotency-Key", "k")],
        )
        .await;
    let retry = b
        .raw(
            Method::POST,
            "/api/articles",
            Some(&token),
            Some(body),
            &[("Idempotency-Key", "k")],
        )
        .await;
    assert_eq!(
        (first.status, retry.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first.body, retry.body);
    assert_eq!(retry.served_by(), "replica-2");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(b.get("/api/articles", None).await.body["articlesCount"], 1);
}
