//! Logs and traces.
//!
//! Logs go through env_logger, filtered by `RUST_LOG` (`info`, `conduit_api=debug,actix_web=warn`,
//! ...). Every line ends with the replica id and, while a request is served, with that request's
//! `trace_id`, read from the OpenTelemetry context the request runs in. Libraries that report
//! through `tracing` instead of `log` reach the same lines. One line looks like
//!
//! ```text
//! 2026-11-28T09:12:01.482913Z  INFO conduit_api::access: request method=GET route=/api/user status=200 latency_ms=0.410 replica=api-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736
//! ```
//!
//! Traces are made with the OpenTelemetry API directly ([`spans`]), not through `tracing`
//! spans: bridging every span through `tracing-opentelemetry` cost several times what the SDK
//! itself costs, more than a whole cheap request, and the logs need nothing from `tracing`.
//! They go to an OTLP collector (Jaeger, or any OpenTelemetry collector) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, over gRPC or,
//! with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, over HTTP. Export is batched on a background
//! thread with a bounded queue, so a slow or absent collector never slows a request (spans are
//! dropped instead). Every span carries the resource attributes `service.name`,
//! `service.version`, `service.instance.id` (the replica id), `host.name`, and `k8s.pod.name` /
//! `k8s.node.name` when the downward API provides `K8S_POD_NAME` / `K8S_NODE_NAME`. Warnings and
//! errors logged during a request also become events on its server span.
//! `OTEL_SDK_DISABLED=true` turns tracing off entirely.

mod logs;
pub mod spans;

pub use spans::{child, SpanGuard};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

pub use crate::config::TraceTrust;

/// Where log lines go: standard error for the binary, standard output for tests.
pub use env_logger::Target as LogTarget;

/// The log filter when `RUST_LOG` is not set: one line per request, and what the replica and
/// its libraries report at info and above.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] flushes pending spans.
pub struct TelemetryGuard {
    /// Only when spans are exported: there is nothing to flush otherwise.
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        spans::exporting()
    }

    /// Flushes and stops the exporter. Runs on a blocking thread: the exporter may need the
    /// async runtime that the caller is running on.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(err)) = result {
                eprintln!("trace exporter shutdown failed: {err}");
            }
        }
    }
}

/// Installs the process logger (lines to `target`, filtered by `RUST_LOG`, default
/// `default_filter`) and, unless tracing is disabled, the tracer that [`spans`] uses, trusting
/// an incoming `traceparent` as `trace_trust` says.
///
/// # Errors
/// The exporter cannot be built (for example an invalid endpoint), or a logger is already set.
pub fn init(
    replica_id: &str,
    default_filter: &str,
    target: LogTarget,
    trace_trust: TraceTrust,
) -> anyhow::Result<TelemetryGuard> {
    let logger = logs::Logger::new(replica_id, default_filter, target);
    let max_level = logger.max_level();
    log::set_boxed_logger(Box::new(logger)).context("a logger is already set")?;
    log::set_max_level(max_level);

    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint_set = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()));
    let mut builder = SdkTracerProvider::builder().with_resource(resource(replica_id));
    if endpoint_set {
        builder = builder.with_span_processor(
            BatchSpanProcessor::builder(exporter()?)
                .with_batch_config(batch_config())
                .build(),
        );
    }
    // Without an exporter the provider still creates trace ids, so responses and logs carry them
    // and an incoming `traceparent` is continued.
    let provider = builder.build();
    spans::install(provider.tracer("conduit-api"), endpoint_set, trace_trust);
    Ok(TelemetryGuard {
        provider: endpoint_set.then_some(provider),
    })
}

fn resource(replica_id: &str) -> Resource {
    let mut attributes = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", replica_id.to_owned()),
        KeyValue::new(
            "host.name",
            gethostname::gethostname().to_string_lossy().into_owned(),
        ),
    ];
    for (var, key) in [
        ("K8S_POD_NAME", "k8s.pod.name"),
        ("K8S_NODE_NAME", "k8s.node.name"),
        ("K8S_NAMESPACE", "k8s.namespace.name"),
    ] {
        if let Ok(value) = std::env::var(var) {
            if !value.is_empty() {
                attributes.push(KeyValue::new(key, value));
            }
        }
    }
    let mut builder = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        builder = builder.with_service_name("conduit-api");
    }
    builder.with_attributes(attributes).build()
}

/// The batch export settings: the `OTEL_BSP_*` variables, with a larger default queue. The
/// standard 2048 spans fill in a tenth of a second at a few thousand requests per second, and
/// every span that does not fit is dropped.
fn batch_config() -> BatchConfig {
    let mut config = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        config = config.with_max_queue_size(DEFAULT_QUEUE_SIZE);
    }
    if std::env::var_os("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_none() {
        config = config.with_max_export_batch_size(DEFAULT_EXPORT_BATCH_SIZE);
    }
    config.build()
}

/// Spans held for export at most, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
pub const DEFAULT_QUEUE_SIZE: usize = 16_384;
/// Spans per export request, unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says otherwise.
pub const DEFAULT_EXPORT_BATCH_SIZE: usize = 2_048;

fn exporter() -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "grpc".to_owned());
    match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .context("cannot build the OTLP gRPC exporter"),
        "http/protobuf" => {
            // The blocking HTTP client must not be created on an async thread.
            std::thread::spawn(|| {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("exporter thread panicked"))?
            .context("cannot build the OTLP HTTP exporter")
        }
        other => anyhow::bail!(
            "unsupported OTEL_EXPORTER_OTLP_PROTOCOL {other:?} (use grpc or http/protobuf)"
        ),
    }
}
