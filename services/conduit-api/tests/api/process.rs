//! The real binary: refusing to start without keys, key generation, and graceful shutdown.

use crate::helpers::{free_port, redis_env, unique_prefix, TEST_KEYS};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_conduit-api");

#[test]
fn without_keys_the_binary_exits_2_and_explains_keygen() {
    let out = Command::new(BIN)
        .env_clear()
        .env("CONDUIT_ADDR", "127.0.0.1:0")
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conduit-api keygen"), "{stderr}");
}

#[test]
fn keygen_writes_a_ring_once_and_keeps_it() {
    let dir = std::env::temp_dir().join(unique_prefix());
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt-keys");
    let run = || {
        Command::new(BIN)
            .args(["keygen", "--kid", "k1", "--out"])
            .arg(&file)
            .status()
            .unwrap()
    };
    assert!(run().success());
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(run().success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        first,
        "an existing ring is kept"
    );
    let ring = conduit_api::auth::KeyRing::parse(&first, "i", "a", 60)
        .expect("keygen output is a valid ring");
    assert_eq!(ring.current_kid(), "k1");
    let printed = Command::new(BIN).arg("keygen").output().unwrap();
    assert!(conduit_api::auth::KeyRing::parse(
        &String::from_utf8_lossy(&printed.stdout),
        "i",
        "a",
        60
    )
    .is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

fn get(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.get(9..12)?.parse().ok()
}

#[test]
fn sigterm_drains_then_exits_0() {
    // Arrange: the binary with a 3-second drain.
    let port = free_port();
    let mut command = Command::new(BIN);
    redis_env(&mut command);
    let mut child = command
        .env("CONDUIT_ADDR", format!("127.0.0.1:{port}"))
        .env("CONDUIT_REDIS_PREFIX", unique_prefix())
        .env("CONDUIT_JWT_KEYS", TEST_KEYS)
        .env("CONDUIT_DRAIN_SECONDS", "3")
        .env("CONDUIT_WORKERS", "1")
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if get(port, "/readyz") == Some(200) {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "the replica became ready");

    // Act
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));

    // Assert: during the drain it is not ready but still serves, then it exits 0.
    assert_eq!(get(port, "/readyz"), Some(503));
    assert_eq!(get(port, "/healthz"), Some(200));
    assert_eq!(get(port, "/api/tags"), Some(200));
    let mut exit = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let exit = exit.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the replica did not exit after draining");
    });
    assert_eq!(exit.code(), Some(0));
    assert_eq!(get(port, "/healthz"), None, "the listener is closed");
}
