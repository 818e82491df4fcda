//! CORS: preflights answered before idempotency, auth and Redis; actual responses readable by
//! the allowed origins; `none` switches it all off; bad settings stop the replica.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    free_port, redis_url, spawn_app, spawn_with, test_config, unique_prefix, Reply, TestApp,
    TEST_KEYS,
};

const FRONTEND: &str = "http://localhost:5173";

/// A browser's preflight for `method path` from `origin`, with `extra` headers on top.
async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut headers = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key,traceparent",
        ),
    ];
    headers.extend_from_slice(extra);
    app.raw(Method::OPTIONS, path, None, None, &headers).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The comma-separated header `name`, lower-cased and split.
fn list(reply: &Reply, name: &str) -> Vec<String> {
    header(reply, name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn with_origins(origins: &str) -> conduit_api::Config {
    let mut config = test_config(&unique_prefix(), "replica-a");
    config.cors_origins = origins.to_owned();
    config
}

#[tokio::test]
async fn a_preflight_is_answered_204_with_methods_headers_and_max_age() {
    let app = spawn_app().await;

    let reply = preflight(&app, "/api/articles", FRONTEND, "POST", &[]).await;

    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    assert_eq!(reply.body, serde_json::Value::Null, "no body");
    assert_eq!(header(&reply, "access-control-allow-origin"), Some("*"));
    let methods = list(&reply, "access-control-allow-methods");
    for method in ["get", "post", "put", "delete"] {
        assert!(methods.contains(&method.to_owned()), "{methods:?}");
    }
    let allowed = list(&reply, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "traceparent",
    ] {
        assert!(allowed.contains(&name.to_owned()), "{allowed:?}");
    }
    assert_eq!(header(&reply, "access-control-max-age"), Some("3600"));
    assert!(
        header(&reply, "access-control-allow-credentials").is_none(),
        "tokens travel in a header: no credentials mode"
    );
    assert_eq!(reply.served_by(), "replica-a");
}

#[tokio::test]
async fn actual_responses_name_the_origin_and_expose_the_api_headers() {
    let app = spawn_app().await;
    let origin = [("Origin", FRONTEND)];

    let created = app
        .raw(
            Method::POST,
            "/api/users",
            None,
            Some(json!({"user": {"username": "corsy", "email": "corsy@example.com", "password": "password123"}}).to_string().into_bytes()),
            &origin,
        )
        .await;
    let refused = app.raw(Method::GET, "/api/user", None, None, &origin).await;

    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    for reply in [&created, &refused] {
        assert_eq!(header(reply, "access-control-allow-origin"), Some("*"));
        let exposed = list(reply, "access-control-expose-headers");
        for name in [
            "x-served-by",
            "x-trace-id",
            "idempotent-replayed",
            "retry-after",
        ] {
            assert!(exposed.contains(&name.to_owned()), "{exposed:?}");
        }
    }
}

#[tokio::test]
async fn with_a_list_only_listed_origins_are_allowed() {
    let app = spawn_with(with_origins(&format!("{FRONTEND},https://app.example.com"))).await;
    let stranger = "http://evil.example";

    let allowed = preflight(&app, "/api/articles", FRONTEND, "POST", &[]).await;
    let refused = preflight(&app, "/api/articles", stranger, "POST", &[]).await;
    let read_by_listed = app
        .raw(
            Method::GET,
            "/api/tags",
            None,
            None,
            &[("Origin", FRONTEND)],
        )
        .await;
    let read_by_stranger = app
        .raw(
            Method::GET,
            "/api/tags",
            None,
            None,
            &[("Origin", stranger)],
        )
        .await;

    assert_eq!(allowed.status, StatusCode::NO_CONTENT, "{}", allowed.body);
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        Some(FRONTEND)
    );
    assert!(list(&allowed, "vary").contains(&"origin".to_owned()));
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.errors().contains_key("cors"), "{}", refused.body);
    assert!(header(&refused, "access-control-allow-origin").is_none());
    assert_eq!(read_by_listed.status, StatusCode::OK);
    assert_eq!(
        header(&read_by_listed, "access-control-allow-origin"),
        Some(FRONTEND)
    );
    // Served (CORS is not access control), but the browser will not let the page read it.
    assert_eq!(read_by_stranger.status, StatusCode::OK);
    assert!(header(&read_by_stranger, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_preflight_for_a_header_not_allowed_is_refused_in_the_error_format() {
    let app = spawn_app().await;

    let reply = app
        .raw(
            Method::OPTIONS,
            "/api/articles",
            None,
            None,
            &[
                ("Origin", FRONTEND),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "x-not-allowed"),
            ],
        )
        .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.errors().contains_key("cors"), "{}", reply.body);
}

#[tokio::test]
async fn switched_off_there_are_no_cors_headers() {
    for off in ["none", ""] {
        let app = spawn_with(with_origins(off)).await;

        let pre = preflight(&app, "/api/articles", FRONTEND, "POST", &[]).await;
        let get = app
            .raw(
                Method::GET,
                "/api/tags",
                None,
                None,
                &[("Origin", FRONTEND)],
            )
            .await;

        assert_eq!(pre.status, StatusCode::METHOD_NOT_ALLOWED, "{off:?}");
        assert_eq!(get.status, StatusCode::OK, "{off:?}");
        for reply in [&pre, &get] {
            let cors: Vec<_> = reply
                .headers
                .keys()
                .filter(|name| name.as_str().starts_with("access-control-"))
                .collect();
            assert!(cors.is_empty(), "{off:?}: {cors:?}");
        }
    }
}

#[tokio::test]
async fn a_preflight_leaves_no_idempotency_record_and_ignores_a_bad_token() {
    let app = spawn_app().await;
    let key = [
        ("Idempotency-Key", "cors-1"),
        ("Authorization", "Token garbage"),
    ];

    let reply = preflight(&app, "/api/users", FRONTEND, "POST", &key).await;

    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    // Nothing but the fan-out job stream, which the replica's fan-out worker makes at start.
    let written: Vec<String> = app
        .keys()
        .into_iter()
        .filter(|k| !k.contains("{fanout}"))
        .collect();
    assert_eq!(written, Vec::<String>::new());
    // The same key on the real request does leave a record: the check above can see one.
    let real = app
        .raw(
            Method::POST,
            "/api/users",
            None,
            Some(json!({"user": {"username": "idem", "email": "idem@example.com", "password": "password123"}}).to_string().into_bytes()),
            &[("Idempotency-Key", "cors-1"), ("Origin", FRONTEND)],
        )
        .await;
    assert_eq!(real.status, StatusCode::CREATED, "{}", real.body);
    assert!(
        app.keys().iter().any(|k| k.contains("cors-1")),
        "{:?}",
        app.keys()
    );
}

#[tokio::test]
async fn a_preflight_needs_no_redis() {
    let mut config = with_origins("*");
    config.redis_url = format!("redis://127.0.0.1:{}", free_port());
    config.redis_cluster_urls = None;
    config.redis_timeout_ms = 300;
    let app = spawn_with(config).await;

    let pre = preflight(&app, "/api/articles", FRONTEND, "POST", &[]).await;
    let get = app
        .raw(
            Method::GET,
            "/api/tags",
            None,
            None,
            &[("Origin", FRONTEND)],
        )
        .await;

    assert_eq!(pre.status, StatusCode::NO_CONTENT, "{}", pre.body);
    assert_eq!(get.status, StatusCode::SERVICE_UNAVAILABLE, "{}", get.body);
    assert_eq!(header(&get, "access-control-allow-origin"), Some("*"));
}

#[test]
fn an_invalid_origin_stops_the_replica_with_exit_code_2() {
    let err = conduit_api::Application::build(with_origins("http://localhost:5173/"))
        .err()
        .expect("a trailing slash is not an origin");
    assert!(
        format!("{err:#}").contains("CONDUIT_CORS_ORIGINS"),
        "{err:#}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_conduit-api"))
        .env_clear()
        .env("CONDUIT_ADDR", "127.0.0.1:0")
        .env("CONDUIT_JWT_KEYS", TEST_KEYS)
        .env("CONDUIT_CORS_ORIGINS", "localhost:5173")
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid CONDUIT_CORS_ORIGINS") && stderr.contains("localhost:5173"),
        "{stderr}"
    );
}

