//! Idempotency records: the stored outcome of a request sent with an `Idempotency-Key`.
//!
//! A record is business data (what a request did), kept for a TTL, never a session. Its states:
//! `pending` (a replica holds a lease while it works), `committed` (the write's commit point is
//! passed), `done` (the response is stored for replay). A pending record may also hold `rid`, the
//! id of the entity the request creates or changes, recorded before its first write so a retry
//! finishes the same write. A user's records live in the user's slot; anonymous ones (register)
//! in a slot of their own.

use super::{Store, StoreError, StoreResult};

/// A replica's hold on an idempotency record while it executes the request.
#[derive(Debug, Clone)]
pub struct IdempotencyLease {
    pub record_key: String,
    pub token: String,
}

/// What to do with an incoming idempotent request.
#[derive(Debug)]
pub enum Begin {
    /// Execute it, holding the lease.
    Proceed(IdempotencyLease),
    /// It already completed: send this status and body again.
    Replay { status: u16, body: Vec<u8> },
    /// Another attempt holds a live lease.
    InFlight,
    /// The key was used before for a different request.
    Mismatch,
}

impl Store {
    /// Starts (or resumes after a crash) the request identified by `scope` and `key`.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        lease_secs: u64,
        ttl_secs: u64,
    ) -> StoreResult<Begin> {
        let record_key = self.keys.idempotency(scope, key);
        let token = format!("{:032x}", rand::random::<u128>());
        let mut invocation = self.scripts.idempotency_begin.prepare_invoke();
        invocation
            .key(&record_key)
            .arg(&token)
            .arg(fingerprint)
            .arg(lease_secs)
            .arg(ttl_secs);
        let reply: Vec<redis::Value> = self.eval("idempotency_begin", &invocation).await?;
        let mut reply = reply.into_iter();
        let tag: String = reply
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| StoreError::Other(anyhow::anyhow!("bad idempotency reply: {e}")))?
            .unwrap_or_default();
        Ok(match tag.as_str() {
            "proceed" => Begin::Proceed(IdempotencyLease { record_key, token }),
            "in_flight" => Begin::InFlight,
            "mismatch" => Begin::Mismatch,
            "replay" => {
                let status: String = reply
                    .next()
                    .map(redis::from_redis_value)
                    .transpose()
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let body: Vec<u8> = reply
                    .next()
                    .map(redis::from_redis_value)
                    .transpose()
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                Begin::Replay {
                    status: status.parse().unwrap_or(200),
                    body,
                }
            }
            other => {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "unexpected idempotency state {other:?}"
                )))
            }
        })
    }

    /// Stores the response for replay. Does nothing if the lease was taken over.
    pub async fn idempotency_finish(
        &self,
        lease: &IdempotencyLease,
        status: u16,
        body: &[u8],
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.idempotency_finish.prepare_invoke();
        invocation
            .key(&lease.record_key)
            .arg(&lease.token)
            .arg(status)
            .arg(body);
        let _: i64 = self.eval("idempotency_finish", &invocation).await?;
        Ok(())
    }

    /// Gives the key back after a failure that must not be replayed.
    pub async fn idempotency_release(&self, lease: &IdempotencyLease) -> StoreResult<()> {
        let mut invocation = self.scripts.idempotency_release.prepare_invoke();
        invocation.key(&lease.record_key).arg(&lease.token);
        let _: i64 = self.eval("idempotency_release", &invocation).await?;
        Ok(())
    }
}
