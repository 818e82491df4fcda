//! Command line and environment configuration.
//!
//! Every setting is a flag with an environment variable and a documented default, so
//! `conduit-api --help` is the reference table. Nothing is read from files baked into images;
//! the one file that may be read is the key ring (`CONDUIT_JWT_KEYS_FILE`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Largest accepted request body, in bytes: the JSON and payload limits, the idempotency
/// middleware's buffer and the 413 message all use this one number.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `conduit-api` command line.
#[derive(Debug, Parser)]
#[command(
    name = "conduit-api",
    version,
    about = "A stateless RealWorld Conduit API replica backed by Redis"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: Config,
}

/// Subcommands. Without one, the replica serves.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an API replica (the default).
    Serve,
    /// Print a fresh key ring line `kid:secret`, or write it to a file.
    Keygen(KeygenArgs),
    /// Probe a replica's /healthz and exit 0 when it answers 200 (for container health checks).
    Healthcheck(HealthcheckArgs),
}

/// Arguments of `conduit-api keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key id written before the secret; defaults to `k` followed by the current UTC time.
    #[arg(long)]
    pub kid: Option<String>,
    /// Write the ring to this file instead of standard output. An existing file is kept.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite the file given with --out.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `conduit-api healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// URL to probe; defaults to /healthz on the port of CONDUIT_ADDR.
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 2)]
    pub timeout: u64,
}

/// Settings of a serving replica.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(
        long,
        env = "CONDUIT_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub addr: SocketAddr,

    /// Redis holding the business data. Its value is not shown here: it may hold a password.
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        global = true
    )]
    pub redis_url: String,

    /// Redis Cluster seed nodes as comma-separated `redis://host:port` URLs. When set, the replica
    /// runs in cluster mode and `REDIS_URL` is not used.
    #[arg(
        long,
        env = "REDIS_CLUSTER_URLS",
        hide_env_values = true,
        global = true
    )]
    pub redis_cluster_urls: Option<String>,

    /// Replicas a write waits for (`WAIT`) before it is acknowledged; defaults to 1 in cluster
    /// mode and 0 for a single Redis. A primary with no replica online keeps taking writes.
    #[arg(long, env = "CONDUIT_REDIS_MIN_REPLICAS", global = true)]
    pub redis_min_replicas: Option<u32>,

    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    #[arg(
        long,
        env = "CONDUIT_REDIS_PREFIX",
        default_value = "conduit",
        global = true
    )]
    pub redis_prefix: String,

    /// Milliseconds a Redis command may take before the request fails with 503.
    #[arg(
        long,
        env = "CONDUIT_REDIS_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub redis_timeout_ms: u64,

    /// Signing keys as comma-separated `kid:secret` pairs; the first one signs new tokens.
    #[arg(long, env = "CONDUIT_JWT_KEYS", hide_env_values = true, global = true)]
    pub jwt_keys: Option<String>,

    /// File holding the key ring, one `kid:secret` pair per line (`#` starts a comment).
    #[arg(long, env = "CONDUIT_JWT_KEYS_FILE", global = true)]
    pub jwt_keys_file: Option<PathBuf>,

    /// Lifetime of issued tokens, in seconds.
    #[arg(
        long,
        env = "CONDUIT_TOKEN_TTL",
        default_value_t = 86_400,
        global = true
    )]
    pub token_ttl: u64,

    /// `iss` claim written into and required from every token.
    #[arg(
        long,
        env = "CONDUIT_JWT_ISSUER",
        default_value = "conduit",
        global = true
    )]
    pub jwt_issuer: String,

    /// `aud` claim written into and required from every token.
    #[arg(
        long,
        env = "CONDUIT_JWT_AUDIENCE",
        default_value = "conduit",
        global = true
    )]
    pub jwt_audience: String,

    /// Name of this replica in `X-Served-By`, logs and traces; defaults to the hostname.
    #[arg(long, env = "CONDUIT_REPLICA_ID", global = true)]
    pub replica_id: Option<String>,

    /// Seconds to keep serving after SIGTERM while /readyz reports draining.
    #[arg(
        long,
        env = "CONDUIT_DRAIN_SECONDS",
        default_value_t = 5,
        global = true
    )]
    pub drain_seconds: u64,

    /// HTTP worker threads; defaults to the number of CPUs.
    #[arg(long, env = "CONDUIT_WORKERS", global = true)]
    pub workers: Option<usize>,

    /// Seconds an idempotency record (the stored outcome of a request) is kept.
    #[arg(
        long,
        env = "CONDUIT_IDEMPOTENCY_TTL",
        default_value_t = 86_400,
        global = true
    )]
    pub idempotency_ttl: u64,

    /// Seconds a request holds its idempotency key before a retry may take it over.
    #[arg(
        long,
        env = "CONDUIT_IDEMPOTENCY_LEASE",
        default_value_t = 10,
        global = true
    )]
    pub idempotency_lease: u64,

    /// Idempotency records one user may create per record lifetime (`CONDUIT_IDEMPOTENCY_TTL`),
    /// so a user holds at most about twice this many; beyond it a write with a new
    /// `Idempotency-Key` is answered 429 with Retry-After. 0 turns the cap off.
    #[arg(
        long,
        env = "CONDUIT_IDEMPOTENCY_RECORDS_PER_USER",
        default_value_t = 100_000,
        global = true
    )]
    pub idempotency_records_per_user: u64,

    /// Idempotency records of anonymous requests (registration, the one anonymous write) one
    /// client address (IPv6: its /64) may create per record lifetime. 0 turns the cap off.
    #[arg(
        long,
        env = "CONDUIT_IDEMPOTENCY_RECORDS_PER_ADDRESS",
        default_value_t = 1000,
        global = true
    )]
    pub idempotency_records_per_address: u64,

    /// Registrations accepted from one client address (IPv6: its /64) per hour; beyond it,
    /// 429 with Retry-After. 0 turns the limit off.
    #[arg(
        long,
        env = "CONDUIT_REGISTRATIONS_PER_ADDRESS",
        default_value_t = 100,
        global = true
    )]
    pub registrations_per_address: u64,

    /// Failed logins allowed for one account from one client address (an IPv6 client counts
    /// by its /64) in one window.
    #[arg(
        long,
        env = "CONDUIT_LOGIN_MAX_FAILURES",
        default_value_t = 10,
        global = true
    )]
    pub login_max_failures: u64,

    /// Failed logins allowed from one client address over every account in one window.
    #[arg(
        long,
        env = "CONDUIT_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100,
        global = true
    )]
    pub login_max_failures_per_address: u64,

    /// Failed logins allowed for one account from every address in one window: a ceiling
    /// against guessing from many addresses, far above what locks an account out by hand.
    #[arg(
        long,
        env = "CONDUIT_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 1000,
        global = true
    )]
    pub login_max_failures_per_account: u64,

    /// Length of the failed-login window, in seconds.
    #[arg(
        long,
        env = "CONDUIT_LOGIN_WINDOW",
        default_value_t = 300,
        global = true
    )]
    pub login_window: u64,

    /// Password hashes that run at once; default half the CPUs (at least one), so a flood of
    /// logins or registrations leaves the other half to every other request.
    #[arg(long, env = "CONDUIT_PASSWORD_HASHERS", global = true)]
    pub password_hashers: Option<usize>,

    /// Password hashes that may wait for a hasher; beyond that, registration, login and
    /// password changes are answered 503 with Retry-After at once.
    #[arg(
        long,
        env = "CONDUIT_PASSWORD_QUEUE",
        default_value_t = 32,
        global = true
    )]
    pub password_queue: usize,

    /// Origins whose pages may call the API from a browser: `*` (any), comma-separated
    /// `scheme://host[:port]` origins, or `none` (or empty) for no CORS headers at all.
    #[arg(long, env = "CONDUIT_CORS_ORIGINS", default_value = "*", global = true)]
    pub cors_origins: String,

    /// Followers whose feeds a new or deleted article reaches within the request; the feeds of
    /// any further followers are filled by the fan-out workers of every replica, in batches.
    #[arg(
        long,
        env = "CONDUIT_FANOUT_INLINE",
        default_value_t = 100,
        global = true
    )]
    pub fanout_inline: u64,

    /// Take the client address from the last `X-Forwarded-For` entry (set behind a proxy).
    #[arg(
        long,
        env = "CONDUIT_TRUST_FORWARDED",
        default_value_t = false,
        global = true
    )]
    pub trust_forwarded: bool,

    /// What an incoming `traceparent` may decide: `continue` joins the caller's trace and
    /// follows its sampling flag; `link` starts a new trace, sampled by this replica's own
    /// sampler, with the caller's span as a link (for callers outside your control).
    #[arg(
        long,
        env = "CONDUIT_TRACE_TRUST",
        value_enum,
        default_value_t = TraceTrust::Continue,
        global = true
    )]
    pub trace_trust: TraceTrust,
}

