//! The phase table: one line per phase, then the notes and problems of each phase.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::verify::Row;

/// Reads rows written by `chaos-report verify`, one JSON object per line.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("parsing a row"))
        .collect()
}

const HEADERS: [&str; 14] = [
    "phase",
    "sent",
    "ok",
    "failed",
    "failed by kind",
    "retries",
    "acked writes",
    "checked",
    "in redis",
    "lost",
    "dup",
    "replicas",
    "recovery",
    "result",
];

/// Renders the rows as an aligned text table (numbers right-aligned).
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let kinds = if r.errors.is_empty() {
                "-".to_string()
            } else {
                r.errors
                    .iter()
                    .map(|(k, n)| format!("{k}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            vec![
                r.phase.clone(),
                r.sent.to_string(),
                r.succeeded.to_string(),
                r.failed.to_string(),
                kinds,
                r.retries.to_string(),
                r.acked.to_string(),
                r.checked.to_string(),
                r.found.to_string(),
                r.lost.to_string(),
                r.duplicates.to_string(),
                r.replicas_seen.to_string(),
                r.recovery_ms
                    .map_or("-".to_string(), |ms| format!("{ms} ms")),
                if r.passed { "PASS" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, row: &[String]| {
        let mut parts = Vec::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            // The phase name and the kinds read left to right; numbers line up on the right.
            if matches!(i, 0 | 4 | 13) {
                parts.push(format!("{c:<w$}"));
            } else {
                parts.push(format!("{c:>w$}"));
            }
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    let mut out = String::new();
    let headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    line(&mut out, &headers);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule);
    for row in &cells {
        line(&mut out, row);
    }
    for r in rows {
        for note in &r.notes {
            let _ = writeln!(out, "{}: {note}", r.phase);
        }
        if r.unacknowledged > 0 {
            let _ = writeln!(
                out,
                "{}: {} writes stored whose answer never reached the client (allowed)",
                r.phase, r.unacknowledged
            );
        }
        for p in &r.problems {
            let _ = writeln!(out, "{}: FAIL: {p}", r.phase);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(phase: &str, passed: bool) -> Row {
        Row {
            phase: phase.into(),
            run_id: "r".into(),
            sent: 1234,
            succeeded: 1230,
            failed: 4,
            errors: BTreeMap::from([("503".to_string(), 4)]),
            retries: 17,
            acked: 300,
            replayed: 2,
            checked: 250,
            found: 250,
            lost: 0,
            duplicates: 0,
            unacknowledged: 0,
            replicas_seen: 3,
            recovery_ms: Some(140),
            notes: vec!["redis down 3 s".into()],
            problems: if passed {
                vec![]
            } else {
                vec!["1 acknowledged writes lost".into()]
            },
            passed,
        }
    }

    #[test]
    fn the_table_has_a_line_per_phase_with_its_verdict_and_lists_problems() {
        let text = render(&[row("5 redis restart", true), row("1 kill", false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("phase"));
        assert!(lines[2].contains("503:4") && lines[2].ends_with("PASS"));
        assert!(lines[3].starts_with("1 kill") && lines[3].ends_with("FAIL"));
        assert!(lines[2].contains("140 ms"));
        assert!(text.contains("1 kill: FAIL: 1 acknowledged writes lost"));
        assert!(text.contains("5 redis restart: redis down 3 s"));
    }
}
