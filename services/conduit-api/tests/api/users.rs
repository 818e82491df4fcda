use crate::helpers::{spawn_app, spawn_with, test_config, unique_prefix};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn register_returns_201_with_a_working_token() {
    let app = spawn_app().await;
    let reply = app.post("/api/users", None, json!({"user": {"username": "jake", "email": "Jake@Example.com", "password": "password123"}})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let user = &reply.body["user"];
    assert_eq!(user["username"], "jake");
    assert_eq!(user["email"], "jake@example.com");
    assert!(user["bio"].is_null() && user["image"].is_null());
    let token = user["token"].as_str().unwrap();
    let me = app.get("/api/user", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["username"], "jake");
}

#[tokio::test]
async fn usernames_and_emails_are_unique_ignoring_case() {
    let app = spawn_app().await;
    app.register("jake").await;
    let reply = app.post("/api/users", None, json!({"user": {"username": "JAKE", "email": "JAKE@example.com", "password": "password123"}})).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = reply.errors();
    assert_eq!(errors["username"][0], "has already been taken");
    assert_eq!(errors["email"][0], "has already been taken");
}

#[tokio::test]
async fn registration_reports_every_invalid_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"user": {}}), vec!["username", "email", "password"]),
        (
            json!({"user": {"username": "a b", "email": "nope", "password": "short"}}),
            vec!["username", "email", "password"],
        ),
        (
            json!({"user": {"username": "ok", "email": "ok@x.io", "password": "x".repeat(200)}}),
            vec!["password"],
        ),
    ];
    for (body, fields) in cases {
        let reply = app.post("/api/users", None, body.clone()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let errors = reply.errors();
        for field in fields {
            assert!(
                errors.contains_key(field),
                "{field} missing for {body}: {}",
                reply.body
            );
        }
    }
}

#[tokio::test]
async fn login_succeeds_with_the_right_password_only() {
    let app = spawn_app().await;
    app.register("jake").await;
    let ok = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "JAKE@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body["user"]["token"].is_string());
    let wrong = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "jake@example.com", "password": "password124"}}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.errors()["email or password"][0], "is invalid");
    let unknown = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "who@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let blank = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "jake@example.com"}}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn repeated_login_failures_are_limited_for_every_replica_sharing_redis() {
    // Arrange: two replicas sharing Redis, three failures allowed.
    let prefix = unique_prefix();
    let mut config = test_config(&prefix, "a");
    config.login_max_failures = 3;
    let a = spawn_with(config.clone()).await;
    config.replica_id = Some("b".into());
    let b = spawn_with(config).await;
    a.register("jake").await;
    let bad = json!({"user": {"email": "jake@example.com", "password": "wrong-password"}});
    // Act: the tries are spread over both replicas.
    for app in [&a, &b, &a] {
        assert_eq!(
            app.post("/api/users/login", None, bad.clone()).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = b.login("jake").await;
    // Assert: the fourth try is refused even with the right password, with a Retry-After.
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    limited.errors();
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn the_current_user_can_change_every_field() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    let reply = app
        .put("/api/user", Some(&token), json!({"user": {"username": "jacob", "email": "jacob@example.com", "bio": "I work", "image": "https://img.example/j.png", "password": "new-password"}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let user = &reply.body["user"];
    assert_eq!(
        (user["username"].as_str(), user["email"].as_str()),
        (Some("jacob"), Some("jacob@example.com"))
    );
    assert_eq!(
        (user["bio"].as_str(), user["image"].as_str()),
        (Some("I work"), Some("https://img.example/j.png"))
    );
    // The old name is free again, the new password works, the old email no longer logs in.
    app.register("jake").await;
    let login = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "jacob@example.com", "password": "new-password"}}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/profiles/jacob", None).await.body["profile"]["bio"],
        "I work"
    );
    // null clears the bio.
    let cleared = app
        .put("/api/user", Some(&token), json!({"user": {"bio": null}}))
        .await;
    assert!(cleared.body["user"]["bio"].is_null(), "{}", cleared.body);
}

#[tokio::test]
async fn updates_are_validated() {
    let app = spawn_app().await;
    let token = app.register("jake").await;
    app.register("taken").await;
    let cases = [
        (
            json!({"user": {}}),
            "user",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"user": {"username": "taken"}}),
            "username",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"user": {"email": "taken@example.com"}}),
            "email",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"user": {"image": "ftp://x"}}),
            "image",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"user": {"password": "short"}}),
            "password",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (body, field, status) in cases {
        let reply = app.put("/api/user", Some(&token), body.clone()).await;
        assert_eq!(reply.status, status, "{body}");
        assert!(reply.errors().contains_key(field), "{body}: {}", reply.body);
    }
    assert_eq!(
        app.get("/api/user", Some(&token)).await.body["user"]["username"],
        "jake"
    );
}

