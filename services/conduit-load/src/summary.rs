//! The final summary: built from the counters, checked against `--min-replicas` and
//! `--max-errors`, printed as a table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::stats::{max_ms, mean_ms, quantile_ms, rate, round3, Counters, UNKNOWN_REPLICA};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Logical request counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Requests {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
}

/// Write counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Writes {
    /// Writes answered with a 2xx (a replayed answer counts once).
    pub acknowledged: u64,
    /// How many of those answers were replays of an earlier execution.
    pub replayed: u64,
    /// Writes never acknowledged after all attempts.
    pub failed: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// Numbers for one operation of the mix.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    pub count: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Seeding numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Seed {
    pub accounts: u64,
    pub follows: u64,
    pub articles: u64,
    pub seconds: f64,
}

/// One threshold check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub limit: u64,
    pub actual: u64,
    pub ok: bool,
}

/// Threshold checks that were asked for.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Checks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<Check>,
}

/// What a run measured; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub run_id: String,
    pub targets: Vec<String>,
    pub users: usize,
    pub seed: Seed,
    /// Length of the mixed phase in seconds, as scheduled (up to its deadline).
    pub duration_s: f64,
    /// Seconds after the deadline spent waiting for the requests still under way.
    pub tail_s: f64,
    /// Logical requests per second of the mixed phase, over `duration_s`.
    pub rps: f64,
    /// Logical requests over the whole run (seeding included).
    pub requests: Requests,
    /// Latency of logical requests (retries included) over the whole run.
    pub latency_ms: Latency,
    /// HTTP responses per `X-Served-By` value (every attempt that got an answer).
    pub by_replica: BTreeMap<String, u64>,
    /// Distinct replicas that answered (a missing header is not a replica).
    pub replicas_seen: usize,
    /// Failed logical requests by kind.
    pub errors: BTreeMap<String, u64>,
    /// When each failed logical request was sent and when it gave up (Unix ms, the first
    /// 10 000).
    pub failure_spans_ms: Vec<(u64, u64)>,
    pub writes: Writes,
    pub operations: BTreeMap<String, OpSummary>,
    pub checks: Checks,
    /// False when a check failed or the run was interrupted.
    pub ok: bool,
    pub interrupted: bool,
}

/// Inputs besides the counters.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub targets: Vec<String>,
    pub users: usize,
    pub seed: Seed,
    /// Logical requests made while seeding (subtracted for the mixed-phase rate).
    pub seed_requests: u64,
    /// The mixed phase, from its start until its last request ended.
    pub mix_elapsed: Duration,
    /// The part of it that was scheduled: up to the deadline (or all of it, with a request
    /// budget). What follows is waiting for the requests still under way.
    pub mix_window: Duration,
    pub min_replicas: Option<usize>,
    pub max_errors: Option<u64>,
    pub interrupted: bool,
}

/// Number of distinct replica names, not counting responses without the header.
pub fn replicas_seen(by_replica: &BTreeMap<String, u64>) -> usize {
    by_replica
        .iter()
        .filter(|(name, n)| name.as_str() != UNKNOWN_REPLICA && **n > 0)
        .count()
}

