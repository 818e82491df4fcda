//! Shared counters: responses per replica, logical requests, errors by kind, latency histograms,
//! acknowledged writes. One lock, held only to bump numbers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::retry::Attempt;

/// At most this many spans of failed requests are kept.
pub const MAX_FAILURE_STARTS: usize = 10_000;

/// Name used for responses that carried no `X-Served-By` header.
pub const UNKNOWN_REPLICA: &str = "(none)";

/// Latency histogram in microseconds, 1 us to 5 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds")
}

/// Per-operation numbers.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Logical requests.
    pub count: u64,
    /// Logical requests that failed after retries.
    pub failed: u64,
    /// Latency of each logical request, retries included (microseconds).
    pub hist: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            count: 0,
            failed: 0,
            hist: new_histogram(),
        }
    }
}

/// Everything counted so far (or in one timeline second).
#[derive(Debug, Clone)]
pub struct Counters {
    /// HTTP responses (every attempt that got one) per `X-Served-By` value.
    pub by_replica: BTreeMap<String, u64>,
    /// Logical requests that failed after retries, by kind (`"503"`, `"connect"`, `"timeout"`...).
    pub errors: BTreeMap<String, u64>,
    /// Logical requests (one per operation, however many attempts it took).
    pub requests: u64,
    /// Logical requests that ended with a 2xx.
    pub ok: u64,
    /// Logical requests that failed after retries.
    pub failed: u64,
    /// When each failed logical request was sent and when it gave up (Unix milliseconds; the
    /// first [`MAX_FAILURE_STARTS`]): a fault window judges a request by whether it was under
    /// way during the window, since one sent during an outage may fail only later, after its
    /// retries.
    pub failure_spans_ms: Vec<(u64, u64)>,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Acknowledged (2xx) writes by kind.
    pub writes_acked: BTreeMap<String, u64>,
    /// Acknowledged writes whose answer was a replay (`Idempotent-Replayed: true`).
    pub writes_replayed: u64,
    /// Writes that were never acknowledged.
    pub writes_failed: u64,
    /// Latency of every logical request (microseconds).
    pub hist: Histogram<u64>,
    /// Per-operation numbers by operation name.
    pub ops: BTreeMap<String, OpStats>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            by_replica: BTreeMap::new(),
            errors: BTreeMap::new(),
            requests: 0,
            ok: 0,
            failed: 0,
            failure_spans_ms: Vec::new(),
            retries: 0,
            writes_acked: BTreeMap::new(),
            writes_replayed: 0,
            writes_failed: 0,
            hist: new_histogram(),
            ops: BTreeMap::new(),
        }
    }
}

impl Counters {
    /// Sum of acknowledged writes over all kinds.
    pub fn writes_acked_total(&self) -> u64 {
        self.writes_acked.values().sum()
    }

    fn response(&mut self, served_by: Option<&str>) {
        let key = served_by.unwrap_or(UNKNOWN_REPLICA);
        match self.by_replica.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                self.by_replica.insert(key.to_string(), 1);
            }
        }
    }

    fn request(&mut self, op: &str, latency: Duration, outcome: Attempt) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.requests += 1;
        self.hist.saturating_record(micros);
        let entry = self.ops.entry(op.to_string()).or_default();
        entry.count += 1;
        entry.hist.saturating_record(micros);
        match outcome.error_kind() {
            None => self.ok += 1,
            Some(kind) => {
                self.failed += 1;
                if self.failure_spans_ms.len() < MAX_FAILURE_STARTS {
                    let took = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                    let ended = crate::writelog::now_ms();
                    self.failure_spans_ms
                        .push((ended.saturating_sub(took), ended));
                }
                entry.failed += 1;
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    fn write_acked(&mut self, kind: &str, replayed: bool) {
        *self.writes_acked.entry(kind.to_string()).or_default() += 1;
        if replayed {
            self.writes_replayed += 1;
        }
    }
}

/// The shared collector.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<(Counters, Counters)>,
}

