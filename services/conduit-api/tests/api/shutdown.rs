//! Graceful shutdown inside one replica: its workers stop one by one, and a request already
//! under way finishes, Redis included, on whichever worker it is.

use crate::helpers::{spawn_with, test_config, unique_prefix};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One HTTP/1.1 connection, driven by hand so the test decides when each byte is sent.
struct Connection(BufReader<TcpStream>);

impl Connection {
    async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Self(BufReader::new(stream))
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.get_mut().write_all(bytes).await.expect("send");
    }

    /// Reads one response: its status and body.
    async fn response(&mut self) -> (u16, String) {
        let mut status_line = String::new();
        self.0.read_line(&mut status_line).await.expect("status");
        let status = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /api/tags`, which reads Redis.
    async fn tags(&mut self) -> u16 {
        self.send(b"GET /api/tags HTTP/1.1\r\nHost: replica\r\n\r\n")
            .await;
        self.response().await.0
    }
}

#[tokio::test]
async fn a_request_under_way_finishes_after_another_worker_has_stopped() {
    // Arrange: two workers and one connection on each (the listener hands connections to the
    // workers in turn). Connection `a` is the first to use Redis. Then `a` closes, so its worker
    // has nothing left to do, and `b` starts a registration: the head now, the body later.
    let mut config = test_config(&unique_prefix(), "replica-a");
    config.workers = Some(2);
    let app = spawn_with(config).await;
    let port = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut a = Connection::open(port).await;
    let mut b = Connection::open(port).await;
    assert_eq!(a.tags().await, 200);
    assert_eq!(b.tags().await, 200);
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"user": {"username": "late", "email": "late@example.com",
                               "password": "correct horse battery"}})
    .to_string();
    b.send(
        format!(
            "POST /api/users HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act: stop gracefully. `a`'s worker, idle, stops at once; `b`'s waits for the request it
    // is serving. Then the rest of the request arrives.
    let stopping = app.stop(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.send(body.as_bytes()).await;

    // Assert: the registration is written, in Redis, not refused for want of a connection.
    let (status, response) = b.response().await;
    assert_eq!(status, 201, "{response}");
    drop(b);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the replica stops once its last request is done");
}
