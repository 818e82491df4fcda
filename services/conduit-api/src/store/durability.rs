//! Waiting for replicas before a write is acknowledged (`CONDUIT_REDIS_MIN_REPLICAS`).
//!
//! Redis replicates asynchronously: a primary answers before its replica has a write, so a
//! failover right after could lose an acknowledged write. After a write's steps, the store sends
//! `WAIT n timeout` to every primary on the same connection its steps went out on, which returns
//! once `n` replicas have everything this connection wrote there. If a primary has a replica
//! online and the wait times out, the request fails with 503 (the client's retry with the same
//! `Idempotency-Key` finishes it). If a primary has no replica online (after a failover, until
//! a new replica joins and finishes its first full sync), writes go on: one failure must not
//! cost availability. That is logged, remembered for [`NO_REPLICA_RECHECK`] so writes do not
//! wait in vain, and shown by `/readyz`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use redis::Value;

use super::conn::RedisConn;
use super::{Store, StoreError, StoreResult};

/// How long a primary found without a replica is not waited on.
const NO_REPLICA_RECHECK: Duration = Duration::from_secs(5);

/// How long the list of cluster primaries is reused before it is asked for again.
const PRIMARIES_TTL: Duration = Duration::from_secs(2);

/// Primaries found without an attached replica, and the last list of primaries, shared by all
/// of a process's connections.
#[derive(Clone, Default)]
pub(crate) struct ReplicaWatch(
    Arc<Mutex<HashMap<String, Instant>>>,
    Arc<Mutex<PrimariesCache>>,
);

/// When the list of primaries was read, and the list.
type PrimariesCache = Option<(Instant, Vec<String>)>;

impl ReplicaWatch {
    fn cached_primaries(&self) -> Option<Vec<String>> {
        let cache = self.1.lock().ok()?;
        let (at, nodes) = cache.as_ref()?;
        (at.elapsed() < PRIMARIES_TTL).then(|| nodes.clone())
    }

    fn cache_primaries(&self, nodes: &[String]) {
        if let Ok(mut cache) = self.1.lock() {
            *cache = Some((Instant::now(), nodes.to_vec()));
        }
    }

    fn recently_without_replica(&self, node: &str) -> bool {
        self.0
            .lock()
            .map(|m| {
                m.get(node)
                    .is_some_and(|t| t.elapsed() < NO_REPLICA_RECHECK)
            })
            .unwrap_or(false)
    }

    fn mark(&self, node: &str, without_replica: bool) {
        if let Ok(mut m) = self.0.lock() {
            if without_replica {
                m.insert(node.to_owned(), Instant::now());
            } else {
                m.remove(node);
            }
        }
    }
}

/// Replication as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    /// `CONDUIT_REDIS_MIN_REPLICAS` is 0: writes do not wait for replicas.
    NotRequired,
    /// Every primary has the replicas writes wait for.
    Ok,
    /// These primaries have fewer replicas attached than writes wait for; writes go on without.
    Missing(Vec<String>),
}

/// Replicas that hold the primary's data and follow its stream (`state=online` in `INFO
/// replication`). A replica still in its first full sync (`wait_bgsave`, `send_bulk`) is
/// attached but acknowledges nothing until the sync ends, which takes seconds: waiting for it
/// would fail every write to that primary meanwhile, so it counts as no replica yet.
fn online_replicas(info: &str) -> u64 {
    info.lines()
        .filter(|line| {
            line.strip_prefix("slave")
                .and_then(|rest| rest.split_once(':'))
                .is_some_and(|(n, fields)| {
                    n.bytes().all(|b| b.is_ascii_digit())
                        && fields.trim_end().split(',').any(|f| f == "state=online")
                })
        })
        .count() as u64
}

impl Store {
    /// The primaries holding data: `single` for one Redis, else every cluster primary by address.
    async fn primaries(&self) -> StoreResult<Vec<String>> {
        if let RedisConn::Single(_) = self.conn {
            return Ok(vec![String::new()]);
        }
        if let Some(nodes) = self.replica_watch.cached_primaries() {
            return Ok(nodes);
        }
        let nodes: String = self
            .on_node(None, redis::cmd("CLUSTER").arg("NODES").clone())
            .await
            .and_then(|v| {
                redis::from_redis_value(v)
                    .map_err(|e| StoreError::Other(anyhow!("bad CLUSTER NODES reply: {e}")))
            })?;
        let nodes = super::conn::serving_primaries(&nodes);
        self.replica_watch.cache_primaries(&nodes);
        Ok(nodes)
    }

