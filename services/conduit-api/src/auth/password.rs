//! Password hashing with argon2id, run off the async worker threads.
//!
//! Hashing is deliberately slow (tens of milliseconds); doing it on an actix worker would stall
//! every other request on that worker, so it goes to the blocking pool. Each hash and each check
//! is a span of the request.

use std::sync::OnceLock;

use anyhow::Context as _;
use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use opentelemetry::trace::SpanKind;

use crate::telemetry;

/// At most this many hashes run at once (one per CPU): each holds 19 MiB while it runs, so an
/// unbounded number would let a burst of logins exhaust memory, and more than one per CPU would
/// not finish any sooner.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Runs `work` on the blocking pool once a hashing slot is free.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .context("hashing slots closed")?;
    actix_web::rt::task::spawn_blocking(work)
        .await
        .context("password task failed")
}

/// Hashes `password` into a PHC string (argon2id, default parameters, random salt).
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    let _span = telemetry::child("password.hash", SpanKind::Internal, Vec::new);
    off_the_workers(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

/// Checks `password` against a stored PHC string. A malformed stored hash counts as a mismatch.
pub async fn verify_password(password: String, phc: String) -> anyhow::Result<bool> {
    let _span = telemetry::child("password.verify", SpanKind::Internal, Vec::new);
    off_the_workers(move || {
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let phc = hash_password("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse".into(), phc.clone())
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), phc).await.unwrap());
    }

    #[actix_web::test]
    async fn a_garbled_stored_hash_is_a_mismatch_not_an_error() {
        assert!(!verify_password("x".into(), "not a hash".into())
            .await
            .unwrap());
    }
}
