//! The one connection type the store uses, over a single Redis or a Redis Cluster.
//!
//! Both kinds are multiplexed, reconnect by themselves and are made lazily, so a replica starts
//! while Redis is down. The cluster kind is the redis crate's own cluster client: it routes each
//! command, pipeline or script by the slot of its keys, follows `MOVED`/`ASK` and refreshes the
//! slot map. Everything above this file is the same in both modes.

use std::time::Duration;

use anyhow::anyhow;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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
                config: ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
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
            Self::Cluster { client, timeout } => RedisConn::Cluster(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(*timeout)
                        .set_response_timeout(*timeout),
                ),
            ),
        })
    }
}

/// A connection to a single Redis or to a cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub(crate) enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
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
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