/// One raw HTTP/1.1 exchange, returning the status line.
fn exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_preflight_is_logged_at_debug_and_a_call_at_info() {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{}.log", unique_prefix()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_conduit-api"))
        .env("CONDUIT_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis_url())
        .env("CONDUIT_REDIS_PREFIX", unique_prefix())
        .env("CONDUIT_JWT_KEYS", TEST_KEYS)
        .env("CONDUIT_DRAIN_SECONDS", "0")
        .env("CONDUIT_WORKERS", "1")
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "warn,conduit_api::access=debug")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the replica listens");

    let pre = exchange(
        port,
        "OPTIONS /api/articles HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5173\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    let get = exchange(
        port,
        "GET /api/tags HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5173\r\nConnection: close\r\n\r\n",
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exited = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();

    assert!(pre.starts_with("HTTP/1.1 204"), "{pre}");
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    let access = |method: &str| {
        lines
            .lines()
            .filter(|l| l.contains(&format!("request method={method} ")))
            .collect::<Vec<_>>()
    };
    let (options, gets) = (access("OPTIONS"), access("GET"));
    assert_eq!(options.len(), 1, "{lines}");
    assert!(options[0].contains("DEBUG conduit_api::access"), "{lines}");
    assert!(options[0].contains("status=204"), "{lines}");
    assert_eq!(gets.len(), 1, "{lines}");
    assert!(gets[0].contains(" INFO conduit_api::access"), "{lines}");
}
