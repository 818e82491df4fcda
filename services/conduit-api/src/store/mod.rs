//! The only code that talks to Redis, over one Redis or a Redis Cluster with the same code.
//!
//! `Store` wraps a multiplexed, self-reconnecting connection (`conn.rs`). Every Redis call touches
//! one slot: a pipeline or script gets keys of one hash tag only (`keys.rs`), and reads that need
//! several slots send one small pipeline per slot, all at once, so an endpoint still needs a
//! fixed, small number of waves of round trips (see docs/DATA_MODEL.md). Writes that span slots
//! are sequences of idempotent steps around one commit point. Every call is bounded by a timeout:
//! when Redis is down a request fails fast with [`StoreError::Unavailable`] instead of hanging.

mod articles;
mod comments;
mod conn;
mod durability;
mod fanout;
mod idempotency;
pub mod keys;
mod scripts;
mod users;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use futures_util::future::try_join_all;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use redis::{ErrorKind, FromRedisValue, Pipeline, ScriptInvocation, ServerErrorKind, Value};

use crate::telemetry::{self, SpanGuard};

pub use articles::{ArticleChanges, ArticleFilter, ArticleRecord, ArticleView, NewArticle};
pub use comments::{CommentRecord, CommentView};
pub use conn::{serving_primaries, RedisTarget};
pub use durability::ReplicaState;
pub use fanout::{consumer_name, FEED_MAX};
pub use idempotency::{Begin, IdempotencyLease, TokenFor};
pub use keys::Keys;
pub use users::{LoginLimits, LoginReservation, ProfileView, UserChanges, UserRecord};

use conn::{Connector, RedisConn};
use durability::ReplicaWatch;
use scripts::Scripts;

/// Milliseconds a claim whose owner is missing (or no longer holds the claimed value) must be
/// old before another owner may take it over: longer than any request that could still be
/// finishing the write that made it.
const CLAIM_GRACE_MS: u64 = 60_000;

