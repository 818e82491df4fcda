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

#[tokio::test]
async fn the_first_request_after_redis_answers_again_succeeds_though_the_last_connection_attempt_timed_out(
) {
    // Arrange: Redis's address stops answering, as a restarted container's address does while
    // its neighbours still hold its old link address: connection attempts time out rather than
    // being refused. Here a listener that never accepts, its one-place backlog taken.
    let port = free_port();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(([127, 0, 0, 1], port).into()).unwrap();
    let silent = socket.listen(0).unwrap();
    let queued = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut config = test_config(&unique_prefix(), "patient");
    config.redis_url = format!("redis://127.0.0.1:{port}");
    config.redis_cluster_urls = None;
    config.redis_timeout_ms = 300;
    let app = spawn_with(config).await;
    let while_silent = app.get("/readyz", None).await;
    // The replica's own attempts (the first and its retry) run out too, so what its connection
    // holds now is a failed attempt.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Act: Redis answers on that address again; one request, no warm-up.
    drop(queued);
    drop(silent);
    let mut redis = start_redis(port);
    let first = app.get("/readyz", None).await;
    let _ = redis.kill();
    let _ = redis.wait();

    // Assert: the failed attempt was not handed to the request: it got a fresh one.
    assert_eq!(while_silent.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
}

/// A free port below 55536 whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_536 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn a_replica_in_cluster_mode_starts_while_the_cluster_is_unreachable_and_recovers() {
    // Arrange: cluster seeds on ports nothing listens on yet.
    let port = free_cluster_port();
    let mut config = test_config(&unique_prefix(), "early");
    config.redis_cluster_urls = Some(format!("redis://127.0.0.1:{port}"));
    let app = spawn_with(config).await;
    // Assert: alive, not ready, and it says which mode it runs in.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["redis"], "cluster", "{}", ready.body);
    let register = |name: &str| {
        let body = serde_json::json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}});
        app.post("/api/users", None, body)
    };
    let write = register("early").await;
    assert_eq!(
        write.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        write.body
    );

    // Act: a one-node cluster comes up on the seed's port and takes every slot.
    let dir = std::env::temp_dir().join(unique_prefix());
    std::fs::create_dir_all(&dir).unwrap();
    #[allow(clippy::zombie_processes)] // killed and waited for below
    let mut node = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        // A lone node never learns its own address from a peer: announce it.
        .args(["--cluster-announce-ip", "127.0.0.1"])
        .args([
            "--cluster-enabled",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--cluster-config-file")
        .arg(dir.join("nodes.conf"))
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed for the tests");
    let mut formed = false;
    for _ in 0..100 {
        let state = Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "cluster",
                "addslotsrange",
                "0",
                "16383",
            ])
            .output()
            .ok()
            .and_then(|_| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .ok()
            })
            .map(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
            .unwrap_or(false);
        if state {
            formed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Assert: the replica finds the cluster by itself and serves.
    let mut ready = false;
    let mut written = StatusCode::SERVICE_UNAVAILABLE;
    if formed {
        for _ in 0..100 {
            if app.get("/readyz", None).await.status == StatusCode::OK {
                ready = true;
                written = register("late").await.status;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(formed, "the one-node cluster did not form");
    assert!(
        ready,
        "the replica did not become ready once the cluster was up"
    );
    assert_eq!(written, StatusCode::CREATED);
}