/// How much an incoming `traceparent` is trusted; see [`Config::trace_trust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceTrust {
    /// Continue the caller's trace, with its sampling decision.
    Continue,
    /// Start a new trace that links to the caller's span.
    Link,
}

impl Config {
    /// Parses a configuration from command-line arguments (the first is the program name),
    /// with environment variables and defaults for what they leave out, as the binary does.
    ///
    /// # Errors
    /// An argument or variable is invalid.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser as _;
        Cli::try_parse_from(args).map(|cli| cli.serve)
    }

    /// Password hashes that run at once: the configured number, else half the CPUs, at least 1.
    pub fn password_hashers(&self) -> usize {
        self.password_hashers.filter(|n| *n > 0).unwrap_or_else(|| {
            (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1)
        })
    }

    /// Replicas a write waits for: the configured number, else 1 in cluster mode, 0 otherwise.
    pub fn min_replicas(&self) -> u32 {
        self.redis_min_replicas
            .unwrap_or(match self.redis_target() {
                crate::store::RedisTarget::Cluster(_) => 1,
                crate::store::RedisTarget::Single(_) => 0,
            })
    }

    /// The Redis to use: the cluster when `REDIS_CLUSTER_URLS` names nodes, else `REDIS_URL`.
    pub fn redis_target(&self) -> crate::store::RedisTarget {
        crate::store::RedisTarget::from_config(&self.redis_url, self.redis_cluster_urls.as_deref())
    }

    /// The failed-login limits, per counter.
    pub fn login_limits(&self) -> crate::store::LoginLimits {
        crate::store::LoginLimits {
            per_pair: self.login_max_failures,
            per_address: self.login_max_failures_per_address,
            per_account: self.login_max_failures_per_account,
            window_secs: self.login_window,
        }
    }

    /// The replica id: the configured one, else the hostname.
    pub fn replica_id(&self) -> String {
        match &self.replica_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => gethostname::gethostname().to_string_lossy().into_owned(),
        }
    }
}