/// What a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer (down, unreachable, or too slow).
    #[error("data store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A unique field is already used by someone else.
    #[error("already taken: {0:?}")]
    Taken(Vec<&'static str>),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not change the named thing.
    #[error("{0} belongs to someone else")]
    Forbidden(&'static str),
    /// A field value is valid alone but not in this context (for example following yourself).
    #[error("{0}: {1}")]
    Invalid(&'static str, &'static str),
    /// The request's idempotency lease was taken over by a retry.
    #[error("idempotency lease lost")]
    InFlight,
    /// Anything else (an unexpected reply, a script error).
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        // A Redis at its `maxmemory` refuses writes: the data tier is full, not the request bad.
        if err.code() == Some("OOM") || err.to_string().contains("OOM command not allowed") {
            log::error!("redis is out of memory (OOM): writes are refused until memory is freed or maxmemory raised error={err}");
            return Self::Unavailable(anyhow!("redis out of memory (OOM): {err}"));
        }
        // A Redis that is loading its data after a restart, or in the middle of a failover,
        // answers with an error that means "try again shortly": that is unavailability too.
        let transient = matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        );
        if transient
            || err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
            || err.is_cluster_error()
        {
            Self::Unavailable(anyhow!(err))
        } else {
            Self::Other(anyhow!(err))
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Handle to the business data. Cheap to clone; holds no client data.
///
/// Clones share one connection. Each HTTP worker opens its own with [`Store::own_connection`]:
/// a connection's I/O task runs on the runtime of the thread that first uses it, and a worker's
/// runtime ends when that worker stops, which during a graceful shutdown is while the other
/// workers still finish their requests.
#[derive(Clone)]
pub struct Store {
    conn: RedisConn,
    connector: Connector,
    mode: &'static str,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    timeout: Duration,
    /// Followers whose feeds a new article reaches within the request (`fanout.rs`).
    fanout_inline: u64,
    /// Replicas a write waits for (`durability.rs`), and how long, in milliseconds.
    min_replicas: u32,
    wait_ms: u64,
    replica_watch: ReplicaWatch,
    /// Fault injection for tests: the step after which a write stops (as if its replica died).
    stop_after: Option<&'static str>,
}

impl Store {
    /// Creates the handle without connecting, so a replica starts even while Redis is not up
    /// yet; the connection is made on first use and re-made after any failure.
    pub fn new(target: &RedisTarget, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let connector = Connector::new(target, timeout)?;
        Ok(Self {
            conn: connector.connect()?,
            connector,
            mode: target.mode(),
            keys: Keys::new(prefix),
            scripts: std::sync::Arc::new(Scripts::new()),
            timeout,
            fanout_inline: 100,
            min_replicas: 0,
            wait_ms: (timeout.as_millis() as u64 / 2).max(1),
            replica_watch: ReplicaWatch::default(),
            stop_after: None,
        })
    }

    /// For tests: every write stops with `Unavailable` right after its step named `step`, as if
    /// the replica died there, leaving the later steps undone.
    #[doc(hidden)]
    pub fn stopping_after(self, step: &'static str) -> Self {
        Self {
            stop_after: Some(step),
            ..self
        }
    }

    /// A point between two steps of a write; see [`Store::stopping_after`].
    fn step_done(&self, step: &'static str) -> StoreResult<()> {
        if self.stop_after == Some(step) {
            return Err(StoreError::Unavailable(anyhow!(
                "stopped after step {step}"
            )));
        }
        Ok(())
    }

    /// The same store, acknowledging writes only after `replicas` replicas have them (see
    /// `durability.rs`).
    pub fn with_min_replicas(self, replicas: u32) -> Self {
        Self {
            min_replicas: replicas,
            ..self
        }
    }

    /// The same store, filling the feeds of at most `followers` followers within a request
    /// (the rest through the fan-out job stream).
    pub fn with_inline_fanout(self, followers: u64) -> Self {
        Self {
            fanout_inline: followers,
            ..self
        }
    }

    /// The same store over a connection of its own, made on first use. Each worker calls this
    /// once on its own thread, so its Redis I/O lives and ends with the worker.
    pub fn own_connection(&self) -> Self {
        match self.connector.connect() {
            Ok(conn) => Self {
                conn,
                ..self.clone()
            },
            Err(err) => {
                // Not expected: `new` already built a connection from the same settings.
                log::warn!("sharing the Redis connection, a new one failed error={err}");
                self.clone()
            }
        }
    }

    /// `single` or `cluster`.
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// The key builder (tests use it to look at what a request wrote).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let _: (String,) = self.query("PING", &pipe).await?;
        Ok(())
    }

    /// Runs a pipeline (keys of one slot) as one round trip, in a span naming its commands,
    /// within the timeout.
    async fn query<T: FromRedisValue>(
        &self,
        commands: &'static str,
        pipe: &Pipeline,
    ) -> StoreResult<T> {
        let span = telemetry::child("redis", SpanKind::Client, || {
            vec![
                KeyValue::new("db.system", "redis"),
                KeyValue::new("db.operation", commands),
            ]
        });
        self.send(span, |mut conn| async move {
            pipe.query_async::<T>(&mut conn).await
        })
        .await
    }

    /// Runs pipelines of different slots at once: one wave of round trips, and one round trip
    /// on a single Redis, which serves every slot: there the pipelines go as one. Every command
    /// gets its reply (none may be marked `ignore`), so each pipeline's replies are its own.
    async fn query_many(
        &self,
        commands: &'static str,
        pipes: &[Pipeline],
    ) -> StoreResult<Vec<Vec<Value>>> {
        if matches!(self.conn, RedisConn::Single(_)) && pipes.len() > 1 {
            let mut all = redis::pipe();
            for cmd in pipes.iter().flat_map(Pipeline::cmd_iter) {
                all.add_command(cmd.clone());
            }
            let replies: Vec<Value> = self.query(commands, &all).await?;
            let mut replies = replies.into_iter();
            return Ok(pipes
                .iter()
                .map(|pipe| replies.by_ref().take(pipe.len()).collect())
                .collect());
        }
        try_join_all(
            pipes
                .iter()
                .map(|pipe| self.query::<Vec<Value>>(commands, pipe)),
        )
        .await
    }

    /// Runs a script as one round trip (EVALSHA, falling back to EVAL once after a Redis
    /// restart), on the slot of its keys.
    async fn eval<T: FromRedisValue>(
        &self,
        name: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        let span = telemetry::child("redis", SpanKind::Client, || {
            vec![
                KeyValue::new("db.system", "redis"),
                KeyValue::new("db.operation", "EVALSHA"),
                KeyValue::new("db.script", name),
            ]
        });
        self.send(span, |mut conn| async move {
            invocation.invoke_async::<T>(&mut conn).await
        })
        .await
    }

    /// Makes one exchange within the timeout, and once more, on a fresh connection, when the
    /// first attempt failed before its command could reach Redis ([`never_sent`](Self::never_sent));
    /// a failure also fails `span`.
    async fn send<T, Attempt, Exchange>(&self, span: SpanGuard, attempt: Attempt) -> StoreResult<T>
    where
        Attempt: Fn(RedisConn) -> Exchange,
        Exchange: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match self.within_timeout(attempt(self.conn.clone())).await {
            Some(Err(err)) if self.never_sent(&err) => {
                // The connection failed, not the command; the failure has started a new
                // connection, and the command goes once more, on it.
                self.bounded(span, attempt(self.conn.clone())).await
            }
            first => self.finish(span, first.unwrap_or_else(|| Err(self.timed_out()))),
        }
    }

    /// Whether a first attempt failed before its command could reach Redis, so that sending
    /// it again cannot apply it twice:
    /// - a connection Redis closed or refused (a restart);
    /// - on a single Redis, any I/O error of the connection: it keeps the outcome of its last
    ///   attempt to connect (a refusal, a timeout toward an address that stopped answering, a
    ///   name that did not resolve) and hands it to the next command, which starts a new
    ///   attempt. A reply that is late is the store's own timeout instead, never sent again.
    fn never_sent(&self, err: &redis::RedisError) -> bool {
        err.is_connection_dropped()
            || matches!(self.conn, RedisConn::Single(_)) && err.is_io_error()
    }

    /// Awaits one Redis exchange within the timeout, leaving the error as Redis gave it; `None`
    /// when the timeout passed first.
    async fn within_timeout<T>(
        &self,
        exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<redis::RedisResult<T>> {
        tokio::time::timeout(self.timeout, exchange).await.ok()
    }

    /// The error of an exchange that did not finish within the timeout.
    fn timed_out(&self) -> redis::RedisError {
        redis::RedisError::from((
            ErrorKind::Io,
            "redis did not answer within the timeout",
            format!("{:?}", self.timeout),
        ))
    }

    /// Turns the outcome of an exchange into the store's result; a failure also fails `span`.
    fn finish<T>(&self, mut span: SpanGuard, outcome: redis::RedisResult<T>) -> StoreResult<T> {
        outcome.map_err(|err| {
            span.fail(err.to_string());
            err.into()
        })
    }

    /// Awaits one Redis exchange, failing with `Unavailable` after the timeout. A failure also
    /// fails `span`.
    async fn bounded<T>(
        &self,
        span: SpanGuard,
        exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> StoreResult<T> {
        let outcome = self.within_timeout(exchange).await;
        self.finish(span, outcome.unwrap_or_else(|| Err(self.timed_out())))
    }

    /// Runs a step script that answers `{'ok', value}` / `{'err', code, ..}`.
    async fn step(
        &self,
        name: &'static str,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> StoreResult<String> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Vec<String> = self.eval(name, &invocation).await?;
        script_outcome(reply)
    }

    /// Runs a commit step in the caller's user slot (see `scripts.rs`): `KEYS[1]` is the
    /// request's idempotency record, or `keys[0]` again when there is none (never touched then).
    async fn commit(
        &self,
        name: &'static str,
        script: &redis::Script,
        lease: Option<&IdempotencyLease>,
        keys: &[&str],
        args: &[&str],
    ) -> StoreResult<String> {
        let mut invocation = script.prepare_invoke();
        match lease {
            Some(lease) => invocation.key(&lease.record_key).arg(&lease.token),
            None => invocation
                .key(keys.first().copied().unwrap_or_default())
                .arg(""),
        };
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Vec<String> = self.eval(name, &invocation).await?;
        script_outcome(reply)
    }

    /// A new id of `kind` (`INCR` of its sequence).
    async fn next_id(&self, kind: &str) -> StoreResult<String> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(self.keys.sequence(kind));
        let (id,): (i64,) = self.query("INCR", &pipe).await?;
        Ok(id.to_string())
    }

    /// Before its first write, an idempotent request records which entity it is about, so a
    /// retry works on the same one. Without a lease this is just `candidate`.
    ///
    /// # Returns
    /// The entity id and whether this attempt is the first (`false`: a retry of a request that
    /// may have written already).
    async fn reserve(
        &self,
        lease: Option<&IdempotencyLease>,
        candidate: &str,
    ) -> StoreResult<(String, bool)> {
        let Some(lease) = lease else {
            return Ok((candidate.to_owned(), true));
        };
        let mut invocation = self.scripts.reserve.prepare_invoke();
        invocation
            .key(&lease.record_key)
            .arg(&lease.token)
            .arg(candidate);
        let reply: Vec<String> = self.eval("reserve", &invocation).await?;
        let mut parts = reply.into_iter();
        match (parts.next().as_deref(), parts.next(), parts.next()) {
            (Some("ok"), Some(id), fresh) => Ok((id, fresh.as_deref() == Some("1"))),
            (Some("err"), ..) => Err(StoreError::InFlight),
            _ => Err(StoreError::Other(anyhow!("unexpected reserve reply"))),
        }
    }

    /// Records the result of a write whose commit step ran outside the caller's user slot.
    async fn idem_commit(&self, lease: Option<&IdempotencyLease>, result: &str) -> StoreResult<()> {
        let Some(lease) = lease else { return Ok(()) };
        let mut invocation = self.scripts.idem_commit.prepare_invoke();
        invocation
            .key(&lease.record_key)
            .arg(&lease.token)
            .arg(result);
        let _: i64 = self.eval("idem_commit", &invocation).await?;
        Ok(())
    }

    /// Claims the unique value behind `claim` for `owner`.
    ///
    /// # Returns
    /// `None` when claimed (or already owned by `owner`), else the current owner and the age of
    /// its claim in milliseconds.
    async fn claim(
        &self,
        claim: &str,
        owner: &str,
        stale: Option<&str>,
    ) -> StoreResult<Option<(String, u64)>> {
        let mut invocation = self.scripts.claim.prepare_invoke();
        invocation
            .key(claim)
            .arg(owner)
            .arg(stale.unwrap_or_default())
            .arg(CLAIM_GRACE_MS);
        let reply: Vec<String> = self.eval("claim", &invocation).await?;
        let mut parts = reply.into_iter();
        match (parts.next().as_deref(), parts.next(), parts.next()) {
            (Some("ok"), ..) => Ok(None),
            (Some("taken"), Some(current), age) => Ok(Some((
                current,
                age.and_then(|a| a.parse().ok()).unwrap_or(0),
            ))),
            _ => Err(StoreError::Other(anyhow!("unexpected claim reply"))),
        }
    }

    /// Releases `claim` if `owner` still holds it.
    async fn release(&self, claim: &str, owner: &str) -> StoreResult<()> {
        let mut invocation = self.scripts.release.prepare_invoke();
        invocation.key(claim).arg(owner);
        let _: i64 = self.eval("release", &invocation).await?;
        Ok(())
    }

    /// The owner recorded in `claim`, if any.
    async fn claim_owner(&self, claim: &str) -> StoreResult<Option<String>> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(claim).arg("owner");
        let (owner,): (Option<String>,) = self.query("HGET", &pipe).await?;
        Ok(owner)
    }
}

