//! Traces: one client trace spread over three replicas, seen by a real OTLP receiver.

use crate::helpers::{free_port, redis_env, unique_prefix, TEST_KEYS};
use otlp_receiver::{Receiver, SpanRecord};
use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_conduit-api");

/// A replica process exporting to the receiver, over gRPC or HTTP/protobuf.
fn replica(name: &str, port: u16, prefix: &str, endpoint: &str, protocol: &str) -> Child {
    replica_with_redis(name, port, prefix, endpoint, protocol, None)
}

fn replica_with_redis(
    name: &str,
    port: u16,
    prefix: &str,
    endpoint: &str,
    protocol: &str,
    redis: Option<&str>,
) -> Child {
    let mut command = Command::new(BIN);
    match redis {
        Some(url) => command
            .env("REDIS_URL", url)
            .env_remove("REDIS_CLUSTER_URLS"),
        None => redis_env(&mut command),
    };
    command
        .env("CONDUIT_ADDR", format!("127.0.0.1:{port}"))
        .env("CONDUIT_REDIS_PREFIX", prefix)
        .env("CONDUIT_JWT_KEYS", TEST_KEYS)
        .env("CONDUIT_REPLICA_ID", name)
        .env("CONDUIT_DRAIN_SECONDS", "0")
        .env("CONDUIT_WORKERS", "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("RUST_LOG", "info")
        .env_remove("OTEL_SDK_DISABLED")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ancestors_reach_server<'a>(
    span: &'a SpanRecord,
    by_id: &HashMap<&str, &'a SpanRecord>,
) -> Option<&'a SpanRecord> {
    let mut current = span;
    for _ in 0..16 {
        let parent = by_id.get(current.parent_span_id.as_deref()?)?;
        if parent.kind == "SERVER" {
            return Some(parent);
        }
        current = parent;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_trace_shows_spans_from_every_replica() {
    // Arrange: a receiver and three replica processes (two export over gRPC, one over HTTP).
    let receiver = local_receiver().await;
    let prefix = unique_prefix();
    let ports = [free_port(), free_port(), free_port()];
    let names = ["trace-r1", "trace-r2", "trace-r3"];
    let mut children: Vec<Child> = vec![
        replica(
            names[0],
            ports[0],
            &prefix,
            &receiver.grpc_endpoint(),
            "grpc",
        ),
        replica(
            names[1],
            ports[1],
            &prefix,
            &receiver.grpc_endpoint(),
            "grpc",
        ),
        replica(
            names[2],
            ports[2],
            &prefix,
            &receiver.http_base_url(),
            "http/protobuf",
        ),
    ];
    let client = reqwest::Client::new();
    for port in ports {
        wait_for(&client, port, "/readyz").await;
    }
    let register = client
        .post(format!("http://127.0.0.1:{}/api/users", ports[0]))
        .json(&serde_json::json!({"user": {"username": "tracer", "email": "tracer@example.com", "password": "password123"}}))
        .send()
        .await
        .unwrap();
    let token = register.json::<serde_json::Value>().await.unwrap()["user"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act: 30 requests under one client trace, round-robin over the replicas.
    let trace_id = format!(
        "{:032x}",
        u128::from_str_radix("5eed0000000000000000000000000000", 16).unwrap() + rand_suffix()
    );
    let mut served = BTreeSet::new();
    for i in 0..30 {
        let port = ports[i % 3];
        let traceparent = format!("00-{trace_id}-{:016x}-01", 0x1000 + i as u64);
        let res = client
            .get(format!("http://127.0.0.1:{port}/api/user"))
            .header("Authorization", format!("Token {token}"))
            .header("traceparent", traceparent)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        assert_eq!(
            res.headers()["x-trace-id"].to_str().unwrap(),
            trace_id,
            "the response names the continued trace"
        );
        served.insert(res.headers()["x-served-by"].to_str().unwrap().to_owned());
    }
    assert_eq!(served.len(), 3);
    // SIGTERM: each replica flushes its spans as it stops.
    for child in &children {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
    }
    // Wait off the runtime, which keeps serving the receiver meanwhile.
    let mut logs = Vec::new();
    for child in children.drain(..) {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        logs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }

    // Assert: the receiver has the trace, with server spans from three replicas.
    let report = receiver.trace_report(&trace_id);
    let trace = report.trace(&trace_id).unwrap_or_else(|| {
        panic!(
            "trace {trace_id} not received; instances seen: {:?}",
            receiver.report().spans_per_instance
        )
    });
    let expected: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(trace.instances, expected);
    let servers: Vec<&SpanRecord> = trace.spans.iter().filter(|s| s.kind == "SERVER").collect();
    assert_eq!(servers.len(), 30, "one server span per request");
    for server in &servers {
        assert_eq!(
            server.attributes.get("http.route").map(String::as_str),
            Some("/api/user")
        );
        assert_eq!(
            server
                .attributes
                .get("http.status_code")
                .map(String::as_str),
            Some("200")
        );
        assert_eq!(server.status, "OK");
        assert_eq!(
            server.attributes.get("conduit.replica"),
            server.service_instance_id.as_ref()
        );
        assert!(
            server
                .parent_span_id
                .as_deref()
                .is_some_and(|p| p.starts_with("0000000000001")),
            "continues the client's span"
        );
    }
    // Redis round trips are children of the request that made them, on the same replica.
    let by_id: HashMap<&str, &SpanRecord> = trace
        .spans
        .iter()
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let redis: Vec<&SpanRecord> = trace
        .spans
        .iter()
        .filter(|s| s.attributes.get("db.system").map(String::as_str) == Some("redis"))
        .collect();
    assert!(
        redis.len() >= 30,
        "at least one Redis span per request, got {}",
        redis.len()
    );
    for span in &redis {
        assert_eq!(span.kind, "CLIENT");
        let server =
            ancestors_reach_server(span, &by_id).expect("a Redis span sits under a server span");
        assert_eq!(server.service_instance_id, span.service_instance_id);
    }
    assert!(
        trace.spans.iter().any(|s| s.name == "token.verify"),
        "token checks are spans"
    );
    // Every replica's log lines carry the trace id.
    for (name, log) in names.iter().zip(&logs) {
        assert!(
            log.lines()
                .any(|l| l.contains(&trace_id) && l.contains("conduit_api::access")),
            "{name} logged no line with the trace id:\n{log}"
        );
    }
}

/// Waits until the replica on `port` answers `path` with a success.
async fn wait_for(client: &reqwest::Client, port: u16, path: &str) {
    for _ in 0..100 {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
        {
            if res.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica on {port} did not answer {path}");
}

/// An OTLP receiver on loopback ports of its own.
async fn local_receiver() -> Receiver {
    Receiver::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_an_error_in_its_trace_with_the_warning_as_an_event() {
    // Arrange: a replica whose Redis refuses connections, exporting to the receiver.
    let receiver = local_receiver().await;
    let dead_redis = format!("redis://127.0.0.1:{}/", free_port());
    let port = free_port();
    let child = replica_with_redis(
        "trace-down",
        port,
        &unique_prefix(),
        &receiver.grpc_endpoint(),
        "grpc",
        Some(&dead_redis),
    );
    let client = reqwest::Client::new();
    wait_for(&client, port, "/healthz").await;
    let trace_id = format!("{:032x}", 0xdead_0000_u128 + rand_suffix());

    // Act: a read that needs Redis.
    let res = client
        .get(format!("http://127.0.0.1:{port}/api/profiles/someone"))
        .header("traceparent", format!("00-{trace_id}-00000000000000aa-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    // Assert: the server span failed, carries the logged warning, and so does the Redis span.
    let report = receiver.trace_report(&trace_id);
    let trace = report
        .trace(&trace_id)
        .unwrap_or_else(|| panic!("trace {trace_id} not received"));
    let server = trace
        .spans
        .iter()
        .find(|s| s.kind == "SERVER")
        .expect("a server span");
    assert_eq!(server.status, "ERROR");
    assert_eq!(
        server
            .attributes
            .get("http.status_code")
            .map(String::as_str),
        Some("503")
    );
    assert!(
        server
            .events
            .iter()
            .any(|e| e.starts_with("data store unavailable")),
        "the warning is an event of the server span: {:?}",
        server.events
    );
    let redis = trace.span_named("redis").expect("a Redis span");
    assert_eq!(redis.status, "ERROR");
    assert!(!redis.status_message.is_empty());
    assert_eq!(
        redis.parent_span_id.as_deref(),
        Some(server.span_id.as_str())
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007
}
