//! The largest legal pages, every field at its longest, stay under a stated response size.
//!
//! Characters are counted, not bytes: the longest field is its maximum number of 4-byte
//! characters (JSON escapes of the allowed control characters, `\n`, `\r` and `\t`, take 2).

use crate::helpers::spawn_app;
use conduit_api::routes::COMMENT_PAGE_BYTES;
use reqwest::StatusCode;
use serde_json::json;

/// A 4-byte character (U+1F600).
const WIDE: &str = "\u{1F600}";

/// The largest profile as JSON: username 40 ASCII, bio 1000 characters, image 2048 ASCII, plus
/// names and punctuation.
const PROFILE_MAX_BYTES: usize = 40 + 4 * 1000 + 2048 + 100;
/// One list item at most: title 200 and description 1000 characters, slug 80 ASCII, 20 tags of
/// 40 characters, the author, timestamps, counts and names.
const LIST_ITEM_MAX_BYTES: usize =
    4 * 200 + 4 * 1000 + 80 + 20 * (4 * 40 + 3) + PROFILE_MAX_BYTES + 300;
/// One comment at most: a body of 10 000 characters, the author, id, timestamps and names.
const COMMENT_MAX_BYTES: usize = 4 * 10_000 + PROFILE_MAX_BYTES + 200;
/// The largest article list (limit 100, items without bodies): about 1.5 MB.
const ARTICLE_PAGE_MAX_BYTES: usize = 100 * LIST_ITEM_MAX_BYTES + 100;
/// The largest comments page: 500 such comments would be 23 MB, but a page stops once its
/// comments and authors pass [`COMMENT_PAGE_BYTES`] (1 MiB); JSON names and punctuation add a
/// few hundred bytes a comment.
const COMMENT_PAGE_MAX_BYTES: usize =
    COMMENT_PAGE_BYTES + (COMMENT_PAGE_BYTES / COMMENT_MAX_BYTES + 2) * 300;

fn wide(n: usize) -> String {
    WIDE.repeat(n)
}

async fn body_bytes(app: &crate::helpers::TestApp, path: &str) -> (StatusCode, Vec<u8>) {
    let res = app
        .client
        .get(format!("{}{}", app.address, path))
        .send()
        .await
        .unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn the_largest_article_list_and_comments_page_stay_under_their_stated_size() {
    // Arrange: an author whose profile is at its longest, 100 articles and 60 comments (2.8 MB,
    // more than a page may hold), every field at its longest.
    let app = spawn_app().await;
    let name = "u".repeat(40);
    let token = app.register(&name).await;
    let image = format!("https://{}", "i".repeat(2048 - 8));
    let profile = json!({"user": {"bio": wide(1000), "image": image}});
    assert_eq!(
        app.put("/api/user", Some(&token), profile).await.status,
        StatusCode::OK
    );
    let tags: Vec<String> = (0..20).map(|i| format!("{i:02}{}", wide(38))).collect();
    let mut slug = String::new();
    for i in 0..100 {
        let title = format!("{i:03}{}", wide(197));
        let article = json!({"article": {"title": title, "description": wide(1000),
            "body": "b", "tagList": tags}});
        let reply = app.post("/api/articles", Some(&token), article).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        slug = reply.body["article"]["slug"].as_str().unwrap().to_owned();
    }
    for _ in 0..60 {
        let comment = json!({"comment": {"body": wide(10_000)}});
        let path = format!("/api/articles/{slug}/comments");
        let reply = app.post(&path, Some(&token), comment).await;
        assert!(reply.status.is_success(), "{}", reply.status);
    }

    // Act
    let (list_status, list) = body_bytes(&app, "/api/articles?limit=100").await;
    let comments_path = format!("/api/articles/{slug}/comments?limit=500");
    let (comments_status, comments) = body_bytes(&app, &comments_path).await;

    // Assert: full pages, under the stated sizes, and near them (the fields were at their longest).
    assert_eq!(
        (list_status, comments_status),
        (StatusCode::OK, StatusCode::OK)
    );
    let list_json: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let comments_json: serde_json::Value = serde_json::from_slice(&comments).unwrap();
    assert_eq!(list_json["articles"].as_array().unwrap().len(), 100);
    let returned = comments_json["comments"].as_array().unwrap().len();
    assert!(
        (2..60).contains(&returned),
        "the comments page asked for 500 stops early: {returned} comments"
    );
    println!(
        "article list {} bytes (bound {ARTICLE_PAGE_MAX_BYTES}), comments page {} bytes (bound {COMMENT_PAGE_MAX_BYTES})",
        list.len(),
        comments.len()
    );
    assert!(list.len() < ARTICLE_PAGE_MAX_BYTES, "{}", list.len());
    assert!(
        comments.len() < COMMENT_PAGE_MAX_BYTES,
        "{}",
        comments.len()
    );
    assert!(
        list.len() > ARTICLE_PAGE_MAX_BYTES * 9 / 10,
        "{}",
        list.len()
    );
    assert!(
        comments.len() > COMMENT_PAGE_MAX_BYTES * 9 / 10,
        "{}",
        comments.len()
    );
}
