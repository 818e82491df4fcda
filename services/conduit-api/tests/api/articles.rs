use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn slugs(reply: &Value) -> Vec<String> {
    reply["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_owned())
        .collect()
}

fn is_rfc3339_millis_utc(s: &str) -> bool {
    // 2026-11-28T05:00:00.123Z
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23) || c.is_ascii_digit())
}

#[tokio::test]
async fn create_article_returns_201_with_the_full_article() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let reply = app
        .post("/api/articles", Some(&token), json!({"article": {"title": "How to Train Your Dragon", "description": "Ever wonder how?", "body": "You have to believe", "tagList": ["training", "dragons", "training"]}}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let a = &reply.body["article"];
    assert_eq!(a["slug"], "how-to-train-your-dragon");
    assert_eq!(a["body"], "You have to believe");
    assert_eq!(a["tagList"], json!(["dragons", "training"]));
    assert_eq!(a["favorited"], false);
    assert_eq!(a["favoritesCount"], 0);
    assert_eq!(a["author"]["username"], "jake");
    assert!(
        is_rfc3339_millis_utc(a["createdAt"].as_str().unwrap()),
        "{}",
        a["createdAt"]
    );
    assert!(is_rfc3339_millis_utc(a["updatedAt"].as_str().unwrap()));
    let fetched = app
        .get("/api/articles/how-to-train-your-dragon", None)
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["article"]["title"], "How to Train Your Dragon");
}

#[tokio::test]
async fn article_validation_and_auth() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let missing = app
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": " "}}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = missing.errors();
    assert!(
        errors.contains_key("title")
            && errors.contains_key("description")
            && errors.contains_key("body")
    );
    let bad_tags = app
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": [""]}}),
        )
        .await;
    assert_eq!(bad_tags.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_tags.errors().contains_key("tagList"));
    let anonymous = app
        .post(
            "/api/articles",
            None,
            json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/articles", None).await.body["articlesCount"],
        0
    );
}

#[tokio::test]
async fn lists_are_newest_first_paged_and_counted() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    for i in 0..5 {
        app.create_article(&token, &format!("Article {i}"), &[])
            .await;
    }
    let all = app.get("/api/articles", None).await.body;
    assert_eq!(
        slugs(&all),
        vec![
            "article-4",
            "article-3",
            "article-2",
            "article-1",
            "article-0"
        ]
    );
    assert_eq!(all["articlesCount"], 5);
    assert!(
        all["articles"][0].get("body").is_none(),
        "list items omit body"
    );
    let page = app.get("/api/articles?limit=2&offset=1", None).await.body;
    assert_eq!(slugs(&page), vec!["article-3", "article-2"]);
    assert_eq!(
        page["articlesCount"], 5,
        "the count is of all matches, not of the page"
    );
    assert_eq!(
        slugs(&app.get("/api/articles?limit=0", None).await.body).len(),
        0
    );
    assert_eq!(
        slugs(&app.get("/api/articles?offset=10", None).await.body).len(),
        0
    );
    for bad in ["limit=-1", "limit=abc", "offset=1.5"] {
        let reply = app.get(&format!("/api/articles?{bad}"), None).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        reply.errors();
    }
}

