//! Behaviour that must agree with the OpenAPI document (cases found by checking the API against
//! it with schemathesis, see docs/CONFORMANCE.md).

use crate::helpers::spawn_app;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_known_path_with_an_unserved_method_is_405_with_allow() {
    // Arrange
    let app = spawn_app().await;
    let cases = [
        (Method::TRACE, "/api/tags", "GET"),
        (Method::POST, "/api/user", "GET, PUT"),
        (Method::PATCH, "/api/articles/some-slug", "GET, PUT, DELETE"),
        (Method::PUT, "/api/articles/some-slug/comments/7", "DELETE"),
        (Method::DELETE, "/healthz", "GET"),
    ];
    for (method, path, allow) in cases {
        // Act
        let reply = app.call(method.clone(), path, None, None).await;
        // Assert
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert!(reply.errors().contains_key("method"), "{}", reply.body);
    }
}

#[tokio::test]
async fn an_unknown_path_is_still_404() {
    let app = spawn_app().await;
    let reply = app
        .call(Method::TRACE, "/api/nothing-here", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert!(reply.headers.get("allow").is_none());
    assert!(reply.errors().contains_key("route"), "{}", reply.body);
}

#[tokio::test]
async fn page_parameters_outside_int64_are_422() {
    // Arrange
    let app = spawn_app().await;
    // Act and assert: the document says `integer`, `format: int64`, `minimum: 0`.
    for query in [
        "limit=9223372036854775808",
        "offset=18446744073709551615",
        "offset=-1",
        "limit=1.5",
    ] {
        let reply = app.get(&format!("/api/articles?{query}"), None).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            reply.body
        );
    }
    let reply = app
        .get("/api/articles?limit=9223372036854775807&offset=0", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn more_than_20_tags_are_refused_even_with_duplicates() {
    // Arrange
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let tags = vec!["same"; 21];
    // Act
    let reply = app
        .post(
            "/api/articles",
            Some(&token),
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": tags}}),
        )
        .await;
    // Assert: `maxItems: 20` counts the list as sent.
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert!(reply.errors().contains_key("tagList"), "{}", reply.body);
}

#[tokio::test]
async fn the_document_lists_every_operation_with_a_default_error_response() {
    let app = spawn_app().await;
    let reply = app.get("/api/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let paths = reply.body["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{}", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["default"].is_object(),
                "{method} {path} has no default response"
            );
        }
    }
    // An update names at least one field.
    let update = &reply.body["components"]["schemas"]["UpdateUser"];
    assert!(update["allOf"][1]["anyOf"].is_array(), "{update}");
}
