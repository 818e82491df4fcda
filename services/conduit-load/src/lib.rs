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
pub async fn run_until(cli: Cli, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let tracing = Tracing::init(cli.otlp_endpoint.as_deref(), &cli.otlp_protocol)?;
    let base_seed = cli.random_seed.unwrap_or_else(|| rand::rng().random());
    let run_id = format!("{:08x}", rand::rng().random::<u32>());
    let targets = cli.targets();
    let stats = Arc::new(Stats::default());
    let policy = RetryPolicy {
        max_attempts: cli.attempts,
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
        Some(path) => {
            Some(WriteLog::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let mut timeline = match &cli.timeline {
        Some(path) => {
            Some(Timeline::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let world = Arc::new(World::new(
        client,
        tracing.tracer.clone(),
        run_id.clone(),
        cli.tags.clone(),
        writes,
    ));
    log::info!(
        "run {run_id}: {} users against {}",
        cli.users,
        targets.join(", ")
    );

    // Live view, timeline and progress, ticking every 500 ms until told to stop.
    let phase = Arc::new(AtomicU8::new(PHASE_SEED));
    let tui = !cli.no_tui && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let monitor = {
        let stats = stats.clone();
        let phase = phase.clone();
        let world = world.clone();
        tokio::spawn(async move {
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
                let p = phase_name(phase.load(Ordering::Relaxed));
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
            let p = phase_name(phase.load(Ordering::Relaxed));
            if let Some(v) = view.as_mut() {
                v.update(p, &stats.totals());
                v.finish();
            }
            if let Some(t) = timeline.as_mut() {
                t.tick(p, &stats.take_window());
            }
        })
    };

    // Seed.
    let seed_started = Instant::now();
    let run_attr = KeyValue::new("conduit.run_id", run_id.clone());
    let seed_cx = world.root("seed", vec![run_attr.clone()]);
    let sessions: Vec<Context> = (0..cli.users)
        .map(|i| {
            world.root(
                "session",
                vec![
                    run_attr.clone(),
                    KeyValue::new("conduit.virtual_user", i as i64),
                ],
            )
        })
        .collect();
    let limit = Arc::new(Semaphore::new(cli.users.clamp(1, 64)));

    let mut set = JoinSet::new();
    for i in 0..cli.users + cli.seed_users {
        let (cx, name) = if let Some(cx) = sessions.get(i) {
            (cx.clone(), format!("u{i}"))
        } else {
            (seed_cx.clone(), format!("s{}", i - cli.users))
        };
        let world = world.clone();
        let limit = limit.clone();
        let stop = stop.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            world.register(&cx, &name).await.map(|a| (i, a, cx))
        });
    }
    let mut accounts: Vec<(usize, Account, Context)> = Vec::new();
    while let Some(res) = set.join_next().await {
        if let Some(acc) = res.context("a registration task panicked")? {
            accounts.push(acc);
        }
    }
    accounts.sort_by_key(|(i, _, _)| *i);
    let vu_count = accounts.iter().filter(|(i, _, _)| *i < cli.users).count();
    if vu_count == 0 && !stop.load(Ordering::SeqCst) {
        for cx in &sessions {
            cx.span().end();
        }
        seed_cx.span().end();
        let _ = done_tx.send(());
        let _ = monitor.await;
        let t = stats.totals();
        tracing_shutdown(tracing).await;
        anyhow::bail!(
            "no virtual user could register at {} (errors: {}); is the API running?",
            targets.join(", "),
            live::errors_text(&t.errors)
        );
    }
    if vu_count < cli.users {
        log::warn!(
            "{} of {} virtual users could not register and are left out",
            cli.users - vu_count,
            cli.users
        );
    }

    // Follows: each virtual user follows a few others.
    let usernames = world.usernames();
    let mut set = JoinSet::new();
    for (i, acc, cx) in accounts.iter().filter(|(i, _, _)| *i < cli.users) {
        let mut rng = StdRng::seed_from_u64(base_seed ^ (0x1000 + *i as u64));
        let targets = pick_follows(&usernames, &acc.username, cli.follows, &mut rng);
        let (world, acc, cx, stop) = (world.clone(), acc.clone(), cx.clone(), stop.clone());
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

    // Articles, spread over every account.
    let mut set = JoinSet::new();
    let article_count = if accounts.is_empty() {
        0
    } else {
        cli.seed_articles
    };
    for j in 0..article_count {
        let (_, acc, cx) = accounts[j % accounts.len()].clone();
        let mut rng = StdRng::seed_from_u64(base_seed ^ (0x2000_0000 + j as u64));
        let (world, limit, stop) = (world.clone(), limit.clone(), stop.clone());
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
    seed_cx.span().end();

    let after_seed = stats.totals();
    let seed = Seed {
        accounts: after_seed.writes_acked.get("user").copied().unwrap_or(0),
        follows: after_seed.writes_acked.get("follow").copied().unwrap_or(0),
        articles: after_seed.writes_acked.get("article").copied().unwrap_or(0),
        seconds: stats::round3(seed_started.elapsed().as_secs_f64()),
    };
    log::info!(
        "seeded {} accounts, {} follows, {} articles in {:.1}s",
        seed.accounts,
        seed.follows,
        seed.articles,
        seed.seconds
    );

    // Mixed phase.
    phase.store(PHASE_MIX, Ordering::Relaxed);
    let mix_started = Instant::now();
    let deadline = match cli.requests {
        Some(_) => None,
        None => Some(mix_started + Duration::from_secs_f64(cli.duration)),
    };
    let control = Arc::new(Control::new(stop.clone(), deadline, cli.requests, cli.rate));
    let mix = Mix::new(cli.write_ratio);
    let registered: Vec<usize> = accounts.iter().map(|(i, _, _)| *i).collect();
    for (i, cx) in sessions.iter().enumerate() {
        if !registered.contains(&i) {
            cx.span().end();
        }
    }
    let mut set = JoinSet::new();
    for (i, acc, cx) in accounts.into_iter().filter(|(i, _, _)| *i < cli.users) {
        let vu = VirtualUser {
            account: acc,
            cx,
            rng: StdRng::seed_from_u64(base_seed ^ (0x3000_0000 + i as u64)),
            favorites: Vec::new(),
        };
        set.spawn(virtual_user(world.clone(), control.clone(), mix, vu));
    }
    set.join_all().await;
    let mix_elapsed = mix_started.elapsed();

    let _ = done_tx.send(());
    let _ = monitor.await;
    world.flush_writes();

    let totals = stats.totals();
    let summary = Summary::build(
        &totals,
        RunInfo {
            run_id,
            targets,
            users: vu_count,
            seed,
            seed_requests: after_seed.requests,
            mix_elapsed,
            min_replicas: cli.min_replicas,
            max_errors: cli.max_errors,
            interrupted: stop.load(Ordering::SeqCst),
        },
    );
    if cli.json {
        eprint!("{}", summary.table());
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.table());
    }
    tracing_shutdown(tracing).await;
    Ok(summary)
}

async fn tracing_shutdown(tracing: Tracing) {
    // The exporter blocks while it flushes; keep that off the async workers.
    let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
}
