//! The one connection type the store uses, over a single Redis or a Redis Cluster.
//!
//! Both kinds are multiplexed, reconnect by themselves and are made lazily, so a replica starts
//! while Redis is down. The cluster kind connects on first use and, until that succeeds, tries
//! again on every use (a cluster client made while no node answers would not find one later). The cluster kind is the redis crate's own cluster client: it routes each
//! command, pipeline or script by the slot of its keys, follows `MOVED`/`ASK` and refreshes the
//! slot map. Everything above this file is the same in both modes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

/// Where the business data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (`REDIS_URL`).
    Single(String),
    /// A Redis Cluster, reached through these seed nodes (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Cluster mode when `cluster_urls` names at least one node, else the single URL.
    pub fn from_config(single_url: &str, cluster_urls: Option<&str>) -> Self {
        let seeds: Vec<String> = cluster_urls
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if seeds.is_empty() {
            Self::Single(single_url.to_owned())
        } else {
            Self::Cluster(seeds)
        }
    }

    /// `single` or `cluster`, as the start-up log and `/readyz` say it.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Cluster(_) => "cluster",
        }
    }
}

/// Builds connections for one target; each `connect` makes a new, not yet connected one.
#[derive(Clone)]
pub(crate) enum Connector {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
        timeout: Duration,
    },
}

impl Connector {
    pub(crate) fn new(target: &RedisTarget, timeout: Duration) -> anyhow::Result<Self> {
        Ok(match target {
            RedisTarget::Single(url) => Self::Single {
                client: redis::Client::open(url.as_str())
                    .map_err(|e| anyhow!("invalid REDIS_URL: {e}"))?,
                // The store bounds every exchange by `timeout` itself. The client's own reply
                // timeout is twice that, so it never fires first: an I/O error the client
                // returns within the store's bound is then about the connection, never a reply
                // that was late (see `Store::never_sent`).
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout * 2))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200)),
            },
            RedisTarget::Cluster(seeds) => Self::Cluster {
                client: ClusterClient::builder(seeds.iter().map(String::as_str))
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(400)
                    .build()
                    .map_err(|e| anyhow!("invalid REDIS_CLUSTER_URLS: {e}"))?,
                timeout,
            },
        })
    }

    /// A new connection, made on first use.
    pub(crate) fn connect(&self) -> anyhow::Result<RedisConn> {
        Ok(match self {
            Self::Single { client, config } => RedisConn::Single(
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
            ),
            Self::Cluster { client, timeout } => {
                RedisConn::Cluster(LazyCluster(Arc::new(LazyInner {
                    client: client.clone(),
                    config: ClusterConfig::new()
                        .set_connection_timeout(*timeout)
                        .set_response_timeout(*timeout),
                    conn: OnceCell::new(),
                })))
            }
        })
    }
}

/// A connection to a single Redis or to a cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum RedisConn {
    Single(ConnectionManager),
    Cluster(LazyCluster),
}

/// A cluster connection made on first use; a failed attempt is repeated on the next use.
#[derive(Clone)]
pub(crate) struct LazyCluster(Arc<LazyInner>);

struct LazyInner {
    client: ClusterClient,
    config: ClusterConfig,
    conn: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    /// The connection, made now if it is not yet.
    pub(crate) async fn get(&self) -> RedisResult<ClusterConnection> {
        let inner = &self.0;
        inner
            .conn
            .get_or_try_init(|| {
                inner
                    .client
                    .get_async_connection_with_config(inner.config.clone())
            })
            .await
            .cloned()
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// The primaries that hold data, as `host:port`, sorted, from a `CLUSTER NODES` reply: nodes
/// flagged `master`, not failed, with at least one slot range.
pub fn serving_primaries(cluster_nodes: &str) -> Vec<String> {
    let mut out: Vec<String> = cluster_nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            // Slot ranges start at field 9; a primary without any holds no data.
            fields.get(8)?;
            Some(fields.get(1)?.split('@').next()?.to_owned())
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_primaries_are_the_live_masters_with_slots() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
e5 127.0.0.1:7005@17005 master - 0 0 5 connected
";
        assert_eq!(
            serving_primaries(nodes),
            vec!["127.0.0.1:7001".to_owned(), "127.0.0.1:7002".to_owned()]
        );
    }

    #[test]
    fn cluster_mode_is_chosen_by_the_seed_list() {
        assert_eq!(
            RedisTarget::from_config("redis://a:1", None),
            RedisTarget::Single("redis://a:1".into())
        );
        assert_eq!(
            RedisTarget::from_config("redis://a:1", Some(" , ")).mode(),
            "single"
        );
        assert_eq!(
            RedisTarget::from_config("redis://a:1", Some("redis://b:2, redis://c:3")),
            RedisTarget::Cluster(vec!["redis://b:2".into(), "redis://c:3".into()])
        );
    }
}
