//! Retry decisions: which failed attempts are tried again, and after how long.
//!
//! Writes carry an `Idempotency-Key` and are retried with the same key, so a retry of a write
//! that was in fact executed gets the stored answer back instead of running twice.

use std::fmt;
use std::time::Duration;

/// What one HTTP attempt ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A response arrived with this status.
    Status(u16),
    /// The connection could not be made (refused, reset before a response, DNS...).
    Connect,
    /// No response within the timeout.
    Timeout,
    /// Anything else (a broken body, a protocol error).
    Other,
}

impl Attempt {
    /// True for a 2xx response.
    pub fn is_success(self) -> bool {
        matches!(self, Attempt::Status(s) if (200..300).contains(&s))
    }

    /// The error kind this attempt counts as when it is the last one: the status code
    /// (`"503"`), `"connect"`, `"timeout"` or `"other"`. `None` for a success.
    pub fn error_kind(self) -> Option<String> {
        match self {
            _ if self.is_success() => None,
            Attempt::Status(s) => Some(s.to_string()),
            Attempt::Connect => Some("connect".into()),
            Attempt::Timeout => Some("timeout".into()),
            Attempt::Other => Some("other".into()),
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Status(s) => write!(f, "HTTP {s}"),
            Attempt::Connect => f.write_str("connect error"),
            Attempt::Timeout => f.write_str("timeout"),
            Attempt::Other => f.write_str("other error"),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Stop: the attempt succeeded, or failed in a way a retry will not fix, or attempts ran out.
    Done,
    /// Try again (with the same idempotency key) after this pause.
    RetryAfter(Duration),
}

/// Bounded exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts of a write, the first one included (at least 1).
    pub max_attempts: u32,
    /// Total attempts of a read, the first one included (at least 1); 1 makes every failed
    /// read attempt a failed request, for checks that a proxy hides failures by itself.
    pub max_read_attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one.
    pub base: Duration,
    /// Upper bound of a pause.
    pub cap: Duration,
    /// How long a write answered 409 (its key still in flight, perhaps held by a replica that
    /// died mid-request until the key's lease expires) keeps being retried, whatever
    /// `max_attempts` says.
    pub in_flight_wait: Duration,
    /// Pause between retries of a write answered 409.
    pub in_flight_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_read_attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(1000),
            in_flight_wait: Duration::from_secs(12),
            in_flight_pause: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// Decide after a failed or successful attempt of a read (`is_write == false`) or write.
    /// `attempt` counts the attempts so far that were not a write's 409 (1-based); `elapsed` is
    /// the time since the first attempt started.
    ///
    /// Both retry a connect error, 502 and 503, writes up to `max_attempts`, reads up to
    /// `max_read_attempts`. Writes also retry a timeout
    /// (the key makes that safe), and a 409 (the same key is still in flight elsewhere) every
    /// `in_flight_pause` for as long as `in_flight_wait`, without using up attempts. A read that
    /// timed out is counted as failed rather than repeated, so a slow replica shows up in the
    /// numbers.
    pub fn decide(
        &self,
        is_write: bool,
        outcome: Attempt,
        attempt: u32,
        elapsed: Duration,
    ) -> Decision {
        if outcome.is_success() {
            return Decision::Done;
        }
        if is_write && outcome == Attempt::Status(409) {
            return if elapsed < self.in_flight_wait {
                Decision::RetryAfter(self.in_flight_pause)
            } else {
                Decision::Done
            };
        }
        let limit = if is_write {
            self.max_attempts
        } else {
            self.max_read_attempts
        };
        if attempt >= limit {
            return Decision::Done;
        }
        let retryable = match outcome {
            Attempt::Connect => true,
            Attempt::Status(502) | Attempt::Status(503) => true,
            Attempt::Status(409) | Attempt::Timeout => is_write,
            _ => false,
        };
        if retryable {
            Decision::RetryAfter(self.backoff(attempt))
        } else {
            Decision::Done
        }
    }

    /// Pause after failed attempt number `attempt` (1-based): base * 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(1u32 << shift).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            max_read_attempts: 4,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
            in_flight_wait: Duration::from_secs(2),
            in_flight_pause: Duration::from_millis(30),
        }
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn a_success_is_never_retried() {
        assert_eq!(
            policy().decide(true, Attempt::Status(201), 1, T0),
            Decision::Done
        );
        assert_eq!(
            policy().decide(false, Attempt::Status(200), 1, T0),
            Decision::Done
        );
    }

    #[test]
    fn connect_errors_502_and_503_are_retried_for_reads_and_writes() {
        for outcome in [Attempt::Connect, Attempt::Status(502), Attempt::Status(503)] {
            for is_write in [false, true] {
                assert!(
                    matches!(
                        policy().decide(is_write, outcome, 1, T0),
                        Decision::RetryAfter(_)
                    ),
                    "{outcome} write={is_write}"
                );
            }
        }
    }

    #[test]
    fn a_409_is_retried_only_for_writes() {
        assert!(matches!(
            policy().decide(true, Attempt::Status(409), 1, T0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            policy().decide(false, Attempt::Status(409), 1, T0),
            Decision::Done
        );
    }

    #[test]
    fn a_timeout_is_retried_only_for_writes() {
        assert!(matches!(
            policy().decide(true, Attempt::Timeout, 1, T0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            policy().decide(false, Attempt::Timeout, 1, T0),
            Decision::Done
        );
    }

    #[test]
    fn client_errors_and_500_are_not_retried() {
        for s in [400, 401, 404, 422, 500] {
            assert_eq!(
                policy().decide(true, Attempt::Status(s), 1, T0),
                Decision::Done,
                "{s}"
            );
        }
    }

    #[test]
    fn a_write_in_flight_elsewhere_is_retried_past_the_attempt_limit_until_the_wait_is_over() {
        let p = policy();
        assert!(matches!(
            p.decide(true, Attempt::Status(409), 10, Duration::from_secs(1)),
            Decision::RetryAfter(d) if d == p.in_flight_pause
        ));
        assert_eq!(
            p.decide(true, Attempt::Status(409), 10, Duration::from_secs(3)),
            Decision::Done
        );
    }

    #[test]
    fn retries_stop_at_the_attempt_limit() {
        assert!(matches!(
            policy().decide(true, Attempt::Connect, 3, T0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            policy().decide(true, Attempt::Connect, 4, T0),
            Decision::Done
        );
    }

    #[test]
    fn reads_stop_at_their_own_attempt_limit() {
        let p = RetryPolicy {
            max_read_attempts: 1,
            ..policy()
        };
        assert_eq!(p.decide(false, Attempt::Status(502), 1, T0), Decision::Done);
        assert!(matches!(
            p.decide(true, Attempt::Status(502), 1, T0),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        assert_eq!(p.backoff(1), Duration::from_millis(10));
        assert_eq!(p.backoff(2), Duration::from_millis(20));
        assert_eq!(p.backoff(3), Duration::from_millis(40));
        assert_eq!(p.backoff(4), Duration::from_millis(50));
        assert_eq!(p.backoff(40), Duration::from_millis(50));
    }

    #[test]
    fn error_kinds_name_the_status_or_the_failure() {
        assert_eq!(Attempt::Status(503).error_kind().as_deref(), Some("503"));
        assert_eq!(Attempt::Connect.error_kind().as_deref(), Some("connect"));
        assert_eq!(Attempt::Timeout.error_kind().as_deref(), Some("timeout"));
        assert_eq!(Attempt::Status(204).error_kind(), None);
    }
}
