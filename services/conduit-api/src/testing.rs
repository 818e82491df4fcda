//! Helpers the workspace's test suites share; not part of the API.

use std::sync::atomic::{AtomicU64, Ordering};

/// A Redis key prefix that no other test uses, in this run or an earlier one against the same
/// Redis: `LABEL-PID-N-NANOS` from the process id, a counter within the process and the clock.
/// (A free port number, used before, can come back within one run.)
pub fn unique_prefix(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{label}-{}-{n}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_prefixes_of_one_process_differ_and_carry_their_label() {
        let (a, b) = (unique_prefix("t"), unique_prefix("t"));
        assert_ne!(a, b);
        assert!(a.starts_with("t-"), "{a}");
    }
}
