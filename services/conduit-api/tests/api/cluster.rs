//! The key layout on a Redis Cluster: data spreads over every primary, and unique-value claims
//! left behind by a failed write do not block forever. Both also run against a single Redis.

use crate::helpers::{data_nodes, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_data_of_many_users_and_articles_spreads_over_every_primary() {
    // Arrange: a few users who write tagged articles, follow and favorite.
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(app.register(&format!("writer{i}")).await);
    }
    for (i, token) in tokens.iter().enumerate() {
        let tag = format!("tag{i}");
        app.create_article(token, &format!("Post number {i}"), &[&tag, "common"])
            .await;
    }
    app.post("/api/profiles/writer1/follow", Some(&tokens[0]), json!({}))
        .await;
    // Act
    let by_node = app.keys_by_node();
    // Assert: every data node (every primary in cluster mode) holds some of this app's keys.
    assert_eq!(by_node.len(), data_nodes().len());
    for (node, keys) in &by_node {
        assert!(
            keys.len() >= 3,
            "{node} holds {} keys: {keys:?}",
            keys.len()
        );
    }
    let total: usize = by_node.iter().map(|(_, keys)| keys.len()).sum();
    assert_eq!(total, app.keys().len());
    // The site-wide list and the tag list still see everything.
    let list = app.get("/api/articles?limit=100", None).await;
    assert_eq!(list.body["articlesCount"], 8);
    let tags = app.get("/api/tags", None).await.body["tags"].clone();
    assert_eq!(tags[0], "common", "{tags}");
    assert_eq!(tags.as_array().map(Vec::len), Some(9));
}