#[tokio::test]
async fn a_flood_of_password_hashes_beyond_the_queue_is_refused_at_once_with_503() {
    // Arrange: a replica with no room for hashes waiting beyond the two running ones (one of
    // which the dummy hash made at start-up may still hold).
    let mut config = test_config(&unique_prefix(), "replica-a");
    config.password_hashers = Some(2);
    config.password_queue = 0;
    let app = std::sync::Arc::new(spawn_with(config).await);

    // Act: 30 registrations at once, each one a password hash.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..30 {
        let app = app.clone();
        flood.spawn(async move {
            let body = json!({"user": {"username": format!("flood{i}"),
                "email": format!("flood{i}@example.com"), "password": "password123"}});
            let res = app
                .client
                .post(format!("{}/api/users", app.address))
                .json(&body)
                .send()
                .await
                .unwrap();
            let retry_after = res.headers().get("retry-after").cloned();
            (res.status(), retry_after, res.text().await.unwrap())
        });
    }
    let replies = flood.join_all().await;

    // Assert: the hashes that found room ran; the others were refused with 503, told when to
    // come back, and nothing failed otherwise.
    let created = replies
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.0 == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(created + refused.len(), 30, "{replies:?}");
    assert!(created >= 1, "{replies:?}");
    assert!(
        !refused.is_empty(),
        "no registration was refused: {replies:?}"
    );
    for (_, retry_after, body) in &refused {
        assert_eq!(retry_after.as_ref().unwrap(), "1");
        assert!(body.contains("password hashing is at capacity"), "{body}");
    }
}

#[tokio::test]
async fn a_password_change_ends_older_tokens_where_the_user_record_is_read() {
    // Arrange: a token from registration, then a password change made with it.
    let app = spawn_app().await;
    let old = app.register("jake").await;
    let changed = app
        .put(
            "/api/user",
            Some(&old),
            json!({"user": {"password": "a-new-password"}}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let new = changed.body["user"]["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old, "the change answers with a new token");

    // Act
    let read_old = app.get("/api/user", Some(&old)).await;
    let update_old = app
        .put("/api/user", Some(&old), json!({"user": {"bio": "stolen"}}))
        .await;
    let read_new = app.get("/api/user", Some(&new)).await;
    let login = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "jake@example.com", "password": "a-new-password"}}),
        )
        .await;
    let publish_old = app
        .post(
            "/api/articles",
            Some(&old),
            json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;

    // Assert: the old token no longer reads or changes the user; the new one and a fresh
    // login's do. Routes that do not read the user record still take the old token until it
    // expires (the stateless trade-off the README states).
    assert_eq!(read_old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(update_old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(read_new.status, StatusCode::OK);
    let fresh = login.body["user"]["token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/user", Some(fresh)).await.status,
        StatusCode::OK
    );
    assert_eq!(publish_old.status, StatusCode::CREATED);
    assert_eq!(
        app.get("/api/user", Some(&new)).await.body["user"]["bio"],
        serde_json::Value::Null,
        "the old token changed nothing"
    );
}

#[tokio::test]
async fn registrations_from_one_address_are_limited_per_hour() {
    // Arrange: a limit of 3 an hour, behind a trusted proxy so the test can be two addresses.
    let mut config = crate::helpers::test_config(&crate::helpers::unique_prefix(), "replica-a");
    config.registrations_per_address = 3;
    config.trust_forwarded = true;
    let app = crate::helpers::spawn_with(config).await;
    let register = |name: &str, address: &'static str| {
        let body = json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}});
        let headers = [("X-Forwarded-For", address)];
        let app = &app;
        async move {
            let body = Some(body.to_string().into_bytes());
            app.raw(reqwest::Method::POST, "/api/users", None, body, &headers)
                .await
        }
    };

    // Act: four registrations from one /64, then one from another.
    let mut statuses = Vec::new();
    for (i, address) in ["2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1::3"]
        .iter()
        .enumerate()
    {
        statuses.push(register(&format!("user{i}"), address).await.status);
    }
    let refused = register("user3", "2001:db8:1:1::ffff").await;
    let elsewhere = register("user4", "2001:db8:1:2::1").await;

    // Assert
    assert_eq!(statuses, vec![StatusCode::CREATED; 3]);
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.errors().contains_key("registration"));
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", elsewhere.body);
    // The refused registration wrote nothing.
    let taken = app
        .post(
            "/api/users/login",
            None,
            json!({"user": {"email": "user3@example.com", "password": "password123"}}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNAUTHORIZED);
}
