//! Malformed, oversized and hostile requests get the error body and the right status, never a
//! 500, and write nothing.

use crate::helpers::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn malformed_bodies_are_client_errors() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let keys_before = app.keys();
    let deep = format!(
        r#"{{"article": {{"title": "t", "description": "d", "body": "b", "tagList": {}{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "malformed",
            b"{\"article\": {".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "truncated",
            b"{\"article\": {\"title\": \"x\"".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("not json", b"title=x".to_vec(), StatusCode::BAD_REQUEST),
        ("empty", Vec::new(), StatusCode::BAD_REQUEST),
        (
            "invalid utf-8",
            b"{\"article\": {\"title\": \"\xff\xfe\"}}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "deep nesting",
            deep.into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "wrong type",
            br#"{"article": {"title": 5, "description": "d", "body": "b"}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "wrong shape",
            br#"{"article": []}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "tags not a list",
            br#"{"article": {"title": "t", "description": "d", "body": "b", "tagList": "x"}}"#
                .to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "nul in title",
            br#"{"article": {"title": "a\u0000b", "description": "d", "body": "b"}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "huge title",
            json!({"article": {"title": "t".repeat(20_000), "description": "d", "body": "b"}})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "oversize",
            json!({"article": {"title": "t", "description": "d", "body": "b".repeat(70_000)}})
                .to_string()
                .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (name, body, status) in cases {
        let reply = app
            .raw(Method::POST, "/api/articles", Some(&token), Some(body), &[])
            .await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        reply.errors();
    }
    assert_eq!(app.keys(), keys_before, "nothing was written");
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let reply = app.post("/api/articles", Some(&token), json!({"article": {"title": "t", "description": "d", "body": "b", "admin": true}, "extra": 1})).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.body["article"].get("admin").is_none());
}

#[tokio::test]
async fn nul_and_key_syntax_in_every_user_string_are_refused_or_kept_as_data() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let keys_before = app.keys();
    for (path, body) in [
        (
            "/api/users",
            json!({"user": {"username": "a\u{0}b", "email": "x@y.io", "password": "password123"}}),
        ),
        (
            "/api/users",
            json!({"user": {"username": "a:b*", "email": "x@y.io", "password": "password123"}}),
        ),
        (
            "/api/users",
            json!({"user": {"username": "ok", "email": "x\u{0}@y.io", "password": "password123"}}),
        ),
        (
            "/api/articles",
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": ["a\u{0}"]}}),
        ),
        (
            "/api/articles/x/comments",
            json!({"comment": {"body": "\u{0}"}}),
        ),
    ] {
        let reply = app.post(path, Some(&token), body.clone()).await;
        assert!(
            reply.status.is_client_error(),
            "{path} {body}: {}",
            reply.status
        );
        reply.errors();
    }
    assert_eq!(app.keys(), keys_before);
    // Path segments with key syntax are plain lookups.
    for path in [
        "/api/profiles/*",
        "/api/profiles/a:b",
        "/api/articles/%7Bx%7D",
        "/api/articles/*/comments",
    ] {
        assert_eq!(
            app.get(path, None).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn very_long_urls_and_headers_do_not_break_the_replica() {
    let app = spawn_app().await;
    let long_path = format!("/api/articles/{}", "a".repeat(16_000));
    let reply = app.get(&long_path, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let res = app
        .client
        .get(format!("{}/api/tags", app.address))
        .header("X-Big", "v".repeat(100_000))
        .send()
        .await;
    if let Ok(res) = res {
        assert!(!res.status().is_server_error(), "{}", res.status());
    }
    // The replica still serves.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_article_titled_feed_is_not_shadowed_by_the_feed_route() {
    // Arrange
    let app = spawn_app().await;
    let token = app.register("jake").await;

    // Act
    let slug = app.create_article(&token, "Feed", &[]).await;

    // Assert: the slug is not the feed's path, and it leads to the article.
    assert_ne!(slug, "feed");
    let read = app.get(&format!("/api/articles/{slug}"), None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["article"]["title"], "Feed");
}

#[tokio::test]
async fn one_line_fields_refuse_bidi_overrides_and_zero_width_characters() {
    // Arrange
    let app = spawn_app().await;
    let token = app.register("jake").await;

    // Act: a title that reverses the text after it, and a tag that hides a zero-width space.
    let res = app
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": "Invoice \u{202E}fdp.exe", "description": "d", "body": "b",
                "tagList": ["rust\u{200B}"]}}),
        )
        .await;

    // Assert
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = res.errors();
    assert!(
        errors.contains_key("title") && errors.contains_key("tagList"),
        "{errors:?}"
    );
    assert_eq!(
        app.get("/api/articles", None).await.body["articlesCount"],
        0
    );
}