#[tokio::test]
async fn a_claim_left_by_a_user_that_never_came_to_exist_is_taken_over_after_a_grace_period() {
    let app = spawn_app().await;
    // A register that claimed "ghost" for user 999 and died before writing the user, long ago...
    let old = format!("{}:{{name:ghost}}:claim", app.prefix);
    let () = app.redis_cmd(
        redis::cmd("HSET")
            .arg(&old)
            .arg("owner")
            .arg("999")
            .arg("since")
            .arg("1000"),
    );
    // ...and one that died a moment ago, still inside the grace period.
    let recent = format!("{}:{{name:fresh}}:claim", app.prefix);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let () = app.redis_cmd(
        redis::cmd("HSET")
            .arg(&recent)
            .arg("owner")
            .arg("998")
            .arg("since")
            .arg(&now_ms),
    );
    // The missing users are nobody: no profile behind either claim.
    assert_eq!(
        app.get("/api/profiles/ghost", None).await.status,
        StatusCode::NOT_FOUND
    );
    // The old claim is taken over; the recent one still blocks, and blocks only the username.
    app.register("ghost").await;
    assert_eq!(
        app.get("/api/profiles/ghost", None).await.status,
        StatusCode::OK
    );
    let blocked = app
        .post(
            "/api/users",
            None,
            json!({"user": {"username": "fresh", "email": "fresh@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(
        blocked.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        blocked.body
    );
    assert!(blocked.errors().contains_key("username"));
    assert!(!blocked.errors().contains_key("email"));
    // The failed register gave its email claim back: another name can use that email.
    let other = app
        .post(
            "/api/users",
            None,
            json!({"user": {"username": "fresh2", "email": "fresh@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
}

#[tokio::test]
async fn followers_beyond_the_inline_batch_get_a_new_article_through_the_fan_out_workers() {
    // Arrange: a replica that fills no feed within the request, so every feed goes through the
    // job stream and the fan-out workers.
    let mut config = crate::helpers::test_config(&crate::helpers::unique_prefix(), "fan");
    config.fanout_inline = 0;
    let app = crate::helpers::spawn_with(config).await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    let bob = app.register("bob").await;
    for token in [&anne, &bob] {
        let reply = app
            .post("/api/profiles/jake/follow", Some(token), json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Act
    let slug = app.create_article(&jake, "Fanned out", &[]).await;
    // Assert: both feeds get it, within a bounded wait (polling, not timing).
    for token in [&anne, &bob] {
        let mut seen = Vec::new();
        for _ in 0..200 {
            let feed = app.get("/api/articles/feed", Some(token)).await;
            seen = feed.body["articles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["slug"].as_str().unwrap().to_owned())
                .collect();
            if !seen.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seen, vec![slug.clone()]);
    }
    // Deleting it takes it out of the feeds and the favorites the same way.
    let favorited = app
        .post(
            &format!("/api/articles/{slug}/favorite"),
            Some(&anne),
            json!({}),
        )
        .await;
    assert_eq!(favorited.status, StatusCode::OK);
    assert_eq!(
        app.delete(&format!("/api/articles/{slug}"), Some(&jake))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for token in [&anne, &bob] {
        let mut count = serde_json::Value::Null;
        for _ in 0..200 {
            count = app.get("/api/articles/feed", Some(token)).await.body["articlesCount"].clone();
            if count == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(count, 0);
    }
    let mut left = Vec::new();
    for _ in 0..200 {
        left = app
            .keys()
            .into_iter()
            .filter(|k| k.ends_with(":fans_gone") || k.ends_with(":favorites"))
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        app.get("/api/articles?favorited=anne", None).await.body["articlesCount"],
        0
    );
}

#[tokio::test]
async fn a_following_of_many_batches_gets_the_article_and_loses_it_again() {
    // Arrange: 3 000 followers (three fan-out jobs of 1 000), written straight into jake's
    // followers set, and a replica that fills no feed within the request.
    let mut config = crate::helpers::test_config(&crate::helpers::unique_prefix(), "fan");
    config.fanout_inline = 0;
    let app = crate::helpers::spawn_with(config).await;
    let jake = app.register("jake").await;
    let keys = conduit_api::store::Keys::new(&app.prefix);
    let me: String = app.redis_cmd(
        redis::cmd("HGET")
            .arg(keys.username_claim("jake"))
            .arg("owner"),
    );
    let followers: Vec<String> = (0..3000).map(|i| format!("f{i}")).collect();
    let added: i64 = app.redis_cmd(redis::cmd("SADD").arg(keys.followers(&me)).arg(&followers));
    assert_eq!(added, 3000);
    // Act: publish.
    let slug = app.create_article(&jake, "Many batches", &[]).await;
    let id: String = app.redis_cmd(redis::cmd("HGET").arg(keys.slug_claim(&slug)).arg("owner"));
    // Assert: every feed gets it (polling with a bound, not timing).
    let count = || feeds_holding(&app, &id);
    let mut n = 0;
    for _ in 0..300 {
        n = count();
        if n == 3000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(n, 3000, "feeds holding the new article");
    // And a delete takes it out of all of them again.
    assert_eq!(
        app.delete(&format!("/api/articles/{slug}"), Some(&jake))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for _ in 0..300 {
        n = count();
        if n == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(n, 0, "feeds still holding the deleted article");
}

/// How many feeds of the fake followers `f<n>` hold article `id`: one pipeline per data node,
/// each asking the node for the feeds it holds.
fn feeds_holding(app: &crate::helpers::TestApp, id: &str) -> usize {
    app.keys_by_node()
        .into_iter()
        .map(|(node, keys)| {
            let feeds: Vec<&String> = keys
                .iter()
                .filter(|k| k.contains(":{u:f") && k.ends_with("}:feed"))
                .collect();
            if feeds.is_empty() {
                return 0;
            }
            let mut pipe = redis::pipe();
            for feed in &feeds {
                pipe.cmd("ZSCORE").arg(*feed).arg(id);
            }
            let mut con = redis::Client::open(node.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let scores: Vec<Option<f64>> = pipe.query(&mut con).unwrap();
            scores.into_iter().flatten().count()
        })
        .sum()
}
