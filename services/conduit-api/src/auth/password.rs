//! Password hashing with argon2id, run off the async worker threads, with a bounded queue.
//!
//! Hashing is deliberately slow (tens of milliseconds); doing it on an actix worker would stall
//! every other request on that worker, so it goes to the blocking pool. Registration, login and
//! password changes all hash, which makes them a cheap way to burn a replica's CPU: a bounded
//! number of hashes run at a time (by default on half the CPUs, so a flood leaves the other half
//! to every other request, and on threads of lower priority, so they yield the CPU to requests
//! when both want it), a bounded number wait, and a request beyond those is answered 503
//! with `Retry-After` at once instead of waiting in a queue that only grows. Each hash and
//! each check is a span of the request.

use anyhow::Context as _;
use argon2::password_hash::{phc::PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use opentelemetry::trace::SpanKind;
use tokio::sync::{OnceCell, Semaphore};

use crate::error::ApiError;
use crate::telemetry;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot is taken and the queue is full.
    #[error("password hashing is at capacity")]
    Busy,
    /// The hash failed, or its task did.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<PasswordError> for ApiError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Busy => ApiError::Busy("password hashing"),
            PasswordError::Failed(cause) => ApiError::Internal(cause),
        }
    }
}

/// The replica's password hashing: shared by its workers, so the bounds hold per process.
pub struct Passwords {
    /// One permit per hash that may run: each holds a CPU and 19 MiB while it runs.
    running: Semaphore,
    /// Running plus waiting: a request that gets no permit here is refused at once.
    admitted: Semaphore,
    /// A hash of a random password, checked when a login names no account, so that failure
    /// takes as long as a wrong password.
    dummy: OnceCell<String>,
}

impl Passwords {
    /// Hashing with `hashers` hashes at once (at least one) and at most `queue` waiting.
    pub fn new(hashers: usize, queue: usize) -> Self {
        let hashers = hashers.max(1);
        Self {
            running: Semaphore::new(hashers),
            admitted: Semaphore::new(hashers + queue),
            dummy: OnceCell::new(),
        }
    }

    /// Runs `work` on the blocking pool once a slot is free; refuses when the queue is full.
    async fn off_the_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _admitted = self
            .admitted
            .try_acquire()
            .map_err(|_| PasswordError::Busy)?;
        let _slot = self
            .running
            .acquire()
            .await
            .context("hashing slots closed")?;
        Ok(actix_web::rt::task::spawn_blocking(move || {
            yield_to_requests();
            work()
        })
        .await
        .context("password task failed")?)
    }

    /// Hashes `password` into a PHC string (argon2id, default parameters, random salt).
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _span = telemetry::child("password.hash", SpanKind::Internal, Vec::new);
        self.off_the_workers(move || hash_now(&password)).await?
    }

    /// Checks `password` against a stored PHC string. A malformed stored hash counts as a
    /// mismatch.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, PasswordError> {
        let _span = telemetry::child("password.verify", SpanKind::Internal, Vec::new);
        self.off_the_workers(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
    }

    /// The dummy hash, made on the blocking pool the first time it is needed. The replica asks
    /// for it at start-up, so no login waits for it.
    pub async fn dummy_hash(&self) -> Result<&str, PasswordError> {
        self.dummy
            .get_or_try_init(|| async {
                let random = format!("{:x}", rand::random::<u128>());
                self.off_the_workers(move || hash_now(&random)).await?
            })
            .await
            .map(String::as_str)
    }
}

/// The niceness of the threads that hash: a hash yields its CPU to request handling whenever
/// both want it, so a flood of logins takes the CPU the other requests leave, not theirs.
const HASHING_NICENESS: i32 = 10;

/// Lowers the priority of the calling (blocking-pool) thread once; a thread's niceness stays
/// with it for its life. Besides hashing, the blocking pool runs only the span flush at
/// shutdown, which may as well run at the lower priority.
fn yield_to_requests() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|lowered| {
        if !lowered.replace(true) {
            lower_thread_priority();
        }
    });
}

#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours; on Linux
    // PRIO_PROCESS with a thread id sets that thread's niceness alone.
    let outcome = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, HASHING_NICENESS)
    };
    if outcome != 0 {
        log::debug!(
            "password hashing keeps its thread priority error={}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {
    let _ = HASHING_NICENESS;
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Failed(anyhow::anyhow!("hashing failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let passwords = Passwords::new(2, 4);
        let phc = passwords.hash("correct horse".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(passwords
            .verify("correct horse".into(), phc.clone())
            .await
            .unwrap());
        assert!(!passwords.verify("wrong horse".into(), phc).await.unwrap());
    }

    #[actix_web::test]
    async fn a_garbled_stored_hash_is_a_mismatch_not_an_error() {
        let passwords = Passwords::new(2, 4);
        assert!(!passwords
            .verify("x".into(), "not a hash".into())
            .await
            .unwrap());
    }

    #[actix_web::test]
    async fn the_dummy_hash_is_made_once_and_matches_nothing_given() {
        let passwords = Passwords::new(2, 4);
        let first = passwords.dummy_hash().await.unwrap().to_owned();
        assert_eq!(passwords.dummy_hash().await.unwrap(), first);
        assert!(!passwords.verify(String::new(), first).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[actix_web::test]
    async fn hashes_run_on_threads_that_yield_to_requests() {
        fn niceness() -> i32 {
            // SAFETY: plain integer arguments; see lower_thread_priority.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        let passwords = Passwords::new(1, 0);
        let base = niceness();
        let in_hash = passwords.off_the_workers(niceness).await.unwrap();
        assert!(
            in_hash >= (base + HASHING_NICENESS).min(19),
            "hashing thread niceness {in_hash}, request threads {base}"
        );
        assert_eq!(niceness(), base, "the request thread kept its priority");
    }

    #[actix_web::test]
    async fn beyond_the_running_and_waiting_hashes_a_request_is_refused_at_once() {
        // Arrange: no queue, and every running slot taken.
        let passwords = Passwords::new(1, 0);
        let held = passwords
            .admitted
            .try_acquire_many(passwords.admitted.available_permits() as u32)
            .unwrap();

        // Act
        let refused = passwords.hash("one more".into()).await;

        // Assert
        assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
        drop(held);
        assert!(passwords.hash("now there is room".into()).await.is_ok());
    }
}
