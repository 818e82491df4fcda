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
    replica_command(name, port, prefix, endpoint, protocol, redis)
        .spawn()
        .unwrap()
}

/// The command that starts a replica, to adjust before spawning it: on `redis` when given,
/// else on this run's data tier.
fn replica_command(
    name: &str,
    port: u16,
    prefix: &str,
    endpoint: &str,
    protocol: &str,
    redis: Option<&str>,
) -> Command {
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
        .stderr(Stdio::piped());
    command
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
    let mut logs = Vec::new();
    for child in children.drain(..) {
        logs.push(stop(child).await);
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
    // A token check is an attribute of the server span, not a span of its own.
    assert!(
        !trace.spans.iter().any(|s| s.name.starts_with("token")),
        "no token span"
    );
    for server in &servers {
        assert_eq!(
            server
                .attributes
                .get("conduit.token.outcome")
                .map(String::as_str),
            Some("valid")
        );
        assert_eq!(
            server
                .attributes
                .get("conduit.token.kid")
                .map(String::as_str),
            Some(TEST_KEYS.split(':').next().unwrap())
        );
    }
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
    stop(child).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_checked_once_per_request_and_a_refusal_is_an_event_of_the_server_span() {
    // Arrange: a replica exporting to the receiver, logging its token checks, and a user.
    let receiver = local_receiver().await;
    let port = free_port();
    let child = replica_command(
        "trace-token",
        port,
        &unique_prefix(),
        &receiver.grpc_endpoint(),
        "grpc",
        None,
    )
    .env("RUST_LOG", "info,conduit_api::auth=debug")
    .spawn()
    .unwrap();
    let client = reqwest::Client::new();
    wait_for(&client, port, "/readyz").await;
    let register = client
        .post(format!("http://127.0.0.1:{port}/api/users"))
        .json(&serde_json::json!({"user": {"username": "once", "email": "once@example.com", "password": "password123"}}))
        .send()
        .await
        .unwrap();
    let token = register.json::<serde_json::Value>().await.unwrap()["user"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted_trace = format!("{:032x}", 0x0ace_0000_u128 + rand_suffix());
    let refused_trace = format!("{:032x}", 0x70c3_0000_u128 + rand_suffix());
    let long_query = "x".repeat(8000);
    let article = serde_json::json!({"article": {"title": "t", "description": "d", "body": "b"}});

    // Act: two writes with an Idempotency-Key (the idempotency middleware needs the caller, and
    // so does the handler): one with the user's token, one with a forged token behind an 8 KB
    // query string.
    let res = client
        .post(format!("http://127.0.0.1:{port}/api/articles"))
        .header(
            "traceparent",
            format!("00-{accepted_trace}-00000000000000aa-01"),
        )
        .header("Authorization", format!("Token {token}"))
        .header("Idempotency-Key", "checked-once")
        .json(&article)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = client
        .post(format!(
            "http://127.0.0.1:{port}/api/articles?pad={long_query}"
        ))
        .header(
            "traceparent",
            format!("00-{refused_trace}-00000000000000bb-01"),
        )
        .header("Authorization", "Token not.a.jwt")
        .header("Idempotency-Key", "refused-once")
        .json(&article)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let log = stop(child).await;

    // Assert: the accepted token was checked once, and its outcome is on the server span.
    let checks = log
        .lines()
        .filter(|l| l.contains("token accepted") && l.contains(&accepted_trace))
        .count();
    assert_eq!(checks, 1, "token checks in one request:\n{log}");
    let report = receiver.trace_report(&accepted_trace);
    let trace = report
        .trace(&accepted_trace)
        .unwrap_or_else(|| panic!("trace {accepted_trace} not received"));
    let server = trace.spans.iter().find(|s| s.kind == "SERVER").unwrap();
    assert_eq!(
        server
            .attributes
            .get("conduit.token.outcome")
            .map(String::as_str),
        Some("valid")
    );

    // Assert: the refusal is one event, and the span keeps a bounded target.
    let report = receiver.trace_report(&refused_trace);
    let trace = report
        .trace(&refused_trace)
        .unwrap_or_else(|| panic!("trace {refused_trace} not received"));
    let server = trace.spans.iter().find(|s| s.kind == "SERVER").unwrap();
    assert_eq!(
        server
            .attributes
            .get("conduit.token.outcome")
            .map(String::as_str),
        Some("refused")
    );
    let refusals = server
        .events
        .iter()
        .filter(|e| e.as_str() == "token refused")
        .count();
    assert_eq!(refusals, 1, "events: {:?}", server.events);
    let target = &server.attributes["http.target"];
    assert!(target.starts_with("/api/articles?pad=xxx"), "{target}");
    assert!(target.len() <= 256, "target of {} bytes", target.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_trace_trust_link_a_caller_cannot_hide_a_request_from_the_traces() {
    // Arrange: one replica that continues callers' traces (the default), one that links them.
    let receiver = local_receiver().await;
    let prefix = unique_prefix();
    let ports = [free_port(), free_port()];
    let mut children = Vec::new();
    for (port, (name, trust)) in ports
        .iter()
        .zip([("trace-continue", "continue"), ("trace-link", "link")])
    {
        let child = replica_command(
            name,
            *port,
            &prefix,
            &receiver.grpc_endpoint(),
            "grpc",
            None,
        )
        .env("CONDUIT_TRACE_TRUST", trust)
        .spawn()
        .unwrap();
        children.push(child);
    }
    let client = reqwest::Client::new();
    for port in ports {
        wait_for(&client, port, "/readyz").await;
    }
    let caller_trace = format!("{:032x}", 0x0b5c_0000_u128 + rand_suffix());
    let caller_span = "00000000000000cc";

    // Act: the same unsampled caller context (flags 00) to both replicas.
    let mut served_traces = Vec::new();
    for port in ports {
        let res = client
            .get(format!("http://127.0.0.1:{port}/api/tags"))
            .header("traceparent", format!("00-{caller_trace}-{caller_span}-00"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        served_traces.push(res.headers()["x-trace-id"].to_str().unwrap().to_owned());
    }
    for child in children {
        stop(child).await;
    }

    // Assert: continued, the caller's flag hid the request; linked, it is in a trace of its own
    // that points back at the caller.
    assert_eq!(served_traces[0], caller_trace);
    assert!(receiver
        .trace_report(&caller_trace)
        .trace(&caller_trace)
        .is_none());
    assert_ne!(served_traces[1], caller_trace);
    let report = receiver.trace_report(&served_traces[1]);
    let trace = report
        .trace(&served_traces[1])
        .unwrap_or_else(|| panic!("linked trace {} not received", served_traces[1]));
    let server = trace.spans.iter().find(|s| s.kind == "SERVER").unwrap();
    assert_eq!(server.parent_span_id, None, "a new root span");
    assert_eq!(server.links, vec![format!("{caller_trace}-{caller_span}")]);
}

/// Stops a replica with SIGTERM (it flushes its spans as it stops), checks that it exits 0, and
/// returns what it logged. The wait runs off the runtime, which keeps serving the receiver.
async fn stop(child: Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_007
}
