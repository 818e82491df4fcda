//! What a run shows while it runs: the per-second timeline file, the live terminal view
//! (one bar per replica), and a plain progress line when there is no terminal.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::stats::{quantile_ms, rate, round3, Counters, UNKNOWN_REPLICA};
use crate::writelog::now_ms;

/// One line of `--timeline FILE`: what happened during one second.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineLine {
    /// Seconds since the run started (1 for the first second).
    pub t: u64,
    /// Milliseconds since the Unix epoch at the end of the interval.
    pub unix_ms: u64,
    /// `seed` or `mix`.
    pub phase: &'static str,
    /// Logical requests finished in the interval.
    pub requests: u64,
    /// Logical requests per second in the interval.
    pub rps: f64,
    /// HTTP responses per `X-Served-By` value in the interval.
    pub by_replica: BTreeMap<String, u64>,
    /// Logical requests that failed (after retries) in the interval, by kind.
    pub errors: BTreeMap<String, u64>,
    pub failed: u64,
    pub retries: u64,
    pub writes_acked: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl TimelineLine {
    /// Build a line from one interval's counters.
    pub fn from_window(
        t: u64,
        phase: &'static str,
        window: &Counters,
        elapsed: Duration,
    ) -> TimelineLine {
        TimelineLine {
            t,
            unix_ms: now_ms(),
            phase,
            requests: window.requests,
            rps: rate(window.requests, elapsed),
            by_replica: window.by_replica.clone(),
            errors: window.errors.clone(),
            failed: window.failed,
            retries: window.retries,
            writes_acked: window.writes_acked_total(),
            p50_ms: quantile_ms(&window.hist, 0.5),
            p99_ms: quantile_ms(&window.hist, 0.99),
        }
    }
}

/// The timeline file.
pub struct Timeline {
    out: BufWriter<File>,
    t: u64,
    last: Instant,
}

impl Timeline {
    /// Create (truncate) the file.
    pub fn create(path: &Path) -> std::io::Result<Timeline> {
        Ok(Timeline {
            out: BufWriter::new(File::create(path)?),
            t: 0,
            last: Instant::now(),
        })
    }

    /// Write the line for the interval that ends now, and flush it.
    pub fn tick(&mut self, phase: &'static str, window: &Counters) {
        self.t += 1;
        let now = Instant::now();
        let line = TimelineLine::from_window(self.t, phase, window, now - self.last);
        self.last = now;
        let res = serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
            .and_then(|_| self.out.flush());
        if let Err(e) = res {
            log::warn!("writing the timeline failed: {e}");
        }
    }
}

/// Short text for errors by kind, e.g. `503=2 connect=1`, or `none`.
pub fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Live terminal view: a status line and one bar per replica. A bar's length is the count of
/// the busiest replica, so equal bars mean an even spread.
pub struct LiveView {
    mp: MultiProgress,
    status: ProgressBar,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
    last_requests: u64,
    last_at: Instant,
    started: Instant,
}

impl LiveView {
    /// Draw on stderr.
    pub fn new() -> LiveView {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let status = mp.add(ProgressBar::new_spinner());
        status.set_style(
            ProgressStyle::with_template("{spinner} {msg}").expect("valid status template"),
        );
        let style =
            ProgressStyle::with_template("  {prefix:>16} {bar:40.cyan/blue} {pos:>8} {msg}")
                .expect("valid bar template")
                .progress_chars("##-");
        LiveView {
            mp,
            status,
            bars: HashMap::new(),
            style,
            last_requests: 0,
            last_at: Instant::now(),
            started: Instant::now(),
        }
    }

    /// The progress handle (for the logger).
    pub fn progress(&self) -> MultiProgress {
        self.mp.clone()
    }

    /// Redraw from the totals so far.
    pub fn update(&mut self, phase: &str, totals: &Counters) {
        let now = Instant::now();
        let rps = rate(
            totals.requests.saturating_sub(self.last_requests),
            now - self.last_at,
        );
        self.last_requests = totals.requests;
        self.last_at = now;
        self.status.set_message(format!(
            "{phase} {:.0}s | {rps:.1} req/s | p50 {:.1} ms | p99 {:.1} ms\n  {} requests, {} failed, {} retries, {} writes acknowledged\n  errors: {}",
            self.started.elapsed().as_secs_f64(),
            quantile_ms(&totals.hist, 0.5),
            quantile_ms(&totals.hist, 0.99),
            totals.requests,
            totals.failed,
            totals.retries,
            totals.writes_acked_total(),
            errors_text(&totals.errors),
        ));
        self.status.tick();

        let max = totals
            .by_replica
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(1);
        let sum: u64 = totals.by_replica.values().sum();
        for (name, n) in &totals.by_replica {
            let bar = self.bars.entry(name.clone()).or_insert_with(|| {
                let bar = self.mp.add(ProgressBar::new(max));
                bar.set_style(self.style.clone());
                bar.set_prefix(name.clone());
                bar
            });
            bar.set_length(max);
            bar.set_position(*n);
            let share = if sum == 0 {
                0.0
            } else {
                *n as f64 * 100.0 / sum as f64
            };
            let label = if name == UNKNOWN_REPLICA {
                " (no X-Served-By)"
            } else {
                ""
            };
            bar.set_message(format!("{:>5.1}%{label}", round3(share)));
        }
    }

    /// Leave the last frame on screen (as it is: `finish` would fill every bar).
    pub fn finish(&self) {
        self.status.abandon();
        for bar in self.bars.values() {
            bar.abandon();
        }
    }
}

impl Default for LiveView {
    fn default() -> Self {
        LiveView::new()
    }
}

/// One-line progress for logs when there is no live view.
pub fn progress_line(phase: &str, totals: &Counters, rps: f64) -> String {
    let replicas: Vec<String> = totals
        .by_replica
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    format!(
        "{phase}: {} requests ({rps:.1} req/s), {} failed, {} retries, p50 {:.1} ms, p99 {:.1} ms, replicas [{}], errors: {}",
        totals.requests,
        totals.failed,
        totals.retries,
        quantile_ms(&totals.hist, 0.5),
        quantile_ms(&totals.hist, 0.99),
        replicas.join(" "),
        errors_text(&totals.errors)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Attempt;
    use crate::stats::Stats;

    #[test]
    fn a_timeline_line_reports_one_interval() {
        let stats = Stats::default();
        stats.record_response(Some("a"));
        stats.record_response(Some("b"));
        stats.record_request("tags", Duration::from_millis(2), Attempt::Status(200));
        stats.record_request("tags", Duration::from_millis(2), Attempt::Timeout);
        let w = stats.take_window();
        let line = TimelineLine::from_window(3, "mix", &w, Duration::from_millis(500));
        assert_eq!(line.t, 3);
        assert_eq!(line.requests, 2);
        assert_eq!(line.rps, 4.0);
        assert_eq!(line.by_replica["b"], 1);
        assert_eq!(line.errors["timeout"], 1);
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["phase"], "mix");
    }

    #[test]
    fn errors_are_summarised_by_kind() {
        let mut e = BTreeMap::new();
        assert_eq!(errors_text(&e), "none");
        e.insert("503".to_string(), 2);
        e.insert("connect".to_string(), 1);
        assert_eq!(errors_text(&e), "503=2 connect=1");
    }
}
