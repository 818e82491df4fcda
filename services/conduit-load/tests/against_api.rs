//! conduit-load against the real thing: a real Redis (scripts/test.sh's) and two real API replicas
//! (built in-process from the `conduit_api` library), driven round-robin without a proxy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use conduit_api::config::Config;
use conduit_api::Application;
use conduit_load::client::{Call, Client};
use conduit_load::config::Cli;
use conduit_load::retry::RetryPolicy;
use conduit_load::stats::Stats;
use conduit_load::telemetry::Tracing;
use opentelemetry::trace::{TraceContextExt, Tracer};
use opentelemetry::Context;
use serde_json::Value;

const KEYS: &str = "loadtest1:0123456789abcdef0123456789abcdef0123";

/// The Redis for the tests: `CONDUIT_TEST_REDIS_URL`, set by scripts/test.sh, as for the API
/// tests. There is no default: a test never talks to a Redis it was not given. Each test keeps
/// its keys under a prefix of its own.
fn redis_url() -> String {
    std::env::var("CONDUIT_TEST_REDIS_URL")
        .expect("CONDUIT_TEST_REDIS_URL is not set: run the tests with scripts/test.sh")
}

/// Replicas log nowhere, but their trace layer is on, so `X-Trace-Id` shows the trace they used.
fn init_api_telemetry() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = conduit_api::telemetry::init(
            "load-test",
            "error",
            conduit_api::telemetry::LogTarget::Pipe(Box::new(std::io::sink())),
            conduit_api::telemetry::TraceTrust::Continue,
        );
    });
}

