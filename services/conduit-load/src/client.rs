//! HTTP client for the API: picks a target round-robin, sends trace headers, retries by the
//! [`RetryPolicy`], and counts every response per replica.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use reqwest::Method;
use serde_json::Value;

use crate::retry::{Attempt, Decision, RetryPolicy};
use crate::stats::Stats;
use crate::telemetry::trace_headers;

/// Response header naming the replica that answered.
pub const SERVED_BY: &str = "x-served-by";
/// Response header set when an idempotent write's stored answer is replayed.
pub const REPLAYED: &str = "idempotent-replayed";
/// Response header naming the trace the replica recorded the request in.
pub const TRACE_ID: &str = "x-trace-id";

/// How long a target that refused a connection is skipped when there are others.
pub const DOWN_FOR: Duration = Duration::from_secs(1);

/// One logical request.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: Method,
    /// Path and query, e.g. `/api/articles?limit=20`.
    pub path: String,
    /// Route template for the span name, e.g. `/api/articles/{slug}`.
    pub route: &'static str,
    /// Operation name for the statistics.
    pub op: &'static str,
    pub body: Option<Value>,
    pub token: Option<&'a str>,
    /// Set for writes: sent as `Idempotency-Key`, the same on every attempt.
    pub idempotency_key: Option<String>,
    /// Set for writes: the kind counted when the write is acknowledged.
    pub write_kind: Option<&'static str>,
}

impl<'a> Call<'a> {
    /// A read.
    pub fn read(path: String, route: &'static str, op: &'static str, token: &'a str) -> Self {
        Call {
            method: Method::GET,
            path,
            route,
            op,
            body: None,
            token: Some(token),
            idempotency_key: None,
            write_kind: None,
        }
    }

    /// A write with its idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        method: Method,
        path: String,
        route: &'static str,
        op: &'static str,
        kind: &'static str,
        body: Option<Value>,
        token: Option<&'a str>,
        key: String,
    ) -> Self {
        Call {
            method,
            path,
            route,
            op,
            body,
            token,
            idempotency_key: Some(key),
            write_kind: Some(kind),
        }
    }
}

/// How a logical request ended.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The last attempt's outcome.
    pub outcome: Attempt,
    /// Parsed JSON body of the last response (`Null` when absent or not JSON).
    pub body: Value,
    pub served_by: Option<String>,
    /// `X-Trace-Id` of the last response: the trace the replica put its spans in.
    pub trace_id: Option<String>,
    /// The answer was a replay of an earlier execution of the same write.
    pub replayed: bool,
    pub attempts: u32,
}

impl Reply {
    /// True when the request ended with a 2xx.
    pub fn ok(&self) -> bool {
        self.outcome.is_success()
    }

    /// HTTP status of the last attempt, or 0 when none arrived.
    pub fn status(&self) -> u16 {
        match self.outcome {
            Attempt::Status(s) => s,
            _ => 0,
        }
    }
}

/// The shared client.
pub struct Client {
    http: reqwest::Client,
    targets: Vec<String>,
    next: AtomicUsize,
    /// Per target: milliseconds after `epoch` until which it is skipped.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
    policy: RetryPolicy,
    stats: Arc<Stats>,
    tracer: SdkTracer,
}

impl Client {
    /// Build a client for `targets` (base URLs without trailing slash).
    pub fn new(
        targets: Vec<String>,
        timeout: Duration,
        policy: RetryPolicy,
        stats: Arc<Stats>,
        tracer: SdkTracer,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            // Load goes straight to the targets, never through a proxy from the environment.
            .no_proxy()
            .user_agent(concat!("conduit-load/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            down_until: targets.iter().map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            targets,
            next: AtomicUsize::new(0),
            policy,
            stats,
            tracer,
        })
    }

