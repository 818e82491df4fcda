//! `--log-writes FILE`: one JSON line per acknowledged write, so another tool can compare what
//! the API acknowledged with what the data store holds.
//!
//! A favorite or unfavorite that ended without an answer (no response, or a 5xx) is logged too,
//! with `acked: false`: it may or may not have been executed, so it leaves the final state of
//! that (user, article) undecided until a later acknowledged toggle.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// One acknowledged write.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WriteRecord {
    /// Milliseconds since the Unix epoch when the acknowledgement arrived.
    pub ts_ms: u64,
    /// `user`, `follow`, `article`, `favorite`, `unfavorite` or `comment`.
    pub kind: &'static str,
    /// The account that made the write.
    pub user: String,
    /// The `Idempotency-Key` the write carried on every attempt.
    pub idempotency_key: String,
    /// Status of the acknowledgement (2xx), or of the last attempt (0 when none answered).
    pub status: u16,
    /// False for a toggle whose outcome the client never learned (see the module docs).
    pub acked: bool,
    /// The acknowledgement was a replay of an earlier execution.
    pub replayed: bool,
    /// Attempts it took.
    pub attempts: u32,
    /// Article slug (article, favorite, unfavorite, comment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Comment id as the API returned it (comment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<Value>,
    /// Followed username (follow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl WriteRecord {
    /// A record stamped with the current time; ids are filled in by the caller.
    pub fn new(
        kind: &'static str,
        user: &str,
        key: &str,
        status: u16,
        replayed: bool,
        attempts: u32,
    ) -> Self {
        WriteRecord {
            ts_ms: now_ms(),
            kind,
            user: user.to_string(),
            idempotency_key: key.to_string(),
            status,
            acked: (200..300).contains(&status),
            replayed,
            attempts,
            slug: None,
            comment_id: None,
            profile: None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JSON-lines file.
pub struct WriteLog {
    out: Mutex<BufWriter<File>>,
}

impl WriteLog {
    /// Create (truncate) the file.
    pub fn create(path: &Path) -> std::io::Result<WriteLog> {
        Ok(WriteLog {
            out: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Append one record.
    pub fn append(&self, rec: &WriteRecord) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let res = serde_json::to_writer(&mut *out, rec).map_err(std::io::Error::from);
        if let Err(e) = res.and_then(|_| out.write_all(b"\n")) {
            log::warn!("writing the write log failed: {e}");
        }
    }

    /// Flush buffered lines to the file.
    pub fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.flush() {
            log::warn!("flushing the write log failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_is_one_json_line_without_empty_ids() {
        let path =
            std::env::temp_dir().join(format!("conduit-load-wl-{}.jsonl", std::process::id()));
        let log = WriteLog::create(&path).unwrap();
        let mut a = WriteRecord::new("article", "u1", "k1", 201, false, 1);
        a.slug = Some("s1".into());
        let mut c = WriteRecord::new("comment", "u1", "k2", 200, true, 2);
        c.slug = Some("s1".into());
        c.comment_id = Some(Value::from(7));
        log.append(&a);
        log.append(&c);
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "article");
        assert_eq!(lines[0]["idempotency_key"], "k1");
        assert!(lines[0].get("comment_id").is_none());
        assert_eq!(lines[1]["comment_id"], 7);
        assert_eq!(lines[1]["replayed"], true);
    }
}
