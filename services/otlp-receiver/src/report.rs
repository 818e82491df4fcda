//! The JSON report served at `GET /report`, as typed structs that both the receiver and its
//! clients use (`Serialize` to write it, `Deserialize` to read it back).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Map key used in the per-instance and per-service counts for spans whose resource has no
/// `service.instance.id` (or no `service.name`).
pub const MISSING: &str = "(none)";

/// Everything the receiver holds, or the part of it that belongs to one trace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Spans in this report (all stored spans, or the spans of the requested trace).
    pub total_spans: usize,
    /// Spans refused since the last reset because the store was full (always the global count).
    pub dropped_spans: u64,
    /// The store's capacity in spans.
    pub max_spans: usize,
    /// Span count per `service.instance.id` resource attribute ([`MISSING`] when absent).
    pub spans_per_instance: BTreeMap<String, usize>,
    /// Span count per `service.name` resource attribute ([`MISSING`] when absent).
    pub spans_per_service: BTreeMap<String, usize>,
    /// Traces keyed by their trace id in lowercase hex (32 digits).
    pub traces: BTreeMap<String, TraceReport>,
}

/// One trace: how many spans it has, which instances made them, and the spans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReport {
    /// Number of spans with this trace id.
    pub span_count: usize,
    /// The distinct `service.instance.id` values of those spans (absent ones are left out).
    pub instances: BTreeSet<String>,
    /// The spans in arrival order; empty when the report was asked for with `spans=false`.
    #[serde(default)]
    pub spans: Vec<SpanRecord>,
}

/// One span, flattened to strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The span name.
    pub name: String,
    /// Span id, lowercase hex (16 digits).
    pub span_id: String,
    /// Parent span id in lowercase hex, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// `SERVER`, `CLIENT`, `INTERNAL`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`.
    pub kind: String,
    /// Span attributes, every value rendered as a string.
    pub attributes: BTreeMap<String, String>,
    /// The status: `UNSET`, `OK` or `ERROR`.
    #[serde(default)]
    pub status: String,
    /// The status message (set with `ERROR`), empty when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    /// The names of the span's events, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The span's links, each `<trace id>-<span id>` in lowercase hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// The resource's `service.instance.id`.
    pub service_instance_id: Option<String>,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
}

impl Report {
    /// Spans reported for one `service.instance.id` (0 when there are none).
    pub fn spans_for_instance(&self, instance: &str) -> usize {
        self.spans_per_instance.get(instance).copied().unwrap_or(0)
    }

    /// The trace with this id (hex, any case), if the report holds it.
    pub fn trace(&self, trace_id: &str) -> Option<&TraceReport> {
        self.traces.get(&trace_id.to_ascii_lowercase())
    }
}

impl TraceReport {
    /// The first span of this trace with the given name.
    pub fn span_named(&self, name: &str) -> Option<&SpanRecord> {
        self.spans.iter().find(|s| s.name == name)
    }
}
