//! Logging (env_logger, `RUST_LOG`) and client spans (OpenTelemetry, OTLP when configured).
//!
//! Without an OTLP endpoint the tracer provider has no exporter, but it still makes real,
//! sampled span contexts, so every request carries a valid `traceparent` and the replicas
//! continue the client's trace.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::Context as _;
use indicatif::MultiProgress;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

/// The `service.name` of client spans (unless `OTEL_SERVICE_NAME` says otherwise).
pub const SERVICE_NAME: &str = "conduit-load";

static PROGRESS: OnceLock<MultiProgress> = OnceLock::new();

/// A logger that hides the live view while it writes a line, so the two do not mix.
struct SuspendingLogger {
    inner: env_logger::Logger,
}

impl log::Log for SuspendingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        match PROGRESS.get() {
            Some(mp) => mp.suspend(|| self.inner.log(record)),
            None => self.inner.log(record),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// Install the logger (`RUST_LOG`, default `info`). Safe to call more than once.
pub fn init_logging() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(SuspendingLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

/// Tell the logger about the live view (log lines then suspend it while they print).
pub fn attach_progress(mp: MultiProgress) {
    let _ = PROGRESS.set(mp);
}

/// Client tracing: the provider (flushed by [`Tracing::shutdown`]) and the tracer.
pub struct Tracing {
    provider: SdkTracerProvider,
    /// Tracer for session and request spans.
    pub tracer: SdkTracer,
    exporting: bool,
}

impl Tracing {
    /// Build the provider. `endpoint` is the OTLP endpoint, if any; `protocol` is `grpc` or
    /// `http/protobuf`. `OTEL_SDK_DISABLED=true` turns export off.
    ///
    /// Must be called inside the Tokio runtime (the gRPC exporter needs it).
    pub fn init(endpoint: Option<&str>, protocol: &str) -> anyhow::Result<Tracing> {
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
        let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty());
        let exporting = match endpoint {
            Some(endpoint) if !disabled => {
                let exporter = if protocol == "http/protobuf" {
                    let url = if endpoint.ends_with("/v1/traces") {
                        endpoint.to_string()
                    } else {
                        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                    };
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_endpoint(url)
                        .build()
                } else {
                    opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .build()
                }
                .context("building the OTLP span exporter")?;
                builder = builder.with_batch_exporter(exporter);
                log::info!("exporting client spans to {endpoint} ({protocol})");
                true
            }
            _ => false,
        };
        let provider = builder.build();
        let tracer = provider.tracer(SERVICE_NAME);
        Ok(Tracing {
            provider,
            tracer,
            exporting,
        })
    }

    /// Flush and stop the exporter. Blocking: call it from `spawn_blocking`.
    pub fn shutdown(&self) {
        if self.exporting {
            if let Err(e) = self.provider.shutdown() {
                log::warn!("flushing client spans failed: {e}");
            }
        }
    }
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// W3C trace-context headers (`traceparent`, maybe `tracestate`) for the span in `cx`.
pub fn trace_headers(cx: &Context) -> HashMap<String, String> {
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut MapInjector(&mut map));
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt, Tracer};

    #[tokio::test]
    async fn a_child_span_gets_a_traceparent_in_its_parents_trace_without_an_exporter() {
        let tracing = Tracing::init(None, "grpc").unwrap();
        let root = tracing
            .tracer
            .start_with_context("session", &Context::new());
        let root_cx = Context::new().with_span(root);
        let child = tracing.tracer.start_with_context("GET", &root_cx);
        let child_cx = root_cx.with_span(child);

        let headers = trace_headers(&child_cx);
        let tp = &headers["traceparent"];
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert_eq!(
            parts[1],
            root_cx.span().span_context().trace_id().to_string()
        );
        assert_eq!(
            parts[2],
            child_cx.span().span_context().span_id().to_string()
        );
        assert_eq!(parts[3], "01", "sampled flag");
        assert_ne!(parts[1], "0".repeat(32));
    }
}