impl Stats {
    fn with<F: Fn(&mut Counters)>(&self, f: F) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (total, window) = &mut *guard;
        f(total);
        f(window);
    }

    /// Count one HTTP response from the replica named by `served_by`.
    pub fn record_response(&self, served_by: Option<&str>) {
        self.with(|c| c.response(served_by));
    }

    /// Count one retry (an attempt after the first).
    pub fn record_retry(&self) {
        self.with(|c| c.retries += 1);
    }

    /// Count one finished logical request of operation `op`.
    pub fn record_request(&self, op: &str, latency: Duration, outcome: Attempt) {
        self.with(|c| c.request(op, latency, outcome));
    }

    /// Count one acknowledged write of `kind`.
    pub fn record_write_acked(&self, kind: &str, replayed: bool) {
        self.with(|c| c.write_acked(kind, replayed));
    }

    /// Count one write that was never acknowledged.
    pub fn record_write_failed(&self) {
        self.with(|c| c.writes_failed += 1);
    }

    /// Copy of the totals so far.
    pub fn totals(&self) -> Counters {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.clone()
    }

    /// Take the numbers counted since the previous call (for the per-second timeline).
    pub fn take_window(&self) -> Counters {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut guard.1)
    }
}

/// Value at quantile `q` (0..=1) of a microsecond histogram, in milliseconds (0 when empty).
pub fn quantile_ms(hist: &Histogram<u64>, q: f64) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    round3(hist.value_at_quantile(q) as f64 / 1000.0)
}

/// Largest recorded value of a microsecond histogram, in milliseconds (0 when empty).
pub fn max_ms(hist: &Histogram<u64>) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    round3(hist.max() as f64 / 1000.0)
}

/// Mean of a microsecond histogram, in milliseconds (0 when empty).
pub fn mean_ms(hist: &Histogram<u64>) -> f64 {
    if hist.is_empty() {
        return 0.0;
    }
    round3(hist.mean() / 1000.0)
}

/// Requests per second, 0 for an empty interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        round3(count as f64 / secs)
    }
}

/// Round to three decimals, for stable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_per_replica_and_a_missing_header_is_named() {
        let stats = Stats::default();
        stats.record_response(Some("api-1"));
        stats.record_response(Some("api-2"));
        stats.record_response(Some("api-1"));
        stats.record_response(None);
        let t = stats.totals();
        assert_eq!(t.by_replica["api-1"], 2);
        assert_eq!(t.by_replica["api-2"], 1);
        assert_eq!(t.by_replica[UNKNOWN_REPLICA], 1);
    }

    #[test]
    fn failed_requests_are_counted_by_kind() {
        let stats = Stats::default();
        let ms = Duration::from_millis(3);
        stats.record_request("tags", ms, Attempt::Status(200));
        stats.record_request("tags", ms, Attempt::Status(503));
        stats.record_request("feed", ms, Attempt::Connect);
        stats.record_request("feed", ms, Attempt::Status(503));
        let t = stats.totals();
        assert_eq!((t.requests, t.ok, t.failed), (4, 1, 3));
        assert_eq!(t.errors["503"], 2);
        assert_eq!(t.errors["connect"], 1);
        assert_eq!(t.ops["tags"].failed, 1);
        assert_eq!(t.ops["feed"].count, 2);
    }

    #[test]
    fn the_window_restarts_after_it_is_taken_but_totals_do_not() {
        let stats = Stats::default();
        stats.record_response(Some("a"));
        stats.record_write_acked("article", false);
        let first = stats.take_window();
        stats.record_response(Some("a"));
        let second = stats.take_window();
        assert_eq!(first.by_replica["a"], 1);
        assert_eq!(first.writes_acked_total(), 1);
        assert_eq!(second.by_replica["a"], 1);
        assert_eq!(second.writes_acked_total(), 0);
        assert_eq!(stats.totals().by_replica["a"], 2);
    }

    #[test]
    fn a_replayed_write_counts_once() {
        let stats = Stats::default();
        stats.record_write_acked("comment", true);
        stats.record_write_acked("comment", false);
        let t = stats.totals();
        assert_eq!(t.writes_acked["comment"], 2);
        assert_eq!(t.writes_replayed, 1);
    }

    #[test]
    fn quantiles_are_reported_in_milliseconds() {
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let p50 = quantile_ms(&h, 0.5);
        let p99 = quantile_ms(&h, 0.99);
        assert!((49.9..=50.1).contains(&p50), "p50 {p50}");
        assert!((98.9..=99.1).contains(&p99), "p99 {p99}");
        assert!((99.9..=100.1).contains(&max_ms(&h)));
        assert_eq!(quantile_ms(&new_histogram(), 0.5), 0.0);
    }

    #[test]
    fn the_rate_of_an_empty_interval_is_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(4)), 2.5);
    }
}
