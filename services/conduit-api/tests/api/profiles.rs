use crate::helpers::spawn_app;
use reqwest::StatusCode;

#[tokio::test]
async fn profiles_show_following_for_the_viewer() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    app.register("celeb").await;
    let anonymous = app.get("/api/profiles/celeb", None).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.body["profile"]["following"], false);

    let followed = app
        .post(
            "/api/profiles/CELEB/follow",
            Some(&jake),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(followed.status, StatusCode::OK, "{}", followed.body);
    assert_eq!(followed.body["profile"]["username"], "celeb");
    assert_eq!(followed.body["profile"]["following"], true);
    assert_eq!(
        app.get("/api/profiles/celeb", Some(&jake)).await.body["profile"]["following"],
        true
    );
    assert_eq!(
        app.get("/api/profiles/celeb", None).await.body["profile"]["following"],
        false
    );

    let unfollowed = app.delete("/api/profiles/celeb/follow", Some(&jake)).await;
    assert_eq!(unfollowed.status, StatusCode::OK);
    assert_eq!(unfollowed.body["profile"]["following"], false);
}

#[tokio::test]
async fn profile_errors() {
    let app = spawn_app().await;
    let jake = app.register("jake").await;
    let missing = app.get("/api/profiles/nobody", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.errors();
    assert_eq!(
        app.post(
            "/api/profiles/nobody/follow",
            Some(&jake),
            serde_json::json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let anonymous = app
        .post("/api/profiles/jake/follow", None, serde_json::json!({}))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let own = app
        .post(
            "/api/profiles/jake/follow",
            Some(&jake),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);
    own.errors();
}