/// Turns a script's `{'ok', value}` / `{'err', code, ..}` reply into a result.
fn script_outcome(reply: Vec<String>) -> StoreResult<String> {
    let mut parts = reply.into_iter();
    match (parts.next().as_deref(), parts.next()) {
        (Some("ok"), value) => Ok(value.unwrap_or_default()),
        (Some("err"), Some(code)) => {
            let rest: Vec<String> = parts.collect();
            Err(match code.as_str() {
                "taken" => StoreError::Taken(rest.iter().map(|f| static_field(f)).collect()),
                "not_found" => {
                    StoreError::NotFound(static_field(rest.first().map_or("", String::as_str)))
                }
                "forbidden" => {
                    StoreError::Forbidden(static_field(rest.first().map_or("", String::as_str)))
                }
                "invalid" => StoreError::Invalid(
                    static_field(rest.first().map_or("", String::as_str)),
                    "cannot follow yourself",
                ),
                "lease_lost" => StoreError::InFlight,
                other => StoreError::Other(anyhow!("script error {other}")),
            })
        }
        _ => Err(StoreError::Other(anyhow!("unexpected script reply"))),
    }
}

/// Maps the field names scripts report to static strings for error bodies.
fn static_field(name: &str) -> &'static str {
    match name {
        "username" => "username",
        "email" => "email",
        "user" => "user",
        "profile" => "profile",
        "article" => "article",
        "comment" => "comment",
        _ => "resource",
    }
}

