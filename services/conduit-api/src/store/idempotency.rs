//! Idempotency records: the stored outcome of a request sent with an `Idempotency-Key`.
//!
//! A record is business data (what a request did), kept for a TTL, never a session. Its states:
//! `pending` (a replica holds a lease while it works), `committed` (the write's commit point is
//! passed), `done` (the response is stored for replay). A pending record may also hold `rid`, the
//! id of the entity the request creates or changes, recorded before its first write so a retry
//! finishes the same write. A user's records live in the user's slot; anonymous ones (register)
//! in a slot of their own.
//!
//! A record holds no secret: its fingerprint is a keyed MAC (see `crate::idempotency`), and a
//! stored response that carried a token is stored without it, with the user and token
//! generation (`tsub`, `tgen`) a replay signs a fresh token for.

use super::{Store, StoreError, StoreResult};

/// A replica's hold on an idempotency record while it executes the request.
#[derive(Debug, Clone)]
pub struct IdempotencyLease {
    pub record_key: String,
    pub token: String,
}

/// The user a stored response's token was for, and the token generation it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFor {
    pub user_id: String,
    pub generation: u64,
}

/// What to do with an incoming idempotent request.
#[derive(Debug)]
pub enum Begin {
    /// Execute it, holding the lease. `new` when the record was created by this call (not a
    /// retry resuming one), so it counts against the caller's cap.
    Proceed { lease: IdempotencyLease, new: bool },
    /// It already completed: send this status and body again (with a fresh token for
    /// `token_for`, when the stored body had one taken out).
    Replay {
        status: u16,
        body: Vec<u8>,
        token_for: Option<TokenFor>,
    },
    /// Another attempt holds a live lease.
    InFlight,
    /// The key was used before for a different request.
    Mismatch,
}

impl Store {
    /// Starts (or resumes after a crash) the request identified by `scope` and `key`.
    /// `fingerprints` are the request's fingerprint under each key of the ring, the signing
    /// key's first: a new record stores the first, an existing one matches any.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprints: &[String],
        lease_secs: u64,
        ttl_secs: u64,
    ) -> StoreResult<Begin> {
        let record_key = self.keys.idempotency(scope, key);
        let token = format!("{:032x}", rand::random::<u128>());
        let (first, others) = fingerprints
            .split_first()
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("no fingerprint")))?;
        let mut invocation = self.scripts.idempotency_begin.prepare_invoke();
        invocation
            .key(&record_key)
            .arg(&token)
            .arg(first)
            .arg(lease_secs)
            .arg(ttl_secs);
        for other in others {
            invocation.arg(other);
        }
        let reply: Vec<redis::Value> = self.eval("idempotency_begin", &invocation).await?;
        let part = |i: usize| -> Vec<u8> {
            reply
                .get(i)
                .and_then(|v| <Vec<u8> as redis::FromRedisValue>::from_redis_value_ref(v).ok())
                .unwrap_or_default()
        };
        let text = |i: usize| String::from_utf8(part(i)).unwrap_or_default();
        Ok(match text(0).as_str() {
            "proceed" => Begin::Proceed {
                lease: IdempotencyLease { record_key, token },
                new: text(1) == "new",
            },
            "in_flight" => Begin::InFlight,
            "mismatch" => Begin::Mismatch,
            "replay" => {
                let user_id = text(3);
                Begin::Replay {
                    status: text(1).parse().unwrap_or(200),
                    body: part(2),
                    token_for: (!user_id.is_empty()).then(|| TokenFor {
                        user_id,
                        generation: text(4).parse().unwrap_or(0),
                    }),
                }
            }
            other => {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "unexpected idempotency state {other:?}"
                )))
            }
        })
    }

    /// Stores the response for replay. Does nothing if the lease was taken over. `token_for`
    /// names the user whose token was taken out of `body`.
    pub async fn idempotency_finish(
        &self,
        lease: &IdempotencyLease,
        status: u16,
        body: &[u8],
        token_for: Option<&TokenFor>,
    ) -> StoreResult<()> {
        let mut invocation = self.scripts.idempotency_finish.prepare_invoke();
        invocation
            .key(&lease.record_key)
            .arg(&lease.token)
            .arg(status)
            .arg(body);
        match token_for {
            Some(t) => invocation.arg(&t.user_id).arg(t.generation),
            None => invocation.arg("").arg(""),
        };
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

    /// Counts one more on the windowed counter `counter` (a key from `Keys`) unless it is at
    /// `limit`; the window of `window_secs` starts with the first count. `limit` 0 counts
    /// nothing and always fits.
    ///
    /// # Returns
    /// `Ok(())` when it fits, else the seconds until the window ends.
    pub async fn count_in_window(
        &self,
        counter: &str,
        limit: u64,
        window_secs: u64,
    ) -> StoreResult<Result<(), u64>> {
        if limit == 0 {
            return Ok(Ok(()));
        }
        let mut invocation = self.scripts.window_count.prepare_invoke();
        invocation
            .key(counter)
            .arg(limit)
            .arg(window_secs.saturating_mul(1000));
        let (fits, ttl_ms): (u8, i64) = self.eval("window_count", &invocation).await?;
        Ok(if fits == 1 {
            Ok(())
        } else {
            Err((ttl_ms.max(0) as u64).div_ceil(1000).max(1))
        })
    }
}
