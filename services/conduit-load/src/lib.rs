//! Traffic generator for the Stateless Conduit API.
//!
//! A run seeds accounts, follows and articles, then lets N virtual users browse, read,
//! favorite, comment and write for a while. It counts every answer per replica (from the
//! `X-Served-By` header), retries writes with the same `Idempotency-Key`, and ends with a
//! summary (table or JSON) whose checks set the exit code.
//!
//! # Layout
//! - [`config`]: command line and environment.
//! - [`mix`]: which operation comes next.
//! - [`retry`]: which failures are retried, and the backoff.
//! - [`client`]: HTTP with round-robin targets, trace headers and retries.
//! - [`workload`]: seeding and the virtual users.
//! - [`stats`]: shared counters and latency histograms.
//! - [`summary`]: the final table and JSON, and the threshold checks.
//! - [`live`]: the live view, the per-second timeline, the plain progress line.
//! - [`writelog`]: the JSON-lines log of acknowledged writes.
//! - [`telemetry`]: logging and client spans.

pub mod client;
pub mod config;
pub mod live;
pub mod mix;
pub mod retry;
pub mod stats;
pub mod summary;
pub mod telemetry;
pub mod workload;
pub mod writelog;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use crate::client::Client;
use crate::config::Cli;
use crate::live::{progress_line, LiveView, Timeline};
use crate::mix::Mix;
use crate::retry::RetryPolicy;
use crate::stats::{rate, Stats};
use crate::summary::{RunInfo, Seed, Summary};
use crate::telemetry::Tracing;
use crate::workload::{pick_follows, virtual_user, Account, Control, VirtualUser, World};
use crate::writelog::WriteLog;

/// Exit code: every check passed.
pub const EXIT_OK: u8 = 0;
/// Exit code: a check (`--min-replicas`, `--max-errors`) failed, or the run was interrupted.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code: bad settings, or the run could not start (no account could be registered).
pub const EXIT_FATAL: u8 = 2;

const PHASE_SEED: u8 = 0;
const PHASE_MIX: u8 = 1;

fn phase_name(p: u8) -> &'static str {
    if p == PHASE_SEED {
        "seed"
    } else {
        "mix"
    }
}

/// Run the whole thing and return the process exit code.
pub async fn run(cli: Cli) -> u8 {
    if let Err(msg) = cli.validate() {
        eprintln!("error: {msg}");
        return EXIT_FATAL;
    }
    // Ctrl-C: stop after the current operations, then summarise.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                log::warn!("interrupted: finishing the operations in flight");
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    match run_until(cli, stop).await {
        Ok(summary) => {
            if summary.ok {
                EXIT_OK
            } else {
                EXIT_CHECK_FAILED
            }
        }
        Err(e) => {
            log::error!("{e:#}");
            EXIT_FATAL
        }
    }
}

/// Run with valid settings; the summary has already been printed when this returns `Ok`.
pub async fn run_checked(cli: Cli) -> anyhow::Result<Summary> {
    run_until(cli, Arc::default()).await
}

