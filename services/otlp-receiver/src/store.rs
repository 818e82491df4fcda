//! The bounded in-memory span store: turns OTLP export requests into [`SpanRecord`]s grouped by
//! trace, and builds [`Report`]s from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::sync::watch;

use crate::report::{Report, SpanRecord, TraceReport, MISSING};

/// Shared handle to the spans received so far. Cloning it is cheap; clones share the data.
#[derive(Clone)]
pub(crate) struct SpanStore {
    inner: Arc<Mutex<Inner>>,
    /// Number of stored spans, published after every change so waiters can wake up.
    stored_tx: Arc<watch::Sender<usize>>,
}

struct Inner {
    max_spans: usize,
    stored: usize,
    dropped: u64,
    traces: BTreeMap<String, Vec<SpanRecord>>,
}

impl SpanStore {
    /// An empty store that keeps at most `max_spans` spans and counts the rest as dropped.
    pub(crate) fn new(max_spans: usize) -> Self {
        let inner = Inner {
            max_spans,
            stored: 0,
            dropped: 0,
            traces: BTreeMap::new(),
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            stored_tx: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Stores the spans of one export request.
    ///
    /// # Returns
    /// How many spans of the request were refused because the store was full.
    pub(crate) fn ingest(&self, request: ExportTraceServiceRequest) -> u64 {
        let mut inner = self.lock();
        let mut refused = 0;
        for resource_spans in request.resource_spans {
            let resource_attrs = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            let instance = find_attr(&resource_attrs, "service.instance.id");
            let service = find_attr(&resource_attrs, "service.name");
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                if inner.stored >= inner.max_spans {
                    refused += 1;
                    continue;
                }
                let kind = SpanKind::try_from(span.kind)
                    .map(|k| k.as_str_name().trim_start_matches("SPAN_KIND_"))
                    .unwrap_or("UNSPECIFIED");
                let record = SpanRecord {
                    name: span.name,
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    kind: kind.to_owned(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value_to_string(kv.value.as_ref())))
                        .collect(),
                    status: span
                        .status
                        .as_ref()
                        .and_then(|s| StatusCode::try_from(s.code).ok())
                        .unwrap_or(StatusCode::Unset)
                        .as_str_name()
                        .trim_start_matches("STATUS_CODE_")
                        .to_owned(),
                    status_message: span
                        .status
                        .as_ref()
                        .map(|s| s.message.clone())
                        .unwrap_or_default(),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                    links: span
                        .links
                        .iter()
                        .map(|l| format!("{}-{}", hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    service_instance_id: instance.clone(),
                    service_name: service.clone(),
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                };
                inner
                    .traces
                    .entry(hex(&span.trace_id))
                    .or_default()
                    .push(record);
                inner.stored += 1;
            }
        }
        inner.dropped += refused;
        let stored = inner.stored;
        drop(inner);
        self.stored_tx.send_replace(stored);
        refused
    }

    /// Builds a report of every stored span, or of one trace when `trace_id` is given.
    /// With `with_spans` false the per-trace span lists are left empty (the counts stay).
    pub(crate) fn report(&self, trace_id: Option<&str>, with_spans: bool) -> Report {
        let inner = self.lock();
        let mut report = Report {
            dropped_spans: inner.dropped,
            max_spans: inner.max_spans,
            ..Report::default()
        };
        let wanted = trace_id.map(str::to_ascii_lowercase);
        let traces = inner
            .traces
            .iter()
            .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w == *id));
        for (id, spans) in traces {
            let mut trace = TraceReport {
                span_count: spans.len(),
                ..TraceReport::default()
            };
            for span in spans {
                let instance = span.service_instance_id.as_deref();
                let service = span.service_name.as_deref();
                *report
                    .spans_per_instance
                    .entry(instance.unwrap_or(MISSING).to_owned())
                    .or_default() += 1;
                *report
                    .spans_per_service
                    .entry(service.unwrap_or(MISSING).to_owned())
                    .or_default() += 1;
                if let Some(instance) = instance {
                    trace.instances.insert(instance.to_owned());
                }
            }
            if with_spans {
                trace.spans = spans.clone();
            }
            report.total_spans += spans.len();
            report.traces.insert(id.clone(), trace);
        }
        report
    }

    /// Forgets every span and the dropped count.
    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        inner.traces.clear();
        inner.stored = 0;
        inner.dropped = 0;
        drop(inner);
        self.stored_tx.send_replace(0);
    }

    /// A receiver that sees the stored span count change.
    pub(crate) fn watch_stored(&self) -> watch::Receiver<usize> {
        self.stored_tx.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data stays consistent even if a holder panicked: every update is a push plus counters.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The string value of a resource attribute, if present.
fn find_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_to_string(kv.value.as_ref()))
}

/// Lowercase hex of an id.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Renders an attribute value as a string: scalars as themselves, bytes as hex, arrays and
/// maps in a JSON-like form.
fn value_to_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::StringValueStrindex(i)) => format!("strindex:{i}"),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_to_string(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(kvs)) => {
            let items: Vec<String> = kvs
                .values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, value_to_string(kv.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request(instance: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Value::StringValue("svc".into())),
                        kv("service.instance.id", Value::StringValue(instance.into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn span(trace: u8, id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("span-{id}"),
            kind: SpanKind::Server as i32,
            attributes: vec![
                kv("http.status", Value::IntValue(200)),
                kv(
                    "tags",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::BoolValue(true)),
                        }],
                    }),
                ),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn spans_are_grouped_by_trace_and_counted_per_instance() {
        let store = SpanStore::new(100);
        store.ingest(request("a", vec![span(1, 1, None), span(1, 2, Some(1))]));
        store.ingest(request("b", vec![span(1, 3, Some(2)), span(2, 4, None)]));

        let report = store.report(None, true);

        assert_eq!(report.total_spans, 4);
        assert_eq!(report.spans_for_instance("a"), 2);
        assert_eq!(report.spans_for_instance("b"), 2);
        assert_eq!(report.spans_per_service["svc"], 4);
        let trace = report.trace(&"01".repeat(16)).expect("trace 1");
        assert_eq!(trace.span_count, 3);
        assert_eq!(trace.instances.iter().collect::<Vec<_>>(), ["a", "b"]);
        let child = trace.span_named("span-3").expect("span-3");
        assert_eq!(child.parent_span_id.as_deref(), Some("0202020202020202"));
        assert_eq!(child.kind, "SERVER");
        assert_eq!(child.attributes["http.status"], "200");
        assert_eq!(child.attributes["tags"], "[true]");
        assert_eq!(trace.span_named("span-1").unwrap().parent_span_id, None);
    }

    #[test]
    fn a_trace_filter_reports_only_that_trace() {
        let store = SpanStore::new(100);
        store.ingest(request("a", vec![span(1, 1, None), span(2, 2, None)]));

        let report = store.report(Some(&"02".repeat(16).to_uppercase()), false);

        assert_eq!(report.total_spans, 1);
        assert_eq!(report.traces.len(), 1);
        assert!(report.traces.values().all(|t| t.spans.is_empty()));
    }

    #[test]
    fn spans_beyond_the_limit_are_dropped_and_counted() {
        let store = SpanStore::new(2);
        let refused = store.ingest(request("a", (1..=5).map(|i| span(1, i, None)).collect()));

        let report = store.report(None, true);

        assert_eq!(refused, 3);
        assert_eq!(report.total_spans, 2);
        assert_eq!(report.dropped_spans, 3);
        store.reset();
        assert_eq!(
            store.report(None, true),
            Report {
                max_spans: 2,
                ..Report::default()
            }
        );
    }
}