    /// The shared statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Next target round-robin, skipping `avoid` and targets that refused a connection in the
    /// last [`DOWN_FOR`] (unless nothing else is left).
    fn pick_target(&self, avoid: Option<usize>) -> usize {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        let usable =
            |i: usize| Some(i) != avoid && self.down_until[i].load(Ordering::Relaxed) <= now;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| usable(i))
            .or_else(|| (0..n).map(|k| (start + k) % n).find(|&i| Some(i) != avoid))
            .unwrap_or(start % n)
    }

    fn mark_down(&self, i: usize) {
        let until = self.epoch.elapsed() + DOWN_FOR;
        self.down_until[i].store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// Send `call` as a child of the span in `parent`, retrying as the policy says.
    /// Each attempt is its own client span and goes to the next target.
    pub async fn send(&self, parent: &Context, call: Call<'_>) -> Reply {
        let started = Instant::now();
        let is_write = call.idempotency_key.is_some();
        let mut attempt = 0u32;
        // Attempts that count against the limit: a write's 409 only means "wait".
        let mut counted = 0u32;
        let mut avoid = None;
        let reply = loop {
            attempt += 1;
            let (reply, target) = self.attempt(parent, &call, attempt, avoid).await;
            if !(is_write && reply.outcome == Attempt::Status(409)) {
                counted += 1;
            }
            // A retry goes elsewhere when this target could not be reached or was unavailable.
            avoid = matches!(
                reply.outcome,
                Attempt::Connect | Attempt::Timeout | Attempt::Status(502) | Attempt::Status(503)
            )
            .then_some(target);
            match self
                .policy
                .decide(is_write, reply.outcome, counted.max(1), started.elapsed())
            {
                Decision::Done => break reply,
                Decision::RetryAfter(pause) => {
                    log::debug!(
                        "{} {} attempt {attempt}: {}, retrying",
                        call.method,
                        call.path,
                        reply.outcome
                    );
                    self.stats.record_retry();
                    let jitter_ms = rand::rng().random_range(0..=pause.as_millis() as u64 / 4);
                    tokio::time::sleep(pause + Duration::from_millis(jitter_ms)).await;
                }
            }
        };
        self.stats
            .record_request(call.op, started.elapsed(), reply.outcome);
        if let Some(kind) = call.write_kind {
            if reply.ok() {
                self.stats.record_write_acked(kind, reply.replayed);
            } else {
                self.stats.record_write_failed();
            }
        }
        if !reply.ok() {
            log::debug!(
                "{} {} failed after {attempt} attempt(s): {}",
                call.method,
                call.path,
                reply.outcome
            );
        }
        Reply {
            attempts: attempt,
            ..reply
        }
    }

    async fn attempt(
        &self,
        parent: &Context,
        call: &Call<'_>,
        attempt: u32,
        avoid: Option<usize>,
    ) -> (Reply, usize) {
        let target = self.pick_target(avoid);
        let url = format!("{}{}", self.targets[target], call.path);
        let span = self
            .tracer
            .span_builder(format!("{} {}", call.method, call.route))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", call.method.to_string()),
                KeyValue::new("url.full", url.clone()),
                KeyValue::new("http.route", call.route),
                KeyValue::new("conduit.operation", call.op),
                KeyValue::new("conduit.attempt", i64::from(attempt)),
            ])
            .start_with_context(&self.tracer, parent);
        let cx = parent.with_span(span);

        let mut req = self.http.request(call.method.clone(), &url);
        for (k, v) in trace_headers(&cx) {
            req = req.header(k, v);
        }
        if let Some(token) = call.token {
            req = req.header("Authorization", format!("Token {token}"));
        }
        if let Some(key) = &call.idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = &call.body {
            req = req.json(body);
        }

        let reply = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let served_by = header(&resp, SERVED_BY);
                let trace_id = header(&resp, TRACE_ID);
                let replayed =
                    header(&resp, REPLAYED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
                self.stats.record_response(served_by.as_deref());
                match resp.bytes().await {
                    Ok(bytes) => Reply {
                        outcome: Attempt::Status(status),
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        served_by,
                        trace_id,
                        replayed,
                        attempts: attempt,
                    },
                    Err(e) => Reply {
                        outcome: classify(&e),
                        body: Value::Null,
                        served_by,
                        trace_id,
                        replayed,
                        attempts: attempt,
                    },
                }
            }
            Err(e) => Reply {
                outcome: classify(&e),
                body: Value::Null,
                served_by: None,
                trace_id: None,
                replayed: false,
                attempts: attempt,
            },
        };

        let span = cx.span();
        if let Attempt::Status(s) = reply.outcome {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(by) = &reply.served_by {
            span.set_attribute(KeyValue::new("conduit.served_by", by.clone()));
        }
        if reply.replayed {
            span.set_attribute(KeyValue::new("conduit.idempotent_replayed", true));
        }
        if let Some(kind) = reply.outcome.error_kind() {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(reply.outcome.to_string()));
        }
        span.end();
        if reply.outcome == Attempt::Connect && reply.served_by.is_none() && self.targets.len() > 1
        {
            self.mark_down(target);
        }
        (reply, target)
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Map a transport error to an attempt outcome. A connection refused, reset or closed before
/// the response counts as `Connect`: nothing useful arrived, and a retry is safe (reads are
/// harmless, writes carry their idempotency key).
fn classify(e: &reqwest::Error) -> Attempt {
    if e.is_timeout() {
        Attempt::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        Attempt::Connect
    } else {
        Attempt::Other
    }
}

/// Bytes a path segment keeps as they are: RFC 3986's unreserved `A-Za-z0-9-._~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one path segment (keeps `A-Za-z0-9-._~`).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Tracing;

    async fn client(n: usize) -> Client {
        let tracing = Tracing::init(None, "grpc").unwrap();
        let targets = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 1 + i))
            .collect();
        Client::new(
            targets,
            Duration::from_secs(1),
            RetryPolicy::default(),
            Arc::new(Stats::default()),
            tracing.tracer.clone(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn targets_are_used_round_robin() {
        let c = client(3).await;
        let picks: Vec<usize> = (0..6).map(|_| c.pick_target(None)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test]
    async fn a_retry_avoids_the_target_that_just_failed() {
        let c = client(2).await;
        for _ in 0..6 {
            assert_eq!(c.pick_target(Some(0)), 1);
        }
    }

    #[tokio::test]
    async fn a_target_that_refused_a_connection_is_skipped_for_a_while() {
        let c = client(3).await;
        c.mark_down(1);
        let picks: Vec<usize> = (0..9).map(|_| c.pick_target(None)).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2));
    }

    #[tokio::test]
    async fn when_every_target_is_down_one_is_still_tried() {
        let c = client(2).await;
        c.mark_down(0);
        c.mark_down(1);
        assert_eq!(c.pick_target(Some(0)), 1);
        let _ = c.pick_target(None);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("how-to-train_1"), "how-to-train_1");
        assert_eq!(encode_segment("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