/// Like [`run_checked`], stopping early (and marking the run interrupted) once `stop` is set.
///
/// The run goes: seed (register, follow, publish), the mixed phase, the report; a monitor
/// task keeps the live view, the timeline and the progress lines meanwhile.
pub async fn run_until(cli: Cli, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let tracing = Tracing::init(cli.otlp_endpoint.as_deref(), &cli.otlp_protocol)?;
    let timeline = match &cli.timeline {
        Some(path) => {
            Some(Timeline::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let run = Run::new(cli, stop, &tracing)?;
    log::info!(
        "run {}: {} users against {}",
        run.id,
        run.cli.users,
        run.targets.join(", ")
    );
    let monitor = Monitor::spawn(&run, timeline);

    let seeded = match run.seed().await {
        Ok(seeded) => seeded,
        Err(err) => {
            monitor.finish().await;
            tracing_shutdown(tracing).await;
            return Err(err);
        }
    };

    // Mixed phase.
    monitor.phase.store(PHASE_MIX, Ordering::Relaxed);
    let mix_elapsed = run.mix(seeded.accounts, &seeded.sessions).await;
    // The rate is taken over the scheduled window: a request still under way at the deadline
    // (a retry waiting out a dead replica's lease, say) is counted, but the seconds spent
    // waiting for it are not offered load.
    let mix_window = match run.cli.requests {
        Some(_) => mix_elapsed,
        None => mix_elapsed.min(Duration::from_secs_f64(run.cli.duration)),
    };
    monitor.finish().await;
    run.world.flush_writes();

    // Report.
    let summary = Summary::build(
        &run.stats.totals(),
        RunInfo {
            run_id: run.id.clone(),
            targets: run.targets.clone(),
            users: seeded.virtual_users,
            seed: seeded.seed,
            seed_requests: seeded.requests,
            mix_elapsed,
            mix_window,
            min_replicas: run.cli.min_replicas,
            max_errors: run.cli.max_errors,
            interrupted: run.stopped(),
        },
    );
    if run.cli.json {
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    tracing_shutdown(tracing).await;
    Ok(summary)
}

/// A registered account with its index (virtual users first, then seed-only accounts) and the
/// trace context its requests run in.
type Registered = (usize, Account, Context);

/// What seeding left for the mixed phase and the report.
struct Seeded {
    accounts: Vec<Registered>,
    /// One trace context per virtual user, registered or not.
    sessions: Vec<Context>,
    virtual_users: usize,
    seed: Seed,
    /// Requests sent while seeding.
    requests: u64,
}

/// What every phase of a run shares.
struct Run {
    cli: Cli,
    id: String,
    targets: Vec<String>,
    base_seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    world: Arc<World>,
    /// Bounds the registrations and article writes in flight while seeding.
    limit: Arc<Semaphore>,
}

impl Run {
    fn new(cli: Cli, stop: Arc<AtomicBool>, tracing: &Tracing) -> anyhow::Result<Self> {
        let base_seed = cli.random_seed.unwrap_or_else(|| rand::rng().random());
        let id = format!("{:08x}", rand::rng().random::<u32>());
        let targets = cli.targets();
        let stats = Arc::new(Stats::default());
        let policy = RetryPolicy {
            max_attempts: cli.attempts,
            max_read_attempts: cli.read_attempts.unwrap_or(cli.attempts),
            in_flight_wait: Duration::from_secs_f64(cli.in_flight_wait),
            ..RetryPolicy::default()
        };
        let client = Client::new(
            targets.clone(),
            cli.timeout(),
            policy,
            stats.clone(),
            tracing.tracer.clone(),
        )?;
        let writes = match &cli.log_writes {
            Some(path) => Some(
                WriteLog::create(path).with_context(|| format!("creating {}", path.display()))?,
            ),
            None => None,
        };
        let world = Arc::new(World::new(
            client,
            tracing.tracer.clone(),
            id.clone(),
            cli.tags.clone(),
            writes,
        ));
        let limit = Arc::new(Semaphore::new(cli.users.clamp(1, 64)));
        Ok(Self {
            cli,
            id,
            targets,
            base_seed,
            stop,
            stats,
            world,
            limit,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Registers the accounts, follows and publishes, each virtual user in its own session
    /// trace and the rest in one seed trace.
    ///
    /// # Errors
    /// No virtual user could register (unless the run was stopped).
    async fn seed(&self) -> anyhow::Result<Seeded> {
        let started = Instant::now();
        let run_attr = KeyValue::new("conduit.run_id", self.id.clone());
        let seed_cx = self.world.root("seed", vec![run_attr.clone()]);
        let sessions: Vec<Context> = (0..self.cli.users)
            .map(|i| {
                self.world.root(
                    "session",
                    vec![
                        run_attr.clone(),
                        KeyValue::new("conduit.virtual_user", i as i64),
                    ],
                )
            })
            .collect();
        let accounts = self.register(&sessions, &seed_cx).await?;
        let virtual_users = accounts
            .iter()
            .filter(|(i, _, _)| *i < self.cli.users)
            .count();
        if virtual_users == 0 && !self.stopped() {
            for cx in &sessions {
                cx.span().end();
            }
            seed_cx.span().end();
            anyhow::bail!(
                "no virtual user could register at {} (errors: {}); is the API running?",
                self.targets.join(", "),
                live::errors_text(&self.stats.totals().errors)
            );
        }
        if virtual_users < self.cli.users {
            log::warn!(
                "{} of {} virtual users could not register and are left out",
                self.cli.users - virtual_users,
                self.cli.users
            );
        }
        self.follow(&accounts).await;
        self.publish(&accounts).await;
        seed_cx.span().end();
        let totals = self.stats.totals();
        let seed = Seed {
            accounts: totals.writes_acked.get("user").copied().unwrap_or(0),
            follows: totals.writes_acked.get("follow").copied().unwrap_or(0),
            articles: totals.writes_acked.get("article").copied().unwrap_or(0),
            seconds: stats::round3(started.elapsed().as_secs_f64()),
        };
        log::info!(
            "seeded {} accounts, {} follows, {} articles in {:.1}s",
            seed.accounts,
            seed.follows,
            seed.articles,
            seed.seconds
        );
        Ok(Seeded {
            accounts,
            sessions,
            virtual_users,
            seed,
            requests: totals.requests,
        })
    }

    /// Registers the virtual users (each in its own session trace) and the seed-only
    /// accounts, in index order. An account that could not register is left out.
    async fn register(
        &self,
        sessions: &[Context],
        seed_cx: &Context,
    ) -> anyhow::Result<Vec<Registered>> {
        let mut set = JoinSet::new();
        for i in 0..self.cli.users + self.cli.seed_users {
            let (cx, name) = match sessions.get(i) {
                Some(cx) => (cx.clone(), format!("u{i}")),
                None => (seed_cx.clone(), format!("s{}", i - self.cli.users)),
            };
            let (world, limit, stop) = (self.world.clone(), self.limit.clone(), self.stop.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await.ok()?;
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                world.register(&cx, &name).await.map(|a| (i, a, cx))
            });
        }
        let mut accounts = Vec::new();
        while let Some(res) = set.join_next().await {
            if let Some(account) = res.context("a registration task panicked")? {
                accounts.push(account);
            }
        }
        accounts.sort_by_key(|(i, _, _)| *i);
        Ok(accounts)
    }

    /// Each virtual user follows a few others.
    async fn follow(&self, accounts: &[Registered]) {
        let usernames = self.world.usernames();
        let mut set = JoinSet::new();
        for (i, acc, cx) in accounts.iter().filter(|(i, _, _)| *i < self.cli.users) {
            let mut rng = StdRng::seed_from_u64(self.base_seed ^ (0x1000 + *i as u64));
            let targets = pick_follows(&usernames, &acc.username, self.cli.follows, &mut rng);
            let (world, acc, cx, stop) = (
                self.world.clone(),
                acc.clone(),
                cx.clone(),
                self.stop.clone(),
            );
            set.spawn(async move {
                for u in targets {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    world.follow(&cx, &acc, &u).await;
                }
            });
        }
        set.join_all().await;
    }

    /// The seed articles, spread over every account.
    async fn publish(&self, accounts: &[Registered]) {
        if accounts.is_empty() {
            return;
        }
        let mut set = JoinSet::new();
        for j in 0..self.cli.seed_articles {
            let (_, acc, cx) = accounts[j % accounts.len()].clone();
            let mut rng = StdRng::seed_from_u64(self.base_seed ^ (0x2000_0000 + j as u64));
            let (world, limit, stop) = (self.world.clone(), self.limit.clone(), self.stop.clone());
            set.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                if !stop.load(Ordering::SeqCst) {
                    world
                        .write_article(&cx, &acc, &mut rng, "seed_article")
                        .await;
                }
            });
        }
        set.join_all().await;
    }

    /// The mixed phase: every registered virtual user runs until the deadline, the request
    /// budget or a stop. Sessions of users that could not register end at once.
    async fn mix(&self, accounts: Vec<Registered>, sessions: &[Context]) -> Duration {
        let started = Instant::now();
        let deadline = match self.cli.requests {
            Some(_) => None,
            None => Some(started + Duration::from_secs_f64(self.cli.duration)),
        };
        let control = Arc::new(Control::new(
            self.stop.clone(),
            deadline,
            self.cli.requests,
            self.cli.rate,
        ));
        let mix = Mix::new(self.cli.write_ratio);
        for (i, cx) in sessions.iter().enumerate() {
            if !accounts.iter().any(|(j, _, _)| *j == i) {
                cx.span().end();
            }
        }
        let mut set = JoinSet::new();
        for (i, acc, cx) in accounts.into_iter().filter(|(i, _, _)| *i < self.cli.users) {
            let vu = VirtualUser {
                account: acc,
                cx,
                rng: StdRng::seed_from_u64(self.base_seed ^ (0x3000_0000 + i as u64)),
                favorites: Vec::new(),
            };
            set.spawn(virtual_user(self.world.clone(), control.clone(), mix, vu));
        }
        set.join_all().await;
        started.elapsed()
    }
}

/// The task that keeps the live view, the per-second timeline and the progress lines.
struct Monitor {
    phase: Arc<AtomicU8>,
    done: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Ticks every 500 ms until [`finish`](Self::finish).
    fn spawn(run: &Run, mut timeline: Option<Timeline>) -> Self {
        let phase = Arc::new(AtomicU8::new(PHASE_SEED));
        let tui =
            !run.cli.no_tui && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let (done, mut done_rx) = oneshot::channel::<()>();
        let (stats, world, shown) = (run.stats.clone(), run.world.clone(), phase.clone());
        let task = tokio::spawn(async move {
            let mut view = tui.then(LiveView::new);
            if let Some(v) = &view {
                telemetry::attach_progress(v.progress());
            }
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; start counting half-seconds after it.
            tick.tick().await;
            let mut n: u64 = 0;
            let mut last_requests = 0;
            let mut last_at = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut done_rx => break,
                }
                n += 1;
                let p = phase_name(shown.load(Ordering::Relaxed));
                if let Some(v) = view.as_mut() {
                    v.update(p, &stats.totals());
                }
                if n % 2 == 0 {
                    let window = stats.take_window();
                    if let Some(t) = timeline.as_mut() {
                        t.tick(p, &window);
                    }
                    world.flush_writes();
                }
                if view.is_none() && n % 10 == 0 {
                    let totals = stats.totals();
                    let r = rate(totals.requests - last_requests, last_at.elapsed());
                    last_requests = totals.requests;
                    last_at = Instant::now();
                    log::info!("{}", progress_line(p, &totals, r));
                }
            }
            let p = phase_name(shown.load(Ordering::Relaxed));
            if let Some(v) = view.as_mut() {
                v.update(p, &stats.totals());
                v.finish();
            }
            if let Some(t) = timeline.as_mut() {
                t.tick(p, &stats.take_window());
            }
        });
        Self { phase, done, task }
    }

    /// Stops the ticks after a last update.
    async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.task.await;
    }
}

async fn tracing_shutdown(tracing: Tracing) {
    // The exporter blocks while it flushes; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
}
