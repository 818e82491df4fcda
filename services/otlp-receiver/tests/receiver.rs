//! End-to-end tests: the real OpenTelemetry SDK (the versions the API replicas use) exports
//! spans over OTLP/gRPC and OTLP/HTTP to a receiver on port 0, and the report must show them
//! per instance and per trace with the right parent links. Also covers the HTTP endpoints.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use otlp_receiver::{Receiver, ReceiverConfig, Report};

async fn start_receiver() -> Receiver {
    Receiver::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("receiver starts")
}

/// A tracer provider for one replica, exporting in batches like the API does.
fn provider(exporter: SpanExporter, instance: &str) -> SdkTracerProvider {
    let resource = Resource::builder_empty()
        .with_service_name("conduit-api")
        .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
        .build();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build()
}

fn http_exporter(endpoint: String) -> SpanExporter {
    SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .expect("HTTP exporter")
}

/// Ids (hex) of a span in `cx`.
fn ids(cx: &Context) -> (String, String) {
    let sc = cx.span().span_context().clone();
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

/// Flushes and shuts the provider down off the async threads (its exporters block); once this
/// returns, the receiver has answered every export.
async fn flush(provider: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_spans_are_reported_per_instance_and_trace_with_parent_links() {
    // Arrange
    let receiver = start_receiver().await;
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .expect("gRPC exporter");
    let provider = provider(exporter, "replica-grpc");
    let tracer = provider.tracer("test");

    // Act: one trace of three nested spans and one single-span trace.
    let root = tracer
        .span_builder("GET /api/articles")
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("http.response.status_code", 200)])
        .start(&tracer);
    let root_cx = Context::new().with_span(root);
    let child_cx = root_cx.with_span(
        tracer
            .span_builder("redis ZREVRANGE")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &root_cx),
    );
    let leaf_cx = child_cx.with_span(tracer.start_with_context("decode", &child_cx));
    let other_cx = Context::new().with_span(tracer.start("GET /api/tags"));
    let (trace_id, root_id) = ids(&root_cx);
    let (_, child_id) = ids(&child_cx);
    let (_, leaf_id) = ids(&leaf_cx);
    let (other_trace_id, _) = ids(&other_cx);
    drop((leaf_cx, child_cx, root_cx, other_cx));
    flush(provider).await;

    // Assert
    let report = receiver.report();
    assert_eq!(report.total_spans, 4);
    assert_eq!(report.dropped_spans, 0);
    assert_eq!(report.spans_for_instance("replica-grpc"), 4);
    assert_eq!(report.spans_per_service["conduit-api"], 4);
    assert_eq!(report.traces.len(), 2);
    assert_eq!(report.trace(&other_trace_id).unwrap().span_count, 1);

    let trace = report.trace(&trace_id).expect("the nested trace");
    assert_eq!(trace.span_count, 3);
    assert_eq!(trace.instances, BTreeSet::from(["replica-grpc".to_owned()]));
    let root = trace.span_named("GET /api/articles").unwrap();
    let child = trace.span_named("redis ZREVRANGE").unwrap();
    let leaf = trace.span_named("decode").unwrap();
    assert_eq!(root.span_id, root_id);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(child.parent_span_id.as_deref(), Some(root_id.as_str()));
    assert_eq!(leaf.span_id, leaf_id);
    assert_eq!(leaf.parent_span_id.as_deref(), Some(child_id.as_str()));
    assert_eq!(
        (root.kind.as_str(), child.kind.as_str(), leaf.kind.as_str()),
        ("SERVER", "CLIENT", "INTERNAL")
    );
    assert_eq!(root.attributes["http.response.status_code"], "200");
    assert_eq!(root.service_instance_id.as_deref(), Some("replica-grpc"));
    assert_eq!(root.service_name.as_deref(), Some("conduit-api"));
    assert!(root.end_time_unix_nano >= root.start_time_unix_nano);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_spans_from_two_instances_in_one_trace_are_told_apart() {
    // Arrange
    let receiver = start_receiver().await;
    let endpoint = receiver.http_traces_endpoint();

    // Act: replica-a serves a request and calls replica-b, which continues the same trace
    // from the propagated context. The blocking HTTP client must live off the async threads.
    let (trace_id, a_id, b_id) = tokio::task::spawn_blocking(move || {
        let provider_a = provider(http_exporter(endpoint.clone()), "replica-a");
        let provider_b = provider(http_exporter(endpoint), "replica-b");
        let tracer_a = provider_a.tracer("test");
        let tracer_b = provider_b.tracer("test");

        let a_cx = Context::new().with_span(
            tracer_a
                .span_builder("POST /api/articles")
                .with_kind(SpanKind::Server)
                .start(&tracer_a),
        );
        let remote = Context::new().with_remote_span_context(a_cx.span().span_context().clone());
        let b_cx = Context::new().with_span(
            tracer_b
                .span_builder("GET /api/articles/{slug}")
                .with_kind(SpanKind::Server)
                .start_with_context(&tracer_b, &remote),
        );
        let b_child = b_cx.with_span(tracer_b.start_with_context("redis HGETALL", &b_cx));
        let (trace_id, a_id) = ids(&a_cx);
        let (_, b_id) = ids(&b_cx);
        drop((b_child, b_cx, a_cx));
        for p in [provider_a, provider_b] {
            p.force_flush().expect("flush");
            p.shutdown().expect("shutdown");
        }
        (trace_id, a_id, b_id)
    })
    .await
    .unwrap();

    // Assert
    let report = receiver.report();
    assert_eq!(report.total_spans, 3);
    assert_eq!(report.spans_for_instance("replica-a"), 1);
    assert_eq!(report.spans_for_instance("replica-b"), 2);
    assert_eq!(report.traces.len(), 1);
    let trace = report.trace(&trace_id).expect("the shared trace");
    assert_eq!(trace.span_count, 3);
    assert_eq!(
        trace.instances,
        BTreeSet::from(["replica-a".to_owned(), "replica-b".to_owned()])
    );
    let b = trace.span_named("GET /api/articles/{slug}").unwrap();
    assert_eq!(b.service_instance_id.as_deref(), Some("replica-b"));
    assert_eq!(b.parent_span_id.as_deref(), Some(a_id.as_str()));
    let b_child = trace.span_named("redis HGETALL").unwrap();
    assert_eq!(b_child.parent_span_id.as_deref(), Some(b_id.as_str()));
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_filter_reset_and_refuse_bad_bodies() {
    // Arrange: one JSON-encoded export with two traces.
    let receiver = start_receiver().await;
    let base = receiver.http_base_url();
    let http = reqwest::Client::new();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.instance.id", "value": {"stringValue": "json-1"}}
        ]},
        "scopeSpans": [{"spans": [
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "eee19b7ec3c1b174",
             "parentSpanId": "eee19b7ec3c1b173", "name": "first", "kind": 3,
             "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
             "attributes": [{"key": "n", "value": {"intValue": "7"}}]},
            {"traceId": "00000000000000000000000000000001", "spanId": "0000000000000001",
             "name": "second", "kind": 1}
        ]}]
    }]});

    // Act
    let posted = http
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let full: Report = http
        .get(format!("{base}/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one: Report = http
        .get(format!(
            "{base}/report?trace_id=5b8efff798038103d269b633813fc60c&spans=false"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(posted.status(), 200);
    assert_eq!(full, receiver.report());
    assert_eq!(full.total_spans, 2);
    assert_eq!(full.spans_for_instance("json-1"), 2);
    assert_eq!(full.spans_per_service[otlp_receiver::MISSING], 2);
    let first = full
        .trace("5b8efff798038103d269b633813fc60c")
        .unwrap()
        .span_named("first")
        .unwrap();
    assert_eq!(first.parent_span_id.as_deref(), Some("eee19b7ec3c1b173"));
    assert_eq!(first.kind, "CLIENT");
    assert_eq!(first.attributes["n"], "7");
    assert_eq!(first.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(one.total_spans, 1);
    assert_eq!(one.traces.len(), 1);
    assert!(one
        .traces
        .values()
        .all(|t| t.span_count == 1 && t.spans.is_empty()));

    let status = |r: reqwest::Response| r.status().as_u16();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(status(health), 200);
    let wrong_type = http
        .post(format!("{base}/v1/traces"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(status(wrong_type), 415);
    let garbage = http
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff_u8; 7])
        .send()
        .await
        .unwrap();
    assert_eq!(status(garbage), 400);
    let reset = http.post(format!("{base}/reset")).send().await.unwrap();
    assert_eq!(status(reset), 204);
    assert_eq!(receiver.report().total_spans, 0);
    assert!(receiver.report().traces.is_empty());
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_beyond_max_spans_are_dropped_and_counted() {
    // Arrange
    let mut config = ReceiverConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    );
    config.max_spans = 3;
    let receiver = Receiver::start_with(config).await.unwrap();
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.grpc_endpoint())
        .build()
        .unwrap();
    let provider = provider(exporter, "replica-full");
    let tracer = provider.tracer("test");

    // Act
    for i in 0..5 {
        drop(tracer.start(format!("span-{i}")));
    }
    flush(provider).await;
    let report = receiver
        .wait_for_spans(3, Duration::from_secs(10))
        .await
        .unwrap();

    // Assert
    assert_eq!(report.total_spans, 3);
    assert_eq!(report.dropped_spans, 2);
    assert_eq!(report.max_spans, 3);
    assert_eq!(report.spans_for_instance("replica-full"), 3);
    assert!(receiver
        .wait_for_spans(4, Duration::from_millis(200))
        .await
        .is_err());
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_passes_on_a_live_receiver_and_fails_on_a_closed_port() {
    // Arrange
    let receiver = start_receiver().await;
    let live = receiver.http_addr().to_string();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let run = |addr: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_otlp-receiver"))
                .args(["healthcheck", "--addr", &addr])
                .output()
                .expect("runs the binary")
        })
    };

    // Act
    let ok = run(live).await.unwrap();
    let failed = run(closed).await.unwrap();

    // Assert
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    receiver.shutdown().await;
}