impl Summary {
    /// Build the summary and evaluate the checks.
    pub fn build(c: &Counters, info: RunInfo) -> Summary {
        let seen = replicas_seen(&c.by_replica);
        let mut checks = Checks::default();
        if let Some(min) = info.min_replicas {
            checks.min_replicas = Some(Check {
                limit: min as u64,
                actual: seen as u64,
                ok: seen >= min,
            });
        }
        if let Some(max) = info.max_errors {
            checks.max_errors = Some(Check {
                limit: max,
                actual: c.failed,
                ok: c.failed <= max,
            });
        }
        let checks_ok = checks.min_replicas.as_ref().is_none_or(|ch| ch.ok)
            && checks.max_errors.as_ref().is_none_or(|ch| ch.ok);
        let mix_requests = c.requests.saturating_sub(info.seed_requests);
        Summary {
            run_id: info.run_id,
            targets: info.targets,
            users: info.users,
            seed: info.seed,
            duration_s: round3(info.mix_window.as_secs_f64()),
            tail_s: round3(
                info.mix_elapsed
                    .saturating_sub(info.mix_window)
                    .as_secs_f64(),
            ),
            rps: rate(mix_requests, info.mix_window),
            requests: Requests {
                total: c.requests,
                ok: c.ok,
                failed: c.failed,
                retries: c.retries,
            },
            latency_ms: Latency {
                p50: quantile_ms(&c.hist, 0.50),
                p90: quantile_ms(&c.hist, 0.90),
                p99: quantile_ms(&c.hist, 0.99),
                max: max_ms(&c.hist),
                mean: mean_ms(&c.hist),
            },
            by_replica: c.by_replica.clone(),
            replicas_seen: seen,
            errors: c.errors.clone(),
            failure_spans_ms: c.failure_spans_ms.clone(),
            writes: Writes {
                acknowledged: c.writes_acked_total(),
                replayed: c.writes_replayed,
                failed: c.writes_failed,
                by_kind: c.writes_acked.clone(),
            },
            operations: c
                .ops
                .iter()
                .map(|(name, op)| {
                    (
                        name.clone(),
                        OpSummary {
                            count: op.count,
                            failed: op.failed,
                            p50_ms: quantile_ms(&op.hist, 0.50),
                            p99_ms: quantile_ms(&op.hist, 0.99),
                        },
                    )
                })
                .collect(),
            checks,
            ok: checks_ok && !info.interrupted,
            interrupted: info.interrupted,
        }
    }

    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut out = self.header();
        out.push('\n');
        out.push_str(&self.replica_table());
        out.push('\n');
        out.push_str(&self.operation_table());
        if !self.errors.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .errors
                .iter()
                .map(|(k, n)| vec![k.clone(), n.to_string()])
                .collect();
            out.push_str(&render(&["error", "count"], &rows));
        }
        out.push('\n');
        out.push_str(&self.check_lines());
        out
    }

    /// The run's settings and totals, one line each.
    fn header(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "conduit-load run {}", self.run_id);
        let _ = writeln!(out, "targets   {}", self.targets.join(", "));
        let _ = writeln!(
            out,
            "seed      {} accounts, {} follows, {} articles in {:.1}s",
            self.seed.accounts, self.seed.follows, self.seed.articles, self.seed.seconds
        );
        let _ = writeln!(
            out,
            "mix       {} users for {:.1}s (+{:.1}s finishing), {:.1} req/s",
            self.users, self.duration_s, self.tail_s, self.rps
        );
        let _ = writeln!(
            out,
            "requests  {} total, {} ok, {} failed, {} retries",
            self.requests.total, self.requests.ok, self.requests.failed, self.requests.retries
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency   p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        );
        let w = &self.writes;
        let kinds: Vec<String> = w.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            out,
            "writes    {} acknowledged ({} replayed), {} failed [{}]",
            w.acknowledged,
            w.replayed,
            w.failed,
            kinds.join(", ")
        );
        out
    }

    /// Responses per replica, with each one's share.
    fn replica_table(&self) -> String {
        let total: u64 = self.by_replica.values().sum();
        let rows: Vec<Vec<String>> = self
            .by_replica
            .iter()
            .map(|(name, n)| {
                let share = if total == 0 {
                    0.0
                } else {
                    *n as f64 * 100.0 / total as f64
                };
                vec![name.clone(), n.to_string(), format!("{share:.1}%")]
            })
            .collect();
        render(&["replica", "responses", "share"], &rows)
    }

    /// Count, failures and latency per operation.
    fn operation_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .operations
            .iter()
            .map(|(name, op)| {
                vec![
                    name.clone(),
                    op.count.to_string(),
                    op.failed.to_string(),
                    format!("{:.1}", op.p50_ms),
                    format!("{:.1}", op.p99_ms),
                ]
            })
            .collect();
        render(&["operation", "count", "failed", "p50 ms", "p99 ms"], &rows)
    }

    /// The threshold checks and whether the run was interrupted.
    fn check_lines(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.checks.min_replicas {
            let _ = writeln!(
                out,
                "check     min replicas {}: saw {} -> {}",
                c.limit,
                c.actual,
                pass(c.ok)
            );
        }
        if let Some(c) = &self.checks.max_errors {
            let _ = writeln!(
                out,
                "check     max errors {}: had {} -> {}",
                c.limit,
                c.actual,
                pass(c.ok)
            );
        }
        if self.interrupted {
            out.push_str("run       interrupted\n");
        }
        out
    }
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}

