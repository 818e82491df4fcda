//! Spans, made with the OpenTelemetry API directly.
//!
//! A request's server span is started by the access middleware and attached to the request's
//! future as the current OpenTelemetry context; the work inside it (password hashing, each Redis
//! round trip) starts child spans of whatever is current, and the token check is recorded on the
//! server span itself. Nothing here goes through
//! `tracing`: a span costs the SDK's bookkeeping and no more, and a span that the sampler drops
//! costs almost nothing.

use std::borrow::Cow;
use std::sync::OnceLock;

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use crate::config::TraceTrust;

struct Tracing {
    tracer: SdkTracer,
    /// Whether spans leave the process. Without an exporter only server spans are made: they
    /// give each request a trace id for its logs and its `X-Trace-Id`.
    exporting: bool,
    /// Whether a caller's `traceparent` is continued or only linked.
    trust: TraceTrust,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Makes spans from now on. Called once, by `telemetry::init`.
pub(super) fn install(tracer: SdkTracer, exporting: bool, trust: TraceTrust) {
    let _ = TRACING.set(Tracing {
        tracer,
        exporting,
        trust,
    });
}

/// Whether spans leave the process.
pub(super) fn exporting() -> bool {
    TRACING.get().is_some_and(|t| t.exporting)
}

/// A span of work inside a request. It ends when dropped.
///
/// Outside a sampled request, or with tracing off, it is empty and costs nothing.
pub struct SpanGuard(Option<opentelemetry_sdk::trace::Span>);

impl SpanGuard {
    /// Marks the span as failed, with a short description of why.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(description));
        }
    }
}

/// Starts a span inside the current request's span. `attributes` is only called when the span
/// is recorded.
pub fn child(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> SpanGuard {
    let Some(tracing) = TRACING.get().filter(|t| t.exporting) else {
        return SpanGuard(None);
    };
    Context::map_current(|parent| {
        if !parent.span().span_context().is_sampled() {
            return SpanGuard(None);
        }
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(attributes());
        SpanGuard(Some(tracing.tracer.build_with_context(builder, parent)))
    })
}

/// What the server span of one request is made from.
pub struct ServerRequest<'a> {
    pub method: &'a str,
    /// The route template (`/api/articles/{slug}`), never the raw path: it names the span.
    pub route: &'a str,
    /// The path and query as sent; the span keeps at most [`MAX_TARGET_LEN`] bytes of it.
    pub target: &'a str,
    pub replica: &'a str,
    pub headers: &'a HeaderMap,
}

/// Bytes of a request's path and query kept in its span: enough to tell requests apart, while
/// an 8 KB query string cannot fill the export queue.
pub const MAX_TARGET_LEN: usize = 256;

/// The request's trace id as 32 hex digits, formatted once when its server span starts and
/// read from the context by the `X-Trace-Id` header and by every log line.
struct TraceIdText(String);

/// Starts a request's server span. A caller's `traceparent` is continued, or with
/// `CONDUIT_TRACE_TRUST=link` becomes a link of a new trace whose sampling the caller cannot
/// turn off. Returns the context to run the request in (empty with tracing off).
pub fn start_server_span(request: ServerRequest<'_>) -> Context {
    let Some(tracing) = TRACING.get() else {
        return Context::new();
    };
    let mut parent = remote_parent(request.headers);
    let mut links = Vec::new();
    if tracing.trust == TraceTrust::Link {
        let caller = parent.span().span_context().clone();
        if caller.is_valid() {
            links.push(Link::with_context(caller));
        }
        parent = Context::new();
    }
    // The name and attributes are given once the sampler has kept the span: a request it drops
    // (nine in ten at the recommended 10 % sampling) builds none of them. The samplers the SDK
    // offers decide by trace id and parent alone.
    let builder = SpanBuilder::from_name("request")
        .with_kind(SpanKind::Server)
        .with_links(links);
    let mut span = tracing.tracer.build_with_context(builder, &parent);
    if span.is_recording() {
        span.update_name(format!("{} {}", request.method, request.route));
        span.set_attributes([
            KeyValue::new("http.method", request.method.to_owned()),
            KeyValue::new("http.route", request.route.to_owned()),
            KeyValue::new(
                "http.target",
                bounded(request.target, MAX_TARGET_LEN).to_owned(),
            ),
            KeyValue::new("conduit.replica", request.replica.to_owned()),
        ]);
    }
    let context = parent.with_span(span);
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        context.with_value(TraceIdText(span_context.trace_id().to_string()))
    } else {
        context
    }
}

/// The longest prefix of `text` that fits in `max` bytes and ends on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How a request's token check went, recorded on its server span: the key id and outcome as
/// attributes, and a refusal also as an event. A token check is a few microseconds of CPU with
/// no I/O, so it gets no span of its own.
pub fn record_token_check(kid: Option<&str>, refusal: Option<&dyn std::fmt::Display>) {
    Context::map_current(|cx| {
        let span = cx.span();
        if !span.is_recording() {
            return;
        }
        if let Some(kid) = kid {
            span.set_attribute(KeyValue::new("conduit.token.kid", kid.to_owned()));
        }
        match refusal {
            None => span.set_attribute(KeyValue::new("conduit.token.outcome", "valid")),
            Some(why) => {
                span.set_attribute(KeyValue::new("conduit.token.outcome", "refused"));
                span.add_event(
                    "token refused",
                    vec![KeyValue::new("conduit.token.reason", why.to_string())],
                );
            }
        }
    });
}

/// Ends a server span with the response status. A 5xx marks the span as failed, with the
/// error's message when there is one.
pub fn end_server_span(
    context: &Context,
    status: StatusCode,
    error: Option<&dyn std::fmt::Display>,
) {
    let span = context.span();
    if !span.is_recording() {
        return;
    }
    span.set_attribute(KeyValue::new(
        "http.status_code",
        i64::from(status.as_u16()),
    ));
    if status.is_server_error() {
        let message = error.map_or_else(|| status.to_string(), ToString::to_string);
        span.set_attribute(KeyValue::new("exception.message", message.clone()));
        span.set_status(Status::error(message));
    } else {
        span.set_status(Status::Ok);
    }
    span.end();
}

/// The trace id of a request's context, as 32 hex digits, if it has one.
pub fn trace_id(context: &Context) -> Option<&str> {
    context.get::<TraceIdText>().map(|id| id.0.as_str())
}

/// Reads W3C trace context from request headers.
struct HeaderCarrier<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's span from a `traceparent` header, or an empty context.
fn remote_parent(headers: &HeaderMap) -> Context {
    if !headers.contains_key("traceparent") {
        return Context::new();
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderCarrier(headers))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_target_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("/api/tags", 256), "/api/tags");
        let long = format!("/api/articles?tag={}", "é".repeat(400));
        let cut = bounded(&long, MAX_TARGET_LEN);
        assert!(cut.len() <= MAX_TARGET_LEN && cut.len() >= MAX_TARGET_LEN - 1);
        assert!(long.starts_with(cut));
    }
}
