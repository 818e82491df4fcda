//! Command line and environment settings (`conduit-load --help` is the reference).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Every setting of a run. Each flag can also come from the environment variable it names.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "conduit-load",
    version,
    about = "Traffic generator for the Stateless Conduit API",
    long_about = "Seeds accounts, follows and articles, then runs a mixed read/write workload \
                  with N virtual users. Shows requests per replica (from X-Served-By) live, \
                  prints a summary table (or JSON with --json), and exits non-zero when a \
                  --min-replicas or --max-errors check fails.\n\n\
                  Exit codes: 0 success; 1 a check failed or the run was interrupted; \
                  2 bad settings, or no virtual user could register (is the API up?)."
)]
pub struct Cli {
    /// Base URL of the API; a comma-separated list is used round-robin (one URL per replica,
    /// no load balancer needed).
    #[arg(
        long,
        env = "CONDUIT_LOAD_TARGET",
        default_value = "http://127.0.0.1:8080",
        value_delimiter = ','
    )]
    pub target: Vec<String>,

    /// Number of concurrent virtual users; each one registers its own account.
    #[arg(long, env = "CONDUIT_LOAD_USERS", default_value_t = 10)]
    pub users: usize,

    /// Total operations per second across all users (0 = as fast as the users can go; each
    /// user waits for one answer before its next operation).
    #[arg(long, env = "CONDUIT_LOAD_RATE", default_value_t = 0.0)]
    pub rate: f64,

    /// Length of the mixed phase in seconds (ignored when --requests is given; 0 = seed only).
    #[arg(long, env = "CONDUIT_LOAD_DURATION", default_value_t = 30.0)]
    pub duration: f64,

    /// Stop the mixed phase after this many logical requests instead of after --duration.
    #[arg(long, env = "CONDUIT_LOAD_REQUESTS")]
    pub requests: Option<u64>,

    /// Extra accounts registered during seeding (authors only; they send no traffic).
    #[arg(long, env = "CONDUIT_LOAD_SEED_USERS", default_value_t = 5)]
    pub seed_users: usize,

    /// Articles written during seeding, spread over all accounts.
    #[arg(long, env = "CONDUIT_LOAD_SEED_ARTICLES", default_value_t = 20)]
    pub seed_articles: usize,

    /// Tags to put on articles (each article gets 1 to 3 of them).
    #[arg(
        long,
        env = "CONDUIT_LOAD_TAGS",
        value_delimiter = ',',
        default_value = "rust,redis,actix,tracing,kubernetes,stateless,chaos,benchmark"
    )]
    pub tags: Vec<String>,

    /// How many other accounts each virtual user follows during seeding.
    #[arg(long, env = "CONDUIT_LOAD_FOLLOWS", default_value_t = 3)]
    pub follows: usize,

    /// Fraction (0..=1) of mixed-phase operations that are writes.
    #[arg(long, env = "CONDUIT_LOAD_WRITE_RATIO", default_value_t = 0.2)]
    pub write_ratio: f64,

    /// Print the final summary as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Exit 1 if fewer than N distinct X-Served-By values answered requests.
    #[arg(long, env = "CONDUIT_LOAD_MIN_REPLICAS")]
    pub min_replicas: Option<usize>,

    /// Exit 1 if more than N logical requests failed after retries.
    #[arg(long, env = "CONDUIT_LOAD_MAX_ERRORS")]
    pub max_errors: Option<u64>,

    /// Write one JSON line per second (per-replica counts, errors by kind, rps) to FILE.
    #[arg(long, env = "CONDUIT_LOAD_TIMELINE")]
    pub timeline: Option<PathBuf>,

    /// Write one JSON line per acknowledged write (kind, ids, idempotency key) to FILE.
    #[arg(long, env = "CONDUIT_LOAD_LOG_WRITES")]
    pub log_writes: Option<PathBuf>,

    /// Disable the live view (it is also off when stdout or stderr is not a terminal).
    #[arg(long)]
    pub no_tui: bool,

    /// Per-attempt HTTP timeout in milliseconds.
    #[arg(long, env = "CONDUIT_LOAD_TIMEOUT_MS", default_value_t = 5000)]
    pub timeout_ms: u64,

    /// Attempts per logical request (1 = no retry).
    #[arg(long, env = "CONDUIT_LOAD_ATTEMPTS", default_value_t = 5)]
    pub attempts: u32,

    /// Attempts per read (default: --attempts). 1 counts every failed read attempt as a failed
    /// request, to check that a proxy in front hides replicas going away by itself.
    #[arg(long, env = "CONDUIT_LOAD_READ_ATTEMPTS")]
    pub read_attempts: Option<u32>,

    /// Seconds a write answered 409 (its idempotency key still in flight elsewhere) keeps
    /// being retried; longer than the API's idempotency lease, so a write caught by a replica
    /// that died mid-request still gets its answer.
    #[arg(long, env = "CONDUIT_LOAD_IN_FLIGHT_WAIT", default_value_t = 12.0)]
    pub in_flight_wait: f64,

    /// OTLP endpoint for client spans, e.g. http://127.0.0.1:4317 (grpc) or
    /// http://127.0.0.1:4318 (http/protobuf; `/v1/traces` is appended when missing).
    /// Without it spans are not exported, but `traceparent` is still sent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP protocol: grpc or http/protobuf.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "grpc")]
    pub otlp_protocol: String,

    /// Seed for the random choices (default: random). The same seed gives the same choices.
    #[arg(long, env = "CONDUIT_LOAD_SEED")]
    pub random_seed: Option<u64>,
}