/// Reads a `HGETALL` reply; an empty map means the key does not exist.
fn hash(value: Value) -> StoreResult<HashMap<String, String>> {
    redis::from_redis_value(value).map_err(|e| StoreError::Other(anyhow!("bad hash reply: {e}")))
}

fn int(value: Value) -> StoreResult<i64> {
    redis::from_redis_value(value).map_err(|e| StoreError::Other(anyhow!("bad integer reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, text: &str) -> redis::RedisError {
        // Parse a real RESP error reply, the way the client meets it.
        let reply = format!("-{code} {text}\r\n");
        let value = redis::parse_redis_value(reply.as_bytes()).unwrap();
        match value {
            Value::ServerError(err) => err.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn a_redis_that_is_loading_or_failing_over_is_unavailable_not_an_internal_error() {
        for (code, text) in [
            ("LOADING", "Redis is loading the dataset in memory"),
            ("TRYAGAIN", "try again"),
            ("MASTERDOWN", "link with master is down"),
            ("READONLY", "You can't write against a read only replica."),
        ] {
            let err: StoreError = server_error(code, text).into();
            assert!(matches!(err, StoreError::Unavailable(_)), "{code}: {err:?}");
        }
    }

    /// Every script call and every pipeline the store sends, with the keys it gets: each set
    /// must hash to one slot, or a cluster refuses it.
    #[test]
    fn every_script_and_pipeline_touches_one_slot() {
        let k = Keys::new("conduit");
        let idem = k.idempotency("7", "key-1");
        let sets: Vec<(&str, Vec<String>)> = vec![
            ("follow", vec![idem.clone(), k.following("7")]),
            ("favorite", vec![idem.clone(), k.favorites("7")]),
            (
                "create_article (author list)",
                vec![idem.clone(), k.authored("7")],
            ),
            ("update_user", vec![idem.clone(), k.user("7")]),
            ("reserve / idem_commit (user)", vec![idem.clone()]),
            (
                "idempotency_begin / finish / release (user)",
                vec![idem.clone()],
            ),
            (
                "window_count (user's records)",
                vec![k.idempotency_quota_user("7")],
            ),
            (
                "user's records and their count share the user's slot",
                vec![idem.clone(), k.idempotency_quota_user("7")],
            ),
            (
                "window_count (anonymous records)",
                vec![k.idempotency_quota_address("2001:db8:{1}::/64")],
            ),
            (
                "window_count (registrations)",
                vec![k.registrations_address("10.0.0.1")],
            ),
            ("reserve (anonymous)", vec![k.idempotency("anon", "x:{y}")]),
            ("claim slug", vec![k.slug_claim("a-{b}")]),
            ("claim username", vec![k.username_claim("Jake")]),
            ("claim email", vec![k.email_claim("j@x")]),
            ("put_user", vec![k.user("7")]),
            ("put_article / update_article", vec![k.article("9")]),
            (
                "delete_article",
                vec![
                    k.article("9"),
                    k.favorited_by("9"),
                    k.comment_ids("9"),
                    k.comments("9"),
                    k.fans_gone("9"),
                ],
            ),
            (
                "add_comment",
                vec![k.article("9"), k.comment_ids("9"), k.comments("9")],
            ),
            (
                "delete_comment / comment_page",
                vec![k.comment_ids("9"), k.comments("9")],
            ),
            (
                "tag",
                vec![k.tagged("rust:{x}"), k.tag_counts_of("rust:{x}")],
            ),
            ("article view", vec![k.article("9"), k.favorited_by("9")]),
            ("favorited_by", vec![k.favorited_by("9"), k.article("9")]),
            ("page favorites (viewer)", vec![k.favorites("7")]),
            ("feed page", vec![k.feed("7")]),
            (
                "follow tail (target)",
                vec![k.followers("3"), k.authored("3")],
            ),
            (
                "delete tail (author)",
                vec![k.authored("7"), k.followers("7")],
            ),
            ("login failures", vec![k.login_failures_account("j@x")]),
            ("sequence", vec![k.sequence("article"), k.sequence("user")]),
        ];
        for (name, keys) in sets {
            let first = keys::slot(&keys[0]);
            for key in &keys {
                assert_eq!(keys::slot(key), first, "{name}: {key} is on another slot");
            }
        }
        // And different entities do not all land on one slot.
        assert_ne!(keys::slot(&k.user("1")), keys::slot(&k.user("2")));
        assert_ne!(keys::slot(&k.article("1")), keys::slot(&k.user("1")));
        for tag in 0..keys::TAG_BUCKETS {
            assert_ne!(
                keys::slot(&k.tag_counts(tag)),
                keys::slot(&k.articles_bucket(0))
            );
        }
    }

    #[test]
    fn a_redis_out_of_memory_is_unavailable_and_says_so() {
        let err: StoreError =
            server_error("OOM", "command not allowed when used memory > 'maxmemory'.").into();
        match err {
            StoreError::Unavailable(cause) => {
                assert!(cause.to_string().contains("out of memory (OOM)"), "{cause}")
            }
            other => panic!("not unavailable: {other:?}"),
        }
    }

    #[test]
    fn other_server_errors_stay_internal() {
        let err: StoreError = server_error("ERR", "unknown command").into();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    }
}
