//! Logs and traces.
//!
//! Logs go through `tracing-subscriber`'s formatter, filtered by `RUST_LOG` with the same syntax
//! env_logger uses (`info`, `conduit_api=debug,actix_web=warn`, ...). It is used instead of
//! env_logger because it sees the active span: every line logged while serving a request carries
//! that request's `trace_id` and the replica id. Libraries that log through the `log` crate are
//! bridged into it.
//!
//! Traces go to an OTLP collector (Jaeger, or any OpenTelemetry collector) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, over gRPC or,
//! with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, over HTTP. Export is batched on a background
//! thread with a bounded queue, so a slow or absent collector never slows a request (spans are
//! dropped instead). Every span carries the resource attributes `service.name`,
//! `service.version`, `service.instance.id` (the replica id), `host.name`, and `k8s.pod.name` /
//! `k8s.node.name` when the downward API provides `K8S_POD_NAME` / `K8S_NODE_NAME`.
//! `OTEL_SDK_DISABLED=true` turns tracing off entirely.

use anyhow::Context as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The log filter when `RUST_LOG` is not set: our request lines at info; client errors (4xx),
/// which the request line already shows, are not repeated as warnings.
pub const DEFAULT_LOG_FILTER: &str = "info,tracing_actix_web=error";

/// Spans from these crates would describe the exporter exporting itself.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Keeps the tracer provider alive; [`TelemetryGuard::shutdown`] flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
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

/// Installs the global subscriber: formatted logs to `sink` filtered by `RUST_LOG` (default
/// `default_filter`), and an OpenTelemetry layer when tracing is enabled.
///
/// # Errors
/// The exporter cannot be built (for example an invalid endpoint), or a subscriber is already set.
pub fn init<W>(replica_id: &str, default_filter: &str, sink: W) -> anyhow::Result<TelemetryGuard>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(sink)
        .with_ansi(false)
        .with_filter(log_filter);

    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if disabled {
        tracing_subscriber::registry()
            .with(fmt)
            .try_init()
            .context("a global subscriber is already set")?;
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
        builder = builder.with_batch_exporter(exporter()?);
    }
    // Without an exporter the provider still creates trace ids, so responses and logs carry them
    // and an incoming `traceparent` is continued.
    let provider = builder.build();
    let tracer = provider.tracer("conduit-api");
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(EnvFilter::new(TRACE_FILTER));
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .context("a global subscriber is already set")?;
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

/// The trace id of the current span, as 32 hex digits, if tracing is on.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Standard error, for `init` in the binary.
pub fn stderr() -> impl for<'a> MakeWriter<'a> + Send + Sync + 'static {
    std::io::stderr
}