impl Cli {
    /// Check the values clap cannot check alone.
    ///
    /// # Returns
    /// A message naming the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.target.is_empty() || self.target.iter().any(|t| t.trim().is_empty()) {
            return Err("--target needs at least one URL".into());
        }
        for t in &self.target {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(format!("--target {t}: must start with http:// or https://"));
            }
        }
        if self.users == 0 {
            return Err("--users must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.write_ratio) {
            return Err("--write-ratio must be between 0 and 1".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be 0 or a positive number".into());
        }
        if !(self.duration >= 0.0 && self.duration.is_finite()) {
            return Err("--duration must be 0 or a positive number".into());
        }
        if !(self.in_flight_wait >= 0.0 && self.in_flight_wait.is_finite()) {
            return Err("--in-flight-wait must be 0 or a positive number".into());
        }
        if self.attempts == 0 {
            return Err("--attempts must be at least 1".into());
        }
        if self.read_attempts == Some(0) {
            return Err("--read-attempts must be at least 1".into());
        }
        if self.tags.iter().all(|t| t.trim().is_empty()) {
            return Err("--tags needs at least one tag".into());
        }
        match self.otlp_protocol.as_str() {
            "grpc" | "http/protobuf" => {}
            other => {
                return Err(format!(
                    "--otlp-protocol {other}: use grpc or http/protobuf"
                ))
            }
        }
        Ok(())
    }

    /// Target base URLs without a trailing slash.
    pub fn targets(&self) -> Vec<String> {
        self.target
            .iter()
            .map(|t| t.trim().trim_end_matches('/').to_string())
            .collect()
    }

    /// Per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["conduit-load"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("arguments parse")
    }

    #[test]
    fn a_comma_separated_target_becomes_several_targets() {
        let cli = parse(&["--target", "http://127.0.0.1:8081/,http://127.0.0.1:8082"]);
        assert_eq!(
            cli.targets(),
            vec!["http://127.0.0.1:8081", "http://127.0.0.1:8082"]
        );
        assert!(cli.validate().is_ok());
    }

    #[test]
    fn a_write_ratio_above_one_is_rejected() {
        let cli = parse(&["--write-ratio", "1.5"]);
        assert!(cli.validate().unwrap_err().contains("write-ratio"));
    }

    #[test]
    fn a_target_without_scheme_is_rejected() {
        let cli = parse(&["--target", "127.0.0.1:8080"]);
        assert!(cli.validate().is_err());
    }

    #[test]
    fn an_unknown_otlp_protocol_is_rejected() {
        let cli = parse(&["--otlp-protocol", "http/json"]);
        assert!(cli.validate().unwrap_err().contains("otlp-protocol"));
    }
}
