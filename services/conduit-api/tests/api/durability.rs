//! `CONDUIT_REDIS_MIN_REPLICAS`: a write is acknowledged only once a replica has it; a primary
//! without any replica keeps taking writes and readiness says so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{cluster_urls, free_port, spawn_with, test_config, unique_prefix};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A `redis-server` child in a directory of its own; both are gone on drop.
struct Server(Child, u16, PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

/// Starts a `redis-server`. Its own working directory matters: a replica writes the snapshot it
/// received there, and a server started where one lies loads it, replication id included, so
/// a later replica could resume from it instead of making a full sync.
fn redis_server(extra: &[&str]) -> Server {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("conduit-durability-{port}-{}", unique_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed for the tests"),
        port,
        dir,
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not start on port {port}");
}

fn connection(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn info_replication(port: u16) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut connection(port))
        .unwrap()
}

/// A replica of the API on the single Redis at `port`, whose writes wait for one replica.
async fn app_waiting_for_a_replica(port: u16, name: &str) -> crate::helpers::TestApp {
    let mut config = test_config(&unique_prefix(), name);
    config.redis_url = format!("redis://127.0.0.1:{port}");
    config.redis_cluster_urls = None;
    config.redis_min_replicas = Some(1);
    spawn_with(config).await
}

#[tokio::test]
async fn readiness_says_whether_writes_wait_for_replicas() {
    let app = crate::helpers::spawn_app().await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    // Single node: 0 by default; the test cluster has a replica per primary.
    let want = if cluster_urls().is_some() {
        "ok"
    } else {
        "not_required"
    };
    assert_eq!(ready.body["replicas"], want, "{}", ready.body);
}

#[tokio::test]
async fn a_primary_without_a_replica_keeps_taking_writes_and_readiness_says_so() {
    // Arrange: a Redis of its own with no replica, and a replica that wants one.
    let primary = redis_server(&[]);
    let app = app_waiting_for_a_replica(primary.1, "alone").await;
    // Act
    let token = app.register("jake").await;
    let slug = app.create_article(&token, "Still written", &[]).await;
    // Assert
    assert_eq!(
        app.get(&format!("/api/articles/{slug}"), None).await.status,
        StatusCode::OK
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["replicas"], "missing", "{}", ready.body);
}

#[tokio::test]
async fn a_replica_still_in_its_first_full_sync_does_not_hold_up_writes() {
    // Arrange: a primary whose snapshot for a new replica takes a minute (one second per key,
    // sixty keys), so the replica stays attached in `wait_bgsave`, acknowledging nothing, for
    // the whole test, as a failed primary does for a few seconds when it rejoins as a replica.
    let primary = redis_server(&[
        "--repl-diskless-sync",
        "no",
        "--rdb-key-save-delay",
        "1000000",
    ]);
    let mut con = connection(primary.1);
    for n in 0..60 {
        let _: () = redis::cmd("SET")
            .arg(format!("filler:{n}"))
            .arg(n)
            .query(&mut con)
            .unwrap();
    }
    let replica = redis_server(&["--replicaof", "127.0.0.1", &primary.1.to_string()]);
    let mut syncing = false;
    for _ in 0..100 {
        if info_replication(primary.1).contains("state=wait_bgsave") {
            syncing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        syncing,
        "the replica did not attach: {}",
        info_replication(primary.1)
    );
    let app = app_waiting_for_a_replica(primary.1, "syncing").await;
    // Act
    let token = app.register("jake").await;
    let slug = app
        .create_article(&token, "Written while syncing", &[])
        .await;
    // Assert: both writes were acknowledged without the replica, and readiness says it is
    // missing while it syncs.
    assert_eq!(
        app.get(&format!("/api/articles/{slug}"), None).await.status,
        StatusCode::OK
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.body["replicas"], "missing", "{}", ready.body);
    assert!(info_replication(primary.1).contains("state=wait_bgsave"));
    drop(replica);
}

#[tokio::test]
async fn a_write_its_attached_replica_did_not_acknowledge_is_503_and_the_retry_completes_it() {
    // Arrange: a primary with one replica online (its full sync starts at once, not after
    // Redis's default 5 s wait for more replicas), and a replica of the API that waits for it.
    let primary = redis_server(&["--repl-diskless-sync-delay", "0"]);
    let replica = redis_server(&["--replicaof", "127.0.0.1", &primary.1.to_string()]);
    // Online, and acknowledging: a write made now reaches it (`WAIT` answers 1).
    let mut con = connection(primary.1);
    let mut acknowledging = false;
    for _ in 0..100 {
        let _: () = redis::cmd("SET")
            .arg("probe")
            .arg(1)
            .query(&mut con)
            .unwrap();
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(100).query(&mut con).unwrap();
        if acked == 1 {
            acknowledging = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        acknowledging,
        "the replica did not acknowledge writes within 15 s: {}",
        info_replication(primary.1)
    );
    let app = app_waiting_for_a_replica(primary.1, "careful").await;
    let token = app.register("jake").await;
    let body = json!({"article": {"title": "Durable", "description": "d", "body": "b"}});
    let post = || {
        app.raw(
            Method::POST,
            "/api/articles",
            Some(&token),
            Some(body.to_string().into_bytes()),
            &[("Idempotency-Key", "durable-1")],
        )
    };
    // Act 1: the replica stops acknowledging (still attached), and a write is made.
    let stopped = Command::new("kill")
        .args(["-STOP", &replica.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let refused = post().await;
    // Assert 1: not acknowledged.
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    // Act 2: the replica is back and the client retries with the same key.
    let resumed = Command::new("kill")
        .args(["-CONT", &replica.0.id().to_string()])
        .status()
        .unwrap();
    assert!(resumed.success());
    let retry = post().await;
    // Assert 2: the retry completes the same article, once.
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body["article"]["slug"], "durable");
    let list = app.get("/api/articles", None).await;
    assert_eq!(list.body["articlesCount"], 1, "{}", list.body);
    drop(replica);
}
