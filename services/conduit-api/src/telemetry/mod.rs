//! Logs and traces.
//!
//! Logs go through `tracing-subscriber`'s formatter, filtered by `RUST_LOG` with the same syntax
//! env_logger uses (`info`, `conduit_api=debug,actix_web=warn`, ...). It is used instead of
//! env_logger because it sees the active span: every line logged while serving a request ends
//! with that request's `trace_id`, and every line with the replica id. Libraries that log through
//! the `log` crate are bridged into it. One line looks like
//!
//! ```text
//! 2026-11-28T09:12:01.482913Z  INFO conduit_api::access: request method=GET route=/api/user status=200 latency_ms=0.41 replica=api-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736
//! ```
//!
//! The formatter only sees events, never spans: span fields are for traces, and formatting them
//! for every request would cost more than the request itself.
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
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::{Event, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{filter_fn, FilterExt as _, FilterFn, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
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
        .event_format(LogLine {
            replica: replica_id.to_owned(),
        })
        .with_filter(log_filter.and(only(|meta| meta.is_event())));

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
        builder = builder.with_span_processor(
            BatchSpanProcessor::builder(exporter()?)
                .with_batch_config(batch_config())
                .build(),
        );
    }
    // Without an exporter the provider still creates trace ids, so responses and logs carry them
    // and an incoming `traceparent` is continued.
    let provider = builder.build();
    let tracer = provider.tracer("conduit-api");
    // Spans carry what a reader of the trace needs; source locations, targets, thread names and
    // busy/idle timings would add eight attributes to every span. Nothing here reads the
    // OpenTelemetry context from a thread-local, so entering a span need not install it (that
    // happened on every poll of every instrumented future). Events become span events only
    // from WARN up: the request line is already the server span.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_target(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(
            EnvFilter::new(TRACE_FILTER)
                .and(only(|meta| meta.is_span() || *meta.level() <= Level::WARN)),
        );
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

/// The trace id of the current span, as 32 hex digits, if tracing is on.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// A filter on metadata alone. It claims every level, so combined with `and` the other filter's
/// level hint stays in force and disabled callsites (and `log` records) are skipped cheaply.
fn only(
    enabled: impl Fn(&tracing::Metadata<'_>) -> bool,
) -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(enabled).with_max_level_hint(LevelFilter::TRACE)
}

/// One log line: time, level, target, the event's fields, the replica id and, while a request
/// is being served with tracing on, its trace id.
struct LogLine {
    replica: String,
}

impl<S, N> FormatEvent<S, N> for LogLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} {}: ", meta.level().as_str(), meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        write!(writer, " replica={}", self.replica)?;
        if let Some(trace_id) = current_trace_id() {
            write!(writer, " trace_id={trace_id}")?;
        }
        writeln!(writer)
    }
}

/// Reads W3C trace context from request headers.
struct HeaderCarrier<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` continue the trace named by an incoming `traceparent` header, if any.
pub fn continue_remote_trace(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderCarrier(headers))
    });
    let _ = span.set_parent(parent);
}

/// Standard error, for `init` in the binary.
pub fn stderr() -> impl for<'a> MakeWriter<'a> + Send + Sync + 'static {
    std::io::stderr
}
