//! A replica that dies between two steps of a write that spans slots: readers never see a
//! half-made entity, and the client's retry with the same `Idempotency-Key` finishes the write
//! exactly once.

use crate::helpers::{spawn_with, test_config, unique_prefix, TestApp};
use conduit_api::store::{Begin, NewArticle, Store};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn user_id(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// A store like the app's that stops every write after `step`.
fn dying_store(app: &TestApp, step: &'static str) -> Store {
    Store::new(
        &test_config(&app.prefix, "doomed").redis_target(),
        &app.prefix,
        std::time::Duration::from_secs(2),
    )
    .unwrap()
    .stopping_after(step)
}

fn slugs(body: &serde_json::Value) -> Vec<String> {
    body["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_article_write_interrupted_after_any_step_is_finished_by_the_retry() {
    for step in ["slug_claim", "put_article", "author_list"] {
        // Arrange: a user, and a replica that dies after `step` of creating an article.
        let app = spawn_with(test_config(&unique_prefix(), "survivor")).await;
        let token = app.register("jake").await;
        let body = json!({"article": {"title": "Crash", "description": "d", "body": "b", "tagList": ["t"]}})
            .to_string();
        let fingerprints = crate::helpers::fingerprints("POST", "/api/articles", body.as_bytes());
        let store = dying_store(&app, step);
        let Begin::Proceed { lease, .. } = store
            .idempotency_begin(&user_id(&token), "crash-key", &fingerprints, 10, 600)
            .await
            .unwrap()
        else {
            panic!("expected to proceed");
        };
        let tags = vec!["t".to_owned()];
        let new = NewArticle {
            slug_base: "crash",
            title: "Crash",
            description: "d",
            body: "b",
            tags: &tags,
        };
        assert!(store
            .create_article(Some(&lease), &user_id(&token), &new)
            .await
            .is_err());
        // The dying replica's request answered 503, so the key was given back.
        store.idempotency_release(&lease).await.unwrap();

        // Assert: nothing half-made shows. Before the article hash exists it is not found;
        // after, it is readable by slug but not yet listed.
        let by_slug = app.get("/api/articles/crash", None).await.status;
        let expected = if step == "slug_claim" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(by_slug, expected, "after {step}");
        let listed = app.get("/api/articles", None).await;
        assert!(
            slugs(&listed.body).is_empty(),
            "after {step}: {}",
            listed.body
        );
        assert_eq!(app.get("/api/tags", None).await.body["tags"], json!([]));

        // Act: the client's retry with the same key.
        let retry = app
            .raw(
                Method::POST,
                "/api/articles",
                Some(&token),
                Some(body.clone().into_bytes()),
                &[("Idempotency-Key", "crash-key")],
            )
            .await;

        // Assert: the same article, once, in every index.
        assert_eq!(
            retry.status,
            StatusCode::CREATED,
            "after {step}: {}",
            retry.body
        );
        assert_eq!(retry.body["article"]["slug"], "crash", "after {step}");
        for path in [
            "/api/articles",
            "/api/articles?author=jake",
            "/api/articles?tag=t",
        ] {
            let list = app.get(path, None).await;
            assert_eq!(slugs(&list.body), vec!["crash"], "after {step}: {path}");
            assert_eq!(list.body["articlesCount"], 1, "after {step}: {path}");
        }
        assert_eq!(app.get("/api/tags", None).await.body["tags"], json!(["t"]));
        let hashes: Vec<String> = app
            .keys()
            .into_iter()
            .filter(|k| k.contains(":{a:") && k.ends_with("}:article"))
            .collect();
        assert_eq!(hashes.len(), 1, "after {step}: {hashes:?}");
    }
}

#[tokio::test]
async fn a_register_interrupted_after_its_claims_is_finished_by_the_retry() {
    // Arrange: a replica that dies after claiming the username and email.
    let app = spawn_with(test_config(&unique_prefix(), "survivor")).await;
    let body = json!({"user": {"username": "jake", "email": "jake@example.com", "password": "password123"}})
        .to_string();
    let fingerprints = crate::helpers::fingerprints("POST", "/api/users", body.as_bytes());
    let store = dying_store(&app, "user_claims");
    let Begin::Proceed { lease, .. } = store
        .idempotency_begin("anon", "reg-key", &fingerprints, 10, 600)
        .await
        .unwrap()
    else {
        panic!("expected to proceed");
    };
    assert!(store
        .create_user(Some(&lease), "jake", "jake@example.com", "not-a-real-hash")
        .await
        .is_err());
    store.idempotency_release(&lease).await.unwrap();
    // Assert: the claims alone are nobody.
    assert_eq!(
        app.get("/api/profiles/jake", None).await.status,
        StatusCode::NOT_FOUND
    );
    // Act: the retry with the same key.
    let retry = app
        .raw(
            Method::POST,
            "/api/users",
            None,
            Some(body.into_bytes()),
            &[("Idempotency-Key", "reg-key")],
        )
        .await;
    // Assert: registered, and the claims are the new user's.
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(
        app.get("/api/profiles/jake", None).await.status,
        StatusCode::OK
    );
    assert_eq!(app.login("jake").await.status, StatusCode::OK);
}