/// Render rows under a header; the first column is left-aligned, the others right-aligned.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let w = widths[i];
            if i == 0 {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "{cell:>w$}");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&mut rule.iter().map(String::as_str)));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Attempt;
    use crate::stats::Stats;

    fn info(min_replicas: Option<usize>, max_errors: Option<u64>) -> RunInfo {
        RunInfo {
            run_id: "abc".into(),
            targets: vec!["http://127.0.0.1:8080".into()],
            users: 2,
            seed: Seed {
                accounts: 2,
                follows: 0,
                articles: 1,
                seconds: 0.5,
            },
            seed_requests: 2,
            mix_elapsed: Duration::from_secs(2),
            mix_window: Duration::from_secs(2),
            min_replicas,
            max_errors,
            interrupted: false,
        }
    }

    fn counters() -> Counters {
        let stats = Stats::default();
        for i in 0..10u64 {
            stats.record_response(Some(if i % 2 == 0 { "a" } else { "b" }));
            let outcome = if i == 9 {
                Attempt::Status(503)
            } else {
                Attempt::Status(200)
            };
            stats.record_request("tags", Duration::from_millis(i + 1), outcome);
        }
        stats.record_response(None);
        stats.record_write_acked("article", false);
        stats.totals()
    }

    #[test]
    fn the_rate_counts_only_the_mixed_phase() {
        let s = Summary::build(&counters(), info(None, None));
        // 10 requests, 2 of them seeding, over 2 s.
        assert_eq!(s.rps, 4.0);
        assert_eq!(s.requests.total, 10);
        assert_eq!(s.requests.failed, 1);
        assert_eq!(s.errors["503"], 1);
    }

    #[test]
    fn the_rate_is_over_the_scheduled_window_not_the_wait_for_stragglers() {
        // 8 mixed-phase requests in a 2 s window; the last one answered 3 s after the deadline.
        let mut i = info(None, None);
        i.mix_elapsed = Duration::from_secs(5);
        let s = Summary::build(&counters(), i);
        assert_eq!(s.rps, 4.0);
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(s.tail_s, 3.0);
    }

    #[test]
    fn responses_without_a_replica_header_are_not_a_replica() {
        let s = Summary::build(&counters(), info(Some(3), None));
        assert_eq!(s.replicas_seen, 2);
        let check = s.checks.min_replicas.clone().unwrap();
        assert!(!check.ok);
        assert!(!s.ok);
    }

    #[test]
    fn checks_pass_within_their_limits() {
        let s = Summary::build(&counters(), info(Some(2), Some(1)));
        assert!(s.checks.min_replicas.as_ref().unwrap().ok);
        assert!(s.checks.max_errors.as_ref().unwrap().ok);
        assert!(s.ok);
    }

    #[test]
    fn too_many_errors_fail_the_run() {
        let s = Summary::build(&counters(), info(None, Some(0)));
        assert!(!s.checks.max_errors.as_ref().unwrap().ok);
        assert!(!s.ok);
    }

    #[test]
    fn an_interrupted_run_is_not_ok() {
        let mut i = info(None, None);
        i.interrupted = true;
        assert!(!Summary::build(&counters(), i).ok);
    }

    #[test]
    fn the_json_has_the_documented_fields() {
        let s = Summary::build(&counters(), info(Some(2), None));
        let v = serde_json::to_value(&s).unwrap();
        for field in [
            "run_id",
            "rps",
            "requests",
            "latency_ms",
            "by_replica",
            "errors",
            "writes",
            "operations",
            "checks",
            "ok",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["writes"]["by_kind"]["article"], 1);
        assert!(v["checks"].get("max_errors").is_none());
    }

    #[test]
    fn the_table_aligns_columns() {
        let t = render(
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long-name".into(), "100".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "name         n");
        assert_eq!(lines[1], "---------  ---");
        assert_eq!(lines[2], "a            1");
        assert_eq!(lines[3], "long-name  100");
    }
}
