use crate::helpers::{cluster_urls, spawn_app};
use reqwest::StatusCode;

#[tokio::test]
async fn health_and_readiness_name_the_replica() {
    // Arrange
    let app = spawn_app().await;
    // Act
    let health = app.get("/healthz", None).await;
    let ready = app.get("/readyz", None).await;
    // Assert
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["replica"], app.replica.as_str());
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ok");
    let mode = if cluster_urls().is_some() {
        "cluster"
    } else {
        "single"
    };
    assert_eq!(ready.body["redis"], mode, "{}", ready.body);
}

#[tokio::test]
async fn every_response_says_which_replica_served_it() {
    let app = spawn_app().await;
    for path in [
        "/healthz",
        "/api/tags",
        "/api/articles",
        "/api/nothing-here",
        "/api/user",
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.served_by(), "replica-a", "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_get_a_json_404_and_unserved_methods_a_json_405() {
    let app = spawn_app().await;
    let reply = app.get("/api/no/such/route", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.errors().contains_key("route"));
    let reply = app
        .call(reqwest::Method::PATCH, "/api/user", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, PUT");
    reply.errors();
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc = app.get("/api/openapi.json", None).await.body;
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/users",
        "/api/users/login",
        "/api/user",
        "/api/profiles/{username}",
        "/api/profiles/{username}/follow",
        "/api/articles",
        "/api/articles/feed",
        "/api/articles/{slug}",
        "/api/articles/{slug}/favorite",
        "/api/articles/{slug}/comments",
        "/api/articles/{slug}/comments/{id}",
        "/api/tags",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(doc["components"]["securitySchemes"]["Token"].is_object());
}