/// The unfiltered list reads each of the global index's 16 buckets (id mod 16) only for its
/// share of the page, and reads further where deletions left one bucket holding more of the
/// newest articles than that: here all 4 of a 4-article page.
#[tokio::test]
async fn the_unfiltered_list_is_exact_when_one_bucket_holds_the_whole_page() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    for i in 0..64 {
        app.create_article(&token, &format!("a{i}"), &[]).await;
    }
    let mut stored: Vec<(u64, String)> = app
        .keys()
        .into_iter()
        .filter(|k| k.contains(":{a:") && k.ends_with(":article"))
        .map(|k| {
            let (id, slug): (u64, String) =
                app.redis_cmd(redis::cmd("HMGET").arg(&k).arg("id").arg("slug"));
            (id, slug)
        })
        .collect();
    stored.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
    assert_eq!(stored.len(), 64);
    let bucket = stored[0].0 % 16;
    let kept: Vec<&(u64, String)> = stored.iter().filter(|(id, _)| id % 16 == bucket).collect();
    let oldest_kept = kept[3].0;
    let mut left = stored.len();
    for (id, slug) in &stored {
        if *id > oldest_kept && id % 16 != bucket {
            left -= 1;
            let reply = app
                .delete(&format!("/api/articles/{slug}"), Some(&token))
                .await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
        }
    }
    let newest: Vec<String> = kept[..4].iter().map(|(_, slug)| slug.clone()).collect();
    let page = app.get("/api/articles?limit=4", None).await.body;
    assert_eq!(slugs(&page), newest);
    assert_eq!(page["articlesCount"], left);
    let page = app
        .get("/api/articles?limit=2&offset=2", Some(&token))
        .await
        .body;
    assert_eq!(slugs(&page), newest[2..]);
    let page = app.get("/api/articles?limit=6", None).await.body;
    let mut expected = newest.clone();
    expected.extend(
        stored
            .iter()
            .filter(|(id, _)| *id < oldest_kept)
            .take(2)
            .map(|(_, slug)| slug.clone()),
    );
    assert_eq!(slugs(&page), expected);
}