    /// Sends `cmd` to the primary at `node` (`host:port`), or anywhere when `None` / single.
    async fn on_node(&self, node: Option<&str>, cmd: redis::Cmd) -> StoreResult<Value> {
        let span = crate::telemetry::child("redis", opentelemetry::trace::SpanKind::Client, || {
            vec![
                opentelemetry::KeyValue::new("db.system", "redis"),
                opentelemetry::KeyValue::new("db.operation", "WAIT INFO CLUSTER"),
            ]
        });
        let mut conn = self.conn.clone();
        match &mut conn {
            RedisConn::Single(c) => self.bounded(span, cmd.query_async::<Value>(c)).await,
            RedisConn::Cluster(lazy) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let mut c = match lazy.get().await {
                    Ok(c) => c,
                    Err(err) => return Err(err.into()),
                };
                let routing = match node.and_then(|n| n.rsplit_once(':')) {
                    Some((host, port)) => SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port: port.parse().unwrap_or(6379),
                    },
                    None => SingleNodeRoutingInfo::Random,
                };
                self.bounded(span, c.route_command(cmd, RoutingInfo::SingleNode(routing)))
                    .await
            }
        }
    }

    /// How many replicas of the primary at `node` are online (see [`online_replicas`]).
    async fn replicas_of(&self, node: &str) -> StoreResult<u64> {
        let info = self
            .on_node(Some(node), redis::cmd("INFO").arg("replication").clone())
            .await?;
        let text: String = redis::from_redis_value(info)
            .map_err(|e| StoreError::Other(anyhow!("bad INFO reply: {e}")))?;
        Ok(online_replicas(&text))
    }

    /// Waits until the replicas have this connection's writes (see the module docs).
    pub(crate) async fn durable(&self) -> StoreResult<()> {
        if self.min_replicas == 0 {
            return Ok(());
        }
        let nodes = self.primaries().await?;
        let waits = nodes.iter().map(|node| async move {
            if self.replica_watch.recently_without_replica(node) {
                return Ok(());
            }
            let acked: i64 = self
                .on_node(
                    Some(node),
                    redis::cmd("WAIT")
                        .arg(self.min_replicas)
                        .arg(self.wait_ms)
                        .clone(),
                )
                .await
                .and_then(super::int)?;
            if acked >= i64::from(self.min_replicas) {
                return Ok(());
            }
            let online = self.replicas_of(node).await?;
            if online == 0 {
                log::warn!(
                    "redis primary has no replica online, accepting writes without one node={} wanted={}",
                    if node.is_empty() { "single" } else { node },
                    self.min_replicas
                );
                self.replica_watch.mark(node, true);
                return Ok(());
            }
            Err(StoreError::Unavailable(anyhow!(
                "{acked} of {} replicas acknowledged the write within {} ms (WAIT)",
                self.min_replicas,
                self.wait_ms
            )))
        });
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }

    /// Replication health for `/readyz`.
    pub async fn replica_state(&self) -> StoreResult<ReplicaState> {
        if self.min_replicas == 0 {
            return Ok(ReplicaState::NotRequired);
        }
        let mut missing = Vec::new();
        for node in self.primaries().await? {
            let online = self.replicas_of(&node).await?;
            let short = online < u64::from(self.min_replicas);
            self.replica_watch.mark(&node, online == 0);
            if short {
                missing.push(if node.is_empty() {
                    "single".to_owned()
                } else {
                    node
                });
            }
        }
        if missing.is_empty() {
            Ok(ReplicaState::Ok)
        } else {
            log::warn!(
                "redis primaries without the replicas writes wait for nodes={}",
                missing.join(",")
            );
            Ok(ReplicaState::Missing(missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_online_replicas_count() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n\
            slave1:ip=127.0.0.1,port=7002,state=send_bulk,offset=0,lag=0\r\n\
            slave2:ip=127.0.0.1,port=7003,state=online,offset=42,lag=1\r\n\
            master_failover_state:no-failover\r\n";
        assert_eq!(online_replicas(info), 2);
        let syncing = "role:master\r\nconnected_slaves:1\r\n\
            slave0:ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0\r\n";
        assert_eq!(online_replicas(syncing), 0);
        assert_eq!(online_replicas("role:master\r\nconnected_slaves:0\r\n"), 0);
    }
}