/// Start a replica named `name` on a free port; returns its base URL.
fn spawn_replica(redis_url: &str, prefix: &str, name: &str) -> String {
    init_api_telemetry();
    let config = Config::try_parse_from([
        "conduit-api",
        "--addr",
        "127.0.0.1:0",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--jwt-keys",
        KEYS,
        "--replica-id",
        name,
        "--workers",
        "2",
        "--drain-seconds",
        "0",
        // Every virtual user registers from 127.0.0.1.
        "--registrations-per-address",
        "0",
    ])
    .expect("replica settings parse");
    let app = Application::build(config).expect("replica builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(false));
    url
}

fn unique_prefix() -> String {
    conduit_api::testing::unique_prefix("loadtest")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.expect("GET answered");
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.expect("JSON body")
}

fn read_lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("write log readable")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_run_reaches_both_replicas_and_every_acknowledged_write_is_listed() {
    // Arrange: Redis, two replicas sharing it, a write log.
    let redis = redis_url();
    let prefix = unique_prefix();
    let a = spawn_replica(&redis, &prefix, "load-a");
    let b = spawn_replica(&redis, &prefix, "load-b");
    let log_path = std::env::temp_dir().join(format!("{prefix}-writes.jsonl"));
    let cli = Cli::try_parse_from([
        "conduit-load",
        "--target",
        &format!("{a},{b}"),
        "--users",
        "3",
        "--seed-users",
        "1",
        "--seed-articles",
        "4",
        "--follows",
        "2",
        "--requests",
        "150",
        "--write-ratio",
        "0.5",
        "--no-tui",
        "--min-replicas",
        "2",
        "--max-errors",
        "0",
        "--timeout-ms",
        "30000",
        "--random-seed",
        "7",
        "--log-writes",
        log_path.to_str().expect("utf-8 temp path"),
    ])
    .expect("load settings parse");

    // Act
    let summary = conduit_load::run_checked(cli)
        .await
        .expect("the run completes");

    // Assert: both replicas answered, nothing failed, the checks passed.
    assert!(summary.ok, "checks failed: {:?}", summary.checks);
    assert_eq!(summary.requests.failed, 0, "errors: {:?}", summary.errors);
    assert!(summary.by_replica.get("load-a").copied().unwrap_or(0) > 0);
    assert!(summary.by_replica.get("load-b").copied().unwrap_or(0) > 0);
    assert_eq!(summary.replicas_seen, 2);
    assert_eq!(summary.seed.accounts, 4);
    assert_eq!(summary.seed.articles, 4);

    // The write log holds every acknowledged write once, each with its own key.
    let lines = read_lines(&log_path);
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(lines.len() as u64, summary.writes.acknowledged);
    let keys: HashSet<&str> = lines
        .iter()
        .map(|l| l["idempotency_key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys.len(), lines.len(), "idempotency keys repeat");
    fn of_kind<'a>(lines: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        lines.iter().filter(move |l| l["kind"] == kind)
    }
    let by_kind = |kind: &'static str| of_kind(&lines, kind);
    for (kind, n) in &summary.writes.by_kind {
        assert_eq!(of_kind(&lines, kind).count() as u64, *n, "{kind}");
    }

    // Every acknowledged article is listed, and nothing else.
    let http = reqwest::Client::new();
    let mut listed: BTreeMap<String, Value> = BTreeMap::new();
    let mut offset = 0;
    let count = loop {
        let page = get_json(&http, &format!("{a}/api/articles?limit=20&offset={offset}")).await;
        let articles = page["articles"].as_array().expect("articles list");
        for art in articles {
            listed.insert(art["slug"].as_str().expect("slug").into(), art.clone());
        }
        offset += 20;
        if articles.is_empty() || offset >= 1000 {
            break page["articlesCount"].as_u64().expect("articlesCount");
        }
    };
    let logged_articles: BTreeSet<String> = by_kind("article")
        .map(|l| l["slug"].as_str().expect("article slug").to_string())
        .collect();
    let acked_articles = summary.writes.by_kind.get("article").copied().unwrap_or(0);
    assert_eq!(count, acked_articles);
    assert_eq!(listed.len() as u64, acked_articles);
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        logged_articles
    );

    // Every acknowledged comment exists exactly once.
    let mut api_comments: BTreeSet<String> = BTreeSet::new();
    let mut api_comment_count = 0;
    for slug in listed.keys() {
        let page = get_json(&http, &format!("{b}/api/articles/{slug}/comments")).await;
        for c in page["comments"].as_array().expect("comments list") {
            api_comment_count += 1;
            api_comments.insert(id_text(&c["id"]));
        }
    }
    let logged_comments: BTreeSet<String> = by_kind("comment")
        .map(|l| id_text(&l["comment_id"]))
        .collect();
    assert_eq!(
        api_comment_count,
        summary.writes.by_kind.get("comment").copied().unwrap_or(0)
    );
    assert_eq!(api_comments, logged_comments);

    // Favorite counts equal what the acknowledged favorites and unfavorites add up to.
    let mut fans: HashMap<String, HashSet<String>> = HashMap::new();
    for l in &lines {
        let (Some(slug), Some(user)) = (l["slug"].as_str(), l["user"].as_str()) else {
            continue;
        };
        let set = fans.entry(slug.to_string()).or_default();
        if l["kind"] == "favorite" {
            set.insert(user.to_string());
        } else if l["kind"] == "unfavorite" {
            set.remove(user);
        }
    }
    for (slug, art) in &listed {
        let expected = fans.get(slug).map_or(0, HashSet::len) as u64;
        assert_eq!(
            art["favoritesCount"].as_u64(),
            Some(expected),
            "favoritesCount of {slug}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_continue_the_trace_the_client_started() {
    // Arrange: one Redis, two replicas, a client with no exporter.
    let redis = redis_url();
    let prefix = unique_prefix();
    let a = spawn_replica(&redis, &prefix, "trace-a");
    let b = spawn_replica(&redis, &prefix, "trace-b");
    let tracing = Tracing::init(None, "grpc").expect("tracer");
    let client = Client::new(
        vec![a, b],
        Duration::from_secs(30),
        RetryPolicy::default(),
        std::sync::Arc::new(Stats::default()),
        tracing.tracer.clone(),
    )
    .expect("client");
    let root = tracing
        .tracer
        .start_with_context("session", &Context::new());
    let cx = Context::new().with_span(root);
    let trace_id = cx.span().span_context().trace_id().to_string();

    // Act: two reads, one to each replica (round-robin).
    let mut served = BTreeSet::new();
    for _ in 0..2 {
        let mut call = Call::read("/api/tags".into(), "/api/tags", "tags", "");
        call.token = None;
        let reply = client.send(&cx, call).await;
        // Assert: each replica reports the client's trace id.
        assert_eq!(reply.trace_id.as_deref(), Some(trace_id.as_str()));
        served.insert(reply.served_by.expect("X-Served-By"));
    }
    assert_eq!(served.len(), 2, "both replicas answered: {served:?}");
    assert_eq!(client.stats().totals().failed, 0);
}