#[tokio::test]
async fn the_page_size_is_capped_at_100() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    for i in 0..102 {
        app.create_article(&token, &format!("a{i}"), &[]).await;
    }
    let reply = app.get("/api/articles?limit=500", None).await.body;
    assert_eq!(reply["articles"].as_array().unwrap().len(), 100);
    assert_eq!(reply["articlesCount"], 102);
    assert_eq!(
        app.get("/api/articles", None).await.body["articles"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test]
async fn lists_filter_by_tag_author_and_favorited() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    app.create_article(&jake, "j1", &["rust", "web"]).await;
    app.create_article(&jake, "j2", &["web"]).await;
    app.create_article(&anne, "a1", &["rust"]).await;
    app.post("/api/articles/a1/favorite", Some(&jake), json!({}))
        .await;
    app.post("/api/articles/j1/favorite", Some(&jake), json!({}))
        .await;

    let by_tag = app.get("/api/articles?tag=rust", None).await.body;
    assert_eq!(
        (slugs(&by_tag), by_tag["articlesCount"].clone()),
        (vec!["a1".to_owned(), "j1".to_owned()], json!(2))
    );
    assert_eq!(
        slugs(&app.get("/api/articles?author=jake", None).await.body),
        vec!["j2", "j1"]
    );
    assert_eq!(
        slugs(&app.get("/api/articles?favorited=jake", None).await.body),
        vec!["a1", "j1"]
    );
    let both = app
        .get("/api/articles?tag=rust&author=jake", None)
        .await
        .body;
    assert_eq!(
        (slugs(&both), both["articlesCount"].clone()),
        (vec!["j1".to_owned()], json!(1))
    );
    assert_eq!(
        slugs(&app.get("/api/articles?author=nobody", None).await.body).len(),
        0
    );
    let viewer = app
        .get("/api/articles?favorited=jake", Some(&jake))
        .await
        .body;
    assert!(viewer["articles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["favorited"] == true));
}

#[tokio::test]
async fn the_feed_holds_followed_authors_only() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    let bob = app.register("bob").await;
    app.create_article(&anne, "before follow", &[]).await;
    app.create_article(&bob, "bob writes", &[]).await;
    app.post("/api/profiles/anne/follow", Some(&jake), json!({}))
        .await;
    app.create_article(&anne, "after follow", &[]).await;
    let feed = app.get("/api/articles/feed", Some(&jake)).await;
    assert_eq!(feed.status, StatusCode::OK);
    assert_eq!(slugs(&feed.body), vec!["after-follow", "before-follow"]);
    assert_eq!(feed.body["articlesCount"], 2);
    assert!(feed.body["articles"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["author"]["following"] == true));
    app.delete("/api/profiles/anne/follow", Some(&jake)).await;
    assert_eq!(
        app.get("/api/articles/feed", Some(&jake)).await.body["articlesCount"],
        0
    );
    assert_eq!(
        app.get("/api/articles/feed", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn updating_the_title_changes_the_slug_and_only_the_author_may() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    app.create_article(&jake, "Original", &["x"]).await;
    let forbidden = app
        .put(
            "/api/articles/original",
            Some(&anne),
            json!({"article": {"body": "mine now"}}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    forbidden.errors();
    let updated = app
        .put(
            "/api/articles/original",
            Some(&jake),
            json!({"article": {"title": "Renamed", "tagList": ["y"]}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["article"]["slug"], "renamed");
    assert_eq!(updated.body["article"]["body"], "the text");
    assert_eq!(updated.body["article"]["tagList"], json!(["y"]));
    assert_eq!(
        app.get("/api/articles/original", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/tags", None).await.body["tags"], json!(["y"]));
    assert_eq!(
        app.put(
            "/api/articles/none",
            Some(&jake),
            json!({"article": {"body": "x"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put("/api/articles/renamed", Some(&jake), json!({"article": {}}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn slug_collisions_get_a_suffix() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let first = app.create_article(&jake, "Same Title", &[]).await;
    let second = app.create_article(&jake, "Same Title", &[]).await;
    let third = app.create_article(&jake, "same   title!", &[]).await;
    assert_eq!(first, "same-title");
    assert!(
        second.starts_with("same-title-") && second != third && third.starts_with("same-title-"),
        "{second} {third}"
    );
    for slug in [&first, &second, &third] {
        assert_eq!(
            app.get(&format!("/api/articles/{slug}"), None).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn favorites_count_and_toggle() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    app.create_article(&jake, "fav", &[]).await;
    let fav = app
        .post("/api/articles/fav/favorite", Some(&anne), json!({}))
        .await;
    assert_eq!(fav.status, StatusCode::OK);
    assert_eq!(
        (
            fav.body["article"]["favorited"].clone(),
            fav.body["article"]["favoritesCount"].clone()
        ),
        (json!(true), json!(1))
    );
    let again = app
        .post("/api/articles/fav/favorite", Some(&anne), json!({}))
        .await;
    assert_eq!(
        again.body["article"]["favoritesCount"], 1,
        "favoriting twice counts once"
    );
    app.post("/api/articles/fav/favorite", Some(&jake), json!({}))
        .await;
    assert_eq!(
        app.get("/api/articles/fav", None).await.body["article"]["favoritesCount"],
        2
    );
    let unfav = app.delete("/api/articles/fav/favorite", Some(&anne)).await;
    assert_eq!(
        (
            unfav.body["article"]["favorited"].clone(),
            unfav.body["article"]["favoritesCount"].clone()
        ),
        (json!(false), json!(1))
    );
    assert_eq!(
        app.post("/api/articles/nope/favorite", Some(&anne), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/articles/fav/favorite", None, json!({}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn deleting_an_article_removes_every_trace_of_it() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    app.post("/api/profiles/jake/follow", Some(&anne), json!({}))
        .await;
    let keys_before = app.keys();
    app.create_article(&jake, "doomed", &["t1", "t2"]).await;
    app.post("/api/articles/doomed/favorite", Some(&anne), json!({}))
        .await;
    app.post(
        "/api/articles/doomed/comments",
        Some(&anne),
        json!({"comment": {"body": "hi"}}),
    )
    .await;
    assert_eq!(
        app.delete("/api/articles/doomed", Some(&anne)).await.status,
        StatusCode::FORBIDDEN
    );

    let deleted = app.delete("/api/articles/doomed", Some(&jake)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/articles/doomed", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/api/articles/doomed", Some(&jake)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/tags", None).await.body["tags"], json!([]));
    assert_eq!(
        app.get("/api/articles/feed", Some(&anne)).await.body["articlesCount"],
        0
    );
    // Only the id counters may be new: no hash, index entry or set of the article is left.
    let new_keys: Vec<String> = app
        .keys()
        .into_iter()
        .filter(|k| !keys_before.contains(k) && !k.contains(":{seq}:"))
        .collect();
    assert!(new_keys.is_empty(), "left behind: {new_keys:?}");
}

#[tokio::test]
async fn redis_special_characters_stay_data() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let tag = "a:b{c}*?[x] y";
    let slug = app
        .create_article(&jake, "{weird}: *title* [x]", &[tag, "*"])
        .await;
    assert_eq!(slug, "weird-title-x");
    let by_tag = app
        .get("/api/articles?tag=a%3Ab%7Bc%7D*%3F%5Bx%5D%20y", None)
        .await
        .body;
    assert_eq!(slugs(&by_tag), vec![slug.clone()]);
    assert_eq!(
        slugs(&app.get("/api/articles?tag=*", None).await.body),
        vec![slug]
    );
    assert_eq!(
        slugs(&app.get("/api/articles?tag=a", None).await.body).len(),
        0
    );
    for key in app.keys() {
        // `<prefix>:{<hash tag>}:<name>`: the braces of the hash tag are the only ones.
        let rest = &key[app.prefix.len()..];
        assert!(rest.starts_with(":{"), "no hash tag in {key}");
        let after_tag = rest.find('}').map(|i| &rest[i + 1..]).unwrap_or_default();
        let tag = &rest[2..rest.len() - after_tag.len() - 1];
        assert!(
            !tag.contains(['{', '}', '*', '?', '[', ' '])
                && !after_tag.contains(['{', '}', '*', '?', '[', ' ']),
            "unescaped key {key}"
        );
    }
}

#[tokio::test]
async fn a_page_shows_the_viewers_favorites_and_counts_even_for_articles_stored_before_the_count() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    let bob = app.register("bob").await;
    for title in ["one", "two", "three"] {
        app.create_article(&jake, title, &["counted"]).await;
    }
    for (token, slug) in [(&anne, "one"), (&bob, "one"), (&anne, "three")] {
        let reply = app
            .post(
                &format!("/api/articles/{slug}/favorite"),
                Some(token),
                json!({}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // Article "one" as an older version stored it: no count in its hash.
    let hash = app
        .keys()
        .into_iter()
        .find(|k| {
            k.ends_with(":article")
                && app.redis_cmd::<Option<String>>(redis::cmd("HGET").arg(k).arg("slug"))
                    == Some("one".into())
        })
        .expect("the article hash of \"one\"");
    let removed: i64 = app.redis_cmd(redis::cmd("HDEL").arg(&hash).arg("favorites"));
    assert_eq!(
        removed, 1,
        "the favorite step stores the count with the article"
    );

    let page = app.get("/api/articles?tag=counted", Some(&anne)).await;
    assert_eq!(page.status, StatusCode::OK);
    let seen: Vec<(String, bool, u64)> = page.body["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["slug"].as_str().unwrap().to_owned(),
                a["favorited"].as_bool().unwrap(),
                a["favoritesCount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("three".into(), true, 1),
            ("two".into(), false, 0),
            ("one".into(), true, 2)
        ]
    );
    let single = app.get("/api/articles/one", Some(&bob)).await;
    assert_eq!(
        (
            single.body["article"]["favorited"].clone(),
            single.body["article"]["favoritesCount"].clone()
        ),
        (json!(true), json!(2))
    );
    // The next toggle stores the count again.
    app.delete("/api/articles/one/favorite", Some(&bob)).await;
    let stored: Option<String> = app.redis_cmd(redis::cmd("HGET").arg(&hash).arg("favorites"));
    assert_eq!(stored.as_deref(), Some("1"));
}
