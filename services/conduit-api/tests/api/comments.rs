use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn comments_are_added_listed_newest_first_and_deleted_by_their_author() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let anne = app.register("anne").await;
    app.create_article(&jake, "post", &[]).await;
    let first = app
        .post(
            "/api/articles/post/comments",
            Some(&anne),
            json!({"comment": {"body": "first"}}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["comment"]["body"], "first");
    assert_eq!(first.body["comment"]["author"]["username"], "anne");
    let first_id = first.body["comment"]["id"].as_u64().expect("numeric id");
    app.post(
        "/api/articles/post/comments",
        Some(&jake),
        json!({"comment": {"body": "second"}}),
    )
    .await;

    let list = app.get("/api/articles/post/comments", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let bodies: Vec<&str> = list.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["second", "first"]);

    let forbidden = app
        .delete(
            &format!("/api/articles/post/comments/{first_id}"),
            Some(&jake),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let deleted = app
        .delete(
            &format!("/api/articles/post/comments/{first_id}"),
            Some(&anne),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/articles/post/comments", None).await.body["comments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.delete(
            &format!("/api/articles/post/comments/{first_id}"),
            Some(&anne)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn comment_errors() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    app.create_article(&jake, "post", &[]).await;
    assert_eq!(
        app.post(
            "/api/articles/nope/comments",
            Some(&jake),
            json!({"comment": {"body": "x"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/articles/nope/comments", None).await.status,
        StatusCode::NOT_FOUND
    );
    let blank = app
        .post(
            "/api/articles/post/comments",
            Some(&jake),
            json!({"comment": {"body": ""}}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(blank.errors().contains_key("body"));
    assert_eq!(
        app.post(
            "/api/articles/post/comments",
            None,
            json!({"comment": {"body": "x"}})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    for id in ["abc", "1%3A2", "99999999999999999999999"] {
        assert_eq!(
            app.delete(&format!("/api/articles/post/comments/{id}"), Some(&jake))
                .await
                .status,
            StatusCode::NOT_FOUND,
            "{id}"
        );
    }
}

#[tokio::test]
async fn comments_come_in_pages_with_limit_and_offset() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    app.create_article(&jake, "post", &[]).await;
    for i in 0..5 {
        let reply = app
            .post(
                "/api/articles/post/comments",
                Some(&jake),
                json!({"comment": {"body": format!("c{i}")}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let bodies = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["body"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = app
        .get("/api/articles/post/comments?limit=2&offset=1", None)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(bodies(&page), vec!["c3", "c2"]);
    let all = app.get("/api/articles/post/comments", None).await;
    assert_eq!(bodies(&all), vec!["c4", "c3", "c2", "c1", "c0"]);
    let bad = app.get("/api/articles/post/comments?limit=-1", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.errors().contains_key("limit"));
}

#[tokio::test]
async fn a_page_of_long_comments_stops_near_one_mebibyte_and_the_next_offset_goes_on() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    app.create_article(&jake, "long", &[]).await;
    // 40 comments of 10 000 four-byte characters: 1.6 MB in all.
    let long = "\u{1F600}".repeat(10_000);
    for i in 0..40 {
        let reply = app
            .post(
                "/api/articles/long/comments",
                Some(&jake),
                json!({"comment": {"body": format!("{i:02}{}", &long[8..])}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    while seen.len() < 40 {
        let path = format!(
            "/api/articles/long/comments?limit=500&offset={}",
            seen.len()
        );
        let reply = app.get(&path, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let comments = reply.body["comments"].as_array().unwrap().clone();
        assert!(!comments.is_empty(), "stuck at offset {}", seen.len());
        let bytes = reply.body.to_string().len();
        pages.push((comments.len(), bytes));
        seen.extend(
            comments
                .iter()
                .map(|c| c["body"].as_str().unwrap()[..2].to_owned()),
        );
    }
    // Two pages, each under 1 MiB and its last comment, and every comment once, newest first.
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(
        pages.iter().all(|(_, bytes)| *bytes < (1 << 20) + 41_000),
        "{pages:?}"
    );
    let expected: Vec<String> = (0..40).rev().map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, expected);
}
