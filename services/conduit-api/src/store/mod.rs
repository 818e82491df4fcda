//! The only code that talks to Redis.
//!
//! `Store` wraps a multiplexed, self-reconnecting connection. Reads are pipelined so each endpoint
//! needs a fixed, small number of round trips (see docs/DATA_MODEL.md); multi-key writes are Lua
//! scripts (`scripts.rs`) so they are atomic. Every call is bounded by a timeout: when Redis is
//! down a request fails fast with [`StoreError::Unavailable`] instead of hanging.

mod articles;
mod comments;
mod idempotency;
pub mod keys;
mod scripts;
mod users;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, FromRedisValue, Pipeline, ScriptInvocation, ServerErrorKind, Value};

use crate::telemetry::{self, SpanGuard};

pub use articles::{ArticleChanges, ArticleFilter, ArticleRecord, ArticleView, NewArticle};
pub use comments::{CommentRecord, CommentView};
pub use idempotency::{Begin, IdempotencyLease};
pub use keys::Keys;
pub use users::{ProfileView, UserChanges, UserRecord};

use scripts::Scripts;

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
            )
        );
        if transient
            || err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
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
    conn: ConnectionManager,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    keys: Keys,
    scripts: std::sync::Arc<Scripts>,
    timeout: Duration,
}

impl Store {
    /// Creates the handle without connecting, so a replica starts even while Redis is not up
    /// yet; the connection is made on first use and re-made after any failure.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow!("invalid REDIS_URL: {e}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())?;
        Ok(Self {
            conn,
            client,
            manager_config,
            keys: Keys::new(prefix),
            scripts: std::sync::Arc::new(Scripts::new()),
            timeout,
        })
    }

    /// The same store over a connection of its own, made on first use. Each worker calls this
    /// once on its own thread, so its Redis I/O lives and ends with the worker.
    pub fn own_connection(&self) -> Self {
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(conn) => Self {
                conn,
                ..self.clone()
            },
            Err(err) => {
                // Not expected: `new` already built a manager from the same settings.
                log::warn!("sharing the Redis connection, a new one failed error={err}");
                self.clone()
            }
        }
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

    /// Runs a pipeline as one round trip, in a span naming its commands, within the timeout.
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
        let mut conn = self.conn.clone();
        self.bounded(span, pipe.query_async::<T>(&mut conn)).await
    }

    /// Runs a script as one round trip (EVALSHA, falling back to EVAL once after a Redis restart).
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
        let mut conn = self.conn.clone();
        self.bounded(span, invocation.invoke_async::<T>(&mut conn))
            .await
    }

    /// Awaits one Redis exchange, failing with `Unavailable` after the timeout. A failure also
    /// fails `span`.
    async fn bounded<T>(
        &self,
        mut span: SpanGuard,
        exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                span.fail(err.to_string());
                Err(err.into())
            }
            Err(_) => {
                span.fail("timed out");
                Err(StoreError::Unavailable(anyhow!(
                    "redis did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// Runs a write script with the common calling convention and maps its `{'err', ..}` replies.
    async fn write(
        &self,
        name: &'static str,
        script: &redis::Script,
        lease: Option<&IdempotencyLease>,
        args: &[&str],
    ) -> StoreResult<String> {
        let mut invocation = script.prepare_invoke();
        match lease {
            Some(lease) => invocation
                .key(&lease.record_key)
                .arg(self.keys.prefix())
                .arg(&lease.token),
            None => invocation
                .key(format!("{}:idem:none", self.keys.prefix()))
                .arg(self.keys.prefix())
                .arg(""),
        };
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Vec<String> = self.eval(name, &invocation).await?;
        script_outcome(reply)
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

fn boolean(value: Value) -> StoreResult<bool> {
    redis::from_redis_value(value).map_err(|e| StoreError::Other(anyhow!("bad boolean reply: {e}")))
}

fn field(map: &mut HashMap<String, String>, name: &str) -> String {
    map.remove(name).unwrap_or_default()
}

fn millis(map: &mut HashMap<String, String>, name: &str) -> i64 {
    map.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
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

    #[test]
    fn other_server_errors_stay_internal() {
        let err: StoreError = server_error("ERR", "unknown command").into();
        assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    }
}
