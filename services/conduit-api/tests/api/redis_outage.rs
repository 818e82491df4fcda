//! With Redis gone, requests fail fast with 503 and the replica recovers by itself.

use crate::helpers::{free_port, spawn_with, test_config, unique_prefix};
use reqwest::StatusCode;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start_redis(port: u16) -> Child {
    #[allow(clippy::zombie_processes)] // every caller kills and waits for it
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed for the tests (apt-get install redis-server)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not start on port {port}");
}

#[tokio::test]
async fn requests_fail_fast_with_503_while_redis_is_down_and_recover_after() {
    // Arrange: a private Redis, and a replica started while it is not running yet.
    let port = free_port();
    let mut config = test_config(&unique_prefix(), "lonely");
    config.redis_url = format!("redis://127.0.0.1:{port}");
    config.redis_cluster_urls = None;
    let app = spawn_with(config).await;
    let not_ready = app.get("/readyz", None).await;
    assert_eq!(
        not_ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "started without Redis, not ready"
    );
    assert_eq!(
        app.get("/healthz", None).await.status,
        StatusCode::OK,
        "but alive"
    );

    let mut redis = start_redis(port);
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz", None).await.status == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the replica connects once Redis is up");
    let token = app.register("jake").await;

    // Act: Redis dies.
    redis.kill().unwrap();
    redis.wait().unwrap();
    let down = app.get("/api/user", Some(&token)).await;
    let write = app
        .post(
            "/api/articles",
            Some(&token),
            serde_json::json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;

    // Assert: 503 in the error format with Retry-After, and readiness drops.
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert!(down.errors().contains_key("service"));
    assert_eq!(down.headers["retry-after"], "1");
    assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Redis returns (empty: no persistence here) and the replica serves again without a restart.
    let mut redis = start_redis(port);
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/api/tags", None).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = redis.kill();
    let _ = redis.wait();
    assert!(recovered, "the replica recovered by itself");
}
