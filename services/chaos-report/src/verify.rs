//! One phase's verdict: the load run's failures against what the phase allows, and every
//! acknowledged write against a dump of Redis.
//!
//! The dump is the output of the Lua script in `scripts/chaos-dump.lua` (one record per line,
//! fields separated by tabs):
//!
//! | record | fields |
//! |---|---|
//! | `U` | lowercase username, user id |
//! | `S` | slug, article id |
//! | `A` | article id, slug, author id, title |
//! | `C` | comment id, article id, author id, body |
//! | `F` | article id, id of a user who favorited it |
//! | `W` | user id, id of a user they follow |
//!
//! What counts as found, per kind of acknowledged write:
//! - `user`: the username maps to an id;
//! - `follow`: the follower follows the profile;
//! - `article`: the slug maps to an article hash that is listed in the article index;
//! - `comment`: the comment id is listed under the article and its hash exists;
//! - `favorite` / `unfavorite`: only the last acknowledged one per (user, article) is checked,
//!   since it decides the final state: favorited after `favorite`, not after `unfavorite`. A
//!   toggle logged with `acked: false` after it (no answer, or a 5xx) may have run: then a state
//!   other than that one counts as a write whose answer never reached the client, not as lost.
//!
//! Duplicates: two articles by one author with the same title, or two comments by one author
//! on one article with the same body. The load generator makes every title unique in a run
//! and comment bodies are random, so either means a write was executed twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Arguments of `chaos-report verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the phase, as printed in the table.
    #[arg(long)]
    pub phase: String,
    /// The load run's `--json` summary.
    #[arg(long)]
    pub summary: PathBuf,
    /// The load run's `--log-writes` file.
    #[arg(long)]
    pub writes: PathBuf,
    /// The load run's `--timeline` file (needed with --failures-from/--failures-until).
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Redis dump made after the phase (see the module docs).
    #[arg(long)]
    pub dump: PathBuf,
    /// Kinds of failed requests the phase tolerates (e.g. `503`); none by default.
    #[arg(long, value_delimiter = ',')]
    pub allow_failures: Vec<String>,
    /// Failures may only happen from this time on (Unix milliseconds).
    #[arg(long, requires = "failures_until")]
    pub failures_from: Option<u64>,
    /// Failures may only happen until this time (Unix milliseconds).
    #[arg(long, requires = "failures_from")]
    pub failures_until: Option<u64>,
    /// Measured recovery time in milliseconds, shown in the table.
    #[arg(long)]
    pub recovery_ms: Option<u64>,
    /// Longest recovery time allowed, in milliseconds.
    #[arg(long)]
    pub max_recovery_ms: Option<u64>,
    /// Free text shown under the table (repeatable).
    #[arg(long)]
    pub note: Vec<String>,
    /// A check the script made itself that failed (repeatable); fails the phase.
    #[arg(long)]
    pub problem: Vec<String>,
}

/// The parts of the load summary this needs.
#[derive(Debug, Deserialize)]
pub struct LoadSummary {
    pub run_id: String,
    pub requests: Requests,
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// [sent, gave up] of each failed request (Unix ms), when the load run recorded them.
    #[serde(default)]
    pub failure_spans_ms: Vec<(u64, u64)>,
    pub writes: Writes,
    #[serde(default)]
    pub by_replica: BTreeMap<String, u64>,
    #[serde(default)]
    pub replicas_seen: usize,
    #[serde(default)]
    pub interrupted: bool,
}

#[derive(Debug, Deserialize)]
pub struct Requests {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub retries: u64,
}

#[derive(Debug, Deserialize)]
pub struct Writes {
    pub acknowledged: u64,
    #[serde(default)]
    pub replayed: u64,
    #[serde(default)]
    pub failed: u64,
}

/// One line of the write log.
#[derive(Debug, Clone, Deserialize)]
pub struct WriteRecord {
    pub kind: String,
    pub user: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub comment_id: Option<Value>,
    #[serde(default)]
    pub profile: Option<String>,
    /// False for a toggle the client never learned the outcome of.
    #[serde(default = "answered")]
    pub acked: bool,
}

fn answered() -> bool {
    true
}

/// One line of the timeline (only what is checked here).
#[derive(Debug, Clone, Deserialize)]
pub struct TimelineLine {
    pub unix_ms: u64,
    #[serde(default)]
    pub failed: u64,
}

/// What Redis holds, from the dump.
#[derive(Debug, Default)]
pub struct Dump {
    users: HashMap<String, String>,
    slugs: HashMap<String, String>,
    /// id -> (author, title)
    articles: HashMap<String, (String, String)>,
    /// id -> (article, author, body)
    comments: HashMap<String, (String, String, String)>,
    favorites: HashSet<(String, String)>,
    following: HashSet<(String, String)>,
}

impl Dump {
    /// Parses the dump's lines; unknown records are an error (the script and this drifted).
    pub fn parse(text: &str) -> Result<Dump> {
        let mut dump = Dump::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            let want = match f[0] {
                "U" | "S" | "F" | "W" => 3,
                "A" | "C" => 5,
                other => anyhow::bail!("dump line {}: unknown record {other:?}", n + 1),
            };
            anyhow::ensure!(
                f.len() >= want,
                "dump line {}: {} fields, want {want}",
                n + 1,
                f.len()
            );
            let s = |i: usize| f[i].to_string();
            match f[0] {
                "U" => {
                    dump.users.insert(s(1), s(2));
                }
                "S" => {
                    dump.slugs.insert(s(1), s(2));
                }
                "A" => {
                    // A hash that is listed but gone has no author: not found.
                    if !f[3].is_empty() {
                        dump.articles.insert(s(1), (s(3), s(4)));
                    }
                }
                "C" => {
                    if !f[3].is_empty() {
                        dump.comments.insert(s(1), (s(2), s(3), f[4..].join("\t")));
                    }
                }
                "F" => {
                    dump.favorites.insert((s(1), s(2)));
                }
                _ => {
                    dump.following.insert((s(1), s(2)));
                }
            }
        }
        Ok(dump)
    }
}

/// Outcome of comparing a write log with a dump.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct WriteCheck {
    /// Acknowledged writes whose outcome was checked.
    pub checked: u64,
    pub found: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Articles and comments by this run's users that no acknowledgement mentions (a write
    /// executed whose answer never arrived: allowed, the client could not know).
    pub unacknowledged: u64,
    /// Up to 10 descriptions of lost or duplicated writes.
    pub details: Vec<String>,
}

fn detail(out: &mut WriteCheck, text: String) {
    if out.details.len() < 10 {
        out.details.push(text);
    }
}

/// Compares the acknowledged writes of one run (users named `l<run_id>x...`) with the dump.
pub fn check_writes(run_id: &str, writes: &[WriteRecord], dump: &Dump) -> WriteCheck {
    let mut out = WriteCheck::default();
    let mut acked = check_acknowledged(&mut out, writes, dump);
    check_favorites(&mut out, std::mem::take(&mut acked.last_favorite), dump);
    let prefix = format!("l{run_id}x");
    let run_users: HashSet<&str> = dump
        .users
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(_, id)| id.as_str())
        .collect();
    count_unacknowledged_and_duplicates(&mut out, dump, &run_users, &acked);
    out
}

/// What the acknowledgements mention, for the checks after the first pass.
struct Acknowledged {
    /// Ids of acknowledged articles.
    articles: HashSet<String>,
    /// Ids of acknowledged comments (a sequence of their own: an article and a comment may
    /// share an id).
    comments: HashSet<String>,
    /// (user, slug) -> the state the acknowledged toggles left.
    last_favorite: HashMap<(String, String), Toggles>,
}

/// The favorite toggles of one user on one article.
#[derive(Debug, Default, Clone, Copy)]
struct Toggles {
    /// The last acknowledged one: favorite (true) or unfavorite (false); none means the
    /// article was never favorited, as the run's users are new.
    last_acked: Option<bool>,
    /// An unanswered toggle came after it, so either state is possible.
    pending: bool,
}

/// The user id of a username in the dump.
fn user_id(dump: &Dump, name: &str) -> Option<String> {
    dump.users.get(&name.to_lowercase()).cloned()
}

/// Checks every acknowledged user, follow, article and comment against the dump; favorites
/// are only collected, since only the last one per user and article counts.
fn check_acknowledged(out: &mut WriteCheck, writes: &[WriteRecord], dump: &Dump) -> Acknowledged {
    let mut acked = Acknowledged {
        articles: HashSet::new(),
        comments: HashSet::new(),
        last_favorite: HashMap::new(),
    };
    for w in writes {
        let toggle = matches!(w.kind.as_str(), "favorite" | "unfavorite");
        if !w.acked && !toggle {
            continue;
        }
        let slug = w.slug.clone().unwrap_or_default();
        let found = match w.kind.as_str() {
            "user" => user_id(dump, &w.user).is_some(),
            "follow" => {
                let profile = w.profile.clone().unwrap_or_default();
                match (user_id(dump, &w.user), user_id(dump, &profile)) {
                    (Some(a), Some(b)) => dump.following.contains(&(a, b)),
                    _ => false,
                }
            }
            "article" => match dump.slugs.get(&slug) {
                Some(id) => {
                    acked.articles.insert(id.clone());
                    dump.articles.contains_key(id)
                }
                None => false,
            },
            "comment" => {
                let cid = match &w.comment_id {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                };
                acked.comments.insert(cid.clone());
                match (dump.comments.get(&cid), dump.slugs.get(&slug)) {
                    (Some((article, _, _)), Some(id)) => article == id,
                    _ => false,
                }
            }
            "favorite" | "unfavorite" => {
                let t = acked
                    .last_favorite
                    .entry((w.user.clone(), slug))
                    .or_default();
                if w.acked {
                    *t = Toggles {
                        last_acked: Some(w.kind == "favorite"),
                        pending: false,
                    };
                } else {
                    t.pending = true;
                }
                continue;
            }
            _ => continue,
        };
        out.checked += 1;
        if found {
            out.found += 1;
        } else {
            out.lost += 1;
            detail(
                out,
                format!("lost {} by {} {}", w.kind, w.user, slug)
                    .trim()
                    .to_string(),
            );
        }
    }
    acked
}

/// Each (user, article) must be in the state of its last acknowledged favorite or unfavorite,
/// unless an unanswered toggle came after it.
fn check_favorites(
    out: &mut WriteCheck,
    last_favorite: HashMap<(String, String), Toggles>,
    dump: &Dump,
) {
    let mut favorites: Vec<_> = last_favorite.into_iter().collect();
    favorites.sort_by(|a, b| a.0.cmp(&b.0));
    for ((user, slug), toggles) in favorites {
        let on = toggles.last_acked.unwrap_or(false);
        let state = match (user_id(dump, &user), dump.slugs.get(&slug)) {
            (Some(u), Some(a)) => Some(dump.favorites.contains(&(a.clone(), u))),
            _ => None,
        };
        if toggles.pending && state.is_some() && state != Some(on) {
            out.unacknowledged += 1;
            continue;
        }
        if toggles.last_acked.is_none() && state == Some(false) {
            // Only unanswered toggles, none of which ran: nothing acknowledged to check.
            continue;
        }
        out.checked += 1;
        if state == Some(on) {
            out.found += 1;
        } else {
            out.lost += 1;
            let what = if on { "favorite" } else { "unfavorite" };
            detail(out, format!("lost {what} by {user} of {slug}"));
        }
    }
}

/// Articles and comments of the run's users that no acknowledgement mentions, and the same
/// article (author, title) or comment (article, author, body) stored more than once.
fn count_unacknowledged_and_duplicates(
    out: &mut WriteCheck,
    dump: &Dump,
    run_users: &HashSet<&str>,
    acked: &Acknowledged,
) {
    let mut titles: HashMap<(&str, &str), u64> = HashMap::new();
    for (id, (author, title)) in &dump.articles {
        if run_users.contains(author.as_str()) {
            *titles.entry((author, title)).or_default() += 1;
            if !acked.articles.contains(id) {
                out.unacknowledged += 1;
            }
        }
    }
    let mut bodies: HashMap<(&str, &str, &str), u64> = HashMap::new();
    for (id, (article, author, body)) in &dump.comments {
        if run_users.contains(author.as_str()) {
            *bodies.entry((article, author, body)).or_default() += 1;
            if !acked.comments.contains(id) {
                out.unacknowledged += 1;
            }
        }
    }
    let mut dups: Vec<String> = Vec::new();
    for ((author, title), n) in titles {
        if n > 1 {
            out.duplicates += n - 1;
            dups.push(format!(
                "article {title:?} by user {author} stored {n} times"
            ));
        }
    }
    for ((article, author, body), n) in bodies {
        if n > 1 {
            out.duplicates += n - 1;
            dups.push(format!(
                "comment {body:?} by user {author} on article {article} stored {n} times"
            ));
        }
    }
    dups.sort();
    for d in dups {
        detail(out, d);
    }
    // Duplicates are executed twice, not unacknowledged.
    out.unacknowledged = out.unacknowledged.saturating_sub(out.duplicates);
}

/// One row of the phase table.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct Row {
    pub phase: String,
    pub run_id: String,
    pub sent: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub retries: u64,
    pub acked: u64,
    pub replayed: u64,
    pub checked: u64,
    pub found: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unacknowledged: u64,
    pub replicas_seen: usize,
    pub recovery_ms: Option<u64>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
    /// Every requirement of the phase held.
    pub passed: bool,
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_json_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    read(path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), n + 1))
        })
        .collect()
}

/// Runs `chaos-report verify`.
pub fn run(args: &Args) -> Result<Row> {
    let summary: LoadSummary = serde_json::from_str(&read(&args.summary)?)
        .with_context(|| format!("parsing {}", args.summary.display()))?;
    let writes: Vec<WriteRecord> = read_json_lines(&args.writes)?;
    let dump = Dump::parse(&read(&args.dump)?)?;
    let timeline: Vec<TimelineLine> = match &args.timeline {
        Some(path) => read_json_lines(path)?,
        None => Vec::new(),
    };
    let check = check_writes(&summary.run_id, &writes, &dump);
    let window = args.failures_from.zip(args.failures_until);
    Ok(judge(args, &summary, &timeline, window, check))
}

/// Applies the phase's requirements.
pub fn judge(
    args: &Args,
    summary: &LoadSummary,
    timeline: &[TimelineLine],
    window: Option<(u64, u64)>,
    check: WriteCheck,
) -> Row {
    let mut problems = args.problem.clone();
    for (kind, n) in &summary.errors {
        if !args.allow_failures.contains(kind) {
            problems.push(format!("{n} requests failed with {kind}"));
        }
    }
    let by_kind: u64 = summary.errors.values().sum();
    if summary.requests.failed > by_kind {
        problems.push(format!(
            "{} failed requests without a kind",
            summary.requests.failed - by_kind
        ));
    }
    if let Some((start, end)) = window {
        let outside: u64 = if summary.failure_spans_ms.len() as u64 == summary.requests.failed {
            // Each failed request against the window: it must have been under way during it.
            summary
                .failure_spans_ms
                .iter()
                .filter(|(sent, gave_up)| *sent > end || *gave_up < start)
                .count() as u64
        } else {
            // Without the spans, by the second it failed in (a timeline line covers the second
            // before `unix_ms`).
            timeline
                .iter()
                .filter(|t| t.failed > 0 && (t.unix_ms < start || t.unix_ms > end + 1000))
                .map(|t| t.failed)
                .sum()
        };
        if outside > 0 {
            problems.push(format!(
                "{outside} requests failed outside the outage window"
            ));
        }
    }
    if check.lost > 0 {
        problems.push(format!("{} acknowledged writes lost", check.lost));
    }
    if check.duplicates > 0 {
        problems.push(format!("{} writes stored twice", check.duplicates));
    }
    if check.checked == 0 {
        problems.push("no acknowledged write to check".into());
    }
    if summary.interrupted {
        problems.push("the load run was interrupted".into());
    }
    if let (Some(got), Some(max)) = (args.recovery_ms, args.max_recovery_ms) {
        if got > max {
            problems.push(format!("recovery took {got} ms, more than {max} ms"));
        }
    }
    for d in &check.details {
        problems.push(d.clone());
    }
    let ok = problems.is_empty();
    Row {
        phase: args.phase.clone(),
        run_id: summary.run_id.clone(),
        sent: summary.requests.total,
        succeeded: summary.requests.ok,
        failed: summary.requests.failed,
        errors: summary.errors.clone(),
        retries: summary.requests.retries,
        acked: summary.writes.acknowledged,
        replayed: summary.writes.replayed,
        checked: check.checked,
        found: check.found,
        lost: check.lost,
        duplicates: check.duplicates,
        unacknowledged: check.unacknowledged,
        replicas_seen: summary.replicas_seen,
        recovery_ms: args.recovery_ms,
        notes: args.note.clone(),
        problems,
        passed: ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump() -> Dump {
        Dump::parse(
            "U\tlrx1\t1\nU\tlrx2\t2\nU\tother\t9\n\
             S\ta-1\t10\nS\ta-2\t11\n\
             A\t10\ta-1\t1\tTitle one\nA\t11\ta-2\t2\tTitle two\n\
             C\t100\t10\t2\tnice words.\n\
             F\t10\t2\nW\t1\t2\n",
        )
        .unwrap()
    }

    fn w(kind: &str, user: &str, slug: Option<&str>) -> WriteRecord {
        WriteRecord {
            kind: kind.into(),
            user: user.into(),
            slug: slug.map(str::to_string),
            comment_id: None,
            profile: None,
            acked: true,
        }
    }

    fn all_found() -> Vec<WriteRecord> {
        let mut follow = w("follow", "lrx1", None);
        follow.profile = Some("lrx2".into());
        let mut comment = w("comment", "lrx2", Some("a-1"));
        comment.comment_id = Some(serde_json::json!(100));
        vec![
            w("user", "lrx1", None),
            w("user", "lrx2", None),
            follow,
            w("article", "lrx1", Some("a-1")),
            w("article", "lrx2", Some("a-2")),
            comment,
            w("favorite", "lrx2", Some("a-1")),
            w("favorite", "lrx1", Some("a-2")),
            w("unfavorite", "lrx1", Some("a-2")),
        ]
    }

    #[test]
    fn every_acknowledged_write_present_is_found_and_nothing_else_is_reported() {
        let check = check_writes("r", &all_found(), &dump());
        assert_eq!(check.checked, 8);
        assert_eq!(check.found, 8);
        assert_eq!(check.lost, 0);
        assert_eq!(check.duplicates, 0);
        assert_eq!(check.unacknowledged, 0);
    }

    #[test]
    fn a_missing_comment_and_a_wrong_favorite_state_count_as_lost() {
        let mut writes = all_found();
        let mut ghost = w("comment", "lrx1", Some("a-2"));
        ghost.comment_id = Some(serde_json::json!("101"));
        writes.push(ghost);
        writes.push(w("favorite", "lrx1", Some("a-1")));
        let check = check_writes("r", &writes, &dump());
        assert_eq!(check.lost, 2, "{:?}", check.details);
        assert!(check.details.iter().any(|d| d.contains("comment")));
    }

    #[test]
    fn an_unanswered_toggle_after_the_last_acknowledged_one_leaves_the_state_open() {
        // lrx2 favorited a-1 (stored); an unfavorite without an answer follows.
        let mut writes = all_found();
        let mut unanswered = w("unfavorite", "lrx2", Some("a-1"));
        unanswered.acked = false;
        writes.push(unanswered);
        let mut d = dump();
        let check = check_writes("r", &writes, &d);
        assert_eq!(
            (check.lost, check.unacknowledged),
            (0, 0),
            "{:?}",
            check.details
        );
        // It did run: the favorite is gone, which is allowed, not lost.
        d.favorites.clear();
        let check = check_writes("r", &writes, &d);
        assert_eq!(
            (check.lost, check.unacknowledged),
            (0, 1),
            "{:?}",
            check.details
        );
        // Without the unanswered toggle the same dump is a lost favorite.
        let check = check_writes("r", &all_found(), &d);
        assert_eq!(check.lost, 1, "{:?}", check.details);
    }

    #[test]
    fn the_same_title_twice_by_one_author_is_a_duplicate() {
        let mut d = dump();
        d.articles
            .insert("12".into(), ("1".into(), "Title one".into()));
        let check = check_writes("r", &all_found(), &d);
        assert_eq!(check.duplicates, 1);
        assert_eq!(check.unacknowledged, 0);
    }

    /// A phase's arguments that allow 503s, with no window and no recovery limit.
    fn args_allowing_503() -> Args {
        Args {
            phase: "p".into(),
            summary: PathBuf::new(),
            writes: PathBuf::new(),
            timeline: None,
            dump: PathBuf::new(),
            allow_failures: vec!["503".into()],
            failures_from: None,
            failures_until: None,
            recovery_ms: None,
            max_recovery_ms: None,
            note: vec![],
            problem: vec![],
        }
    }

    #[test]
    fn failures_of_an_allowed_kind_inside_the_window_pass_and_others_fail() {
        let summary: LoadSummary = serde_json::from_value(serde_json::json!({
            "run_id": "r",
            "requests": {"total": 10, "ok": 8, "failed": 2, "retries": 3},
            "errors": {"503": 2},
            "writes": {"acknowledged": 4}
        }))
        .unwrap();
        let timeline = vec![TimelineLine {
            unix_ms: 5_000,
            failed: 2,
        }];
        let mut args = args_allowing_503();
        args.recovery_ms = Some(300);
        args.max_recovery_ms = Some(2000);
        let check = || check_writes("r", &all_found(), &dump());
        let row = judge(&args, &summary, &timeline, Some((4_000, 6_000)), check());
        assert!(row.passed, "{:?}", row.problems);
        let row = judge(&args, &summary, &timeline, Some((10_000, 12_000)), check());
        assert!(!row.passed);
        args.allow_failures.clear();
        let row = judge(&args, &summary, &timeline, None, check());
        assert!(row.problems[0].contains("503"), "{:?}", row.problems);
        args.allow_failures = vec!["503".into()];
        args.recovery_ms = Some(2500);
        let row = judge(&args, &summary, &timeline, None, check());
        assert!(!row.passed);
    }

    #[test]
    fn a_request_under_way_during_the_window_may_fail_after_it_but_not_one_sent_after_it() {
        let summary = |spans: serde_json::Value| -> LoadSummary {
            serde_json::from_value(serde_json::json!({
                "run_id": "r",
                "requests": {"total": 10, "ok": 8, "failed": 2, "retries": 3},
                "errors": {"503": 2},
                "failure_spans_ms": spans,
                "writes": {"acknowledged": 4}
            }))
            .unwrap()
        };
        let args = args_allowing_503();
        // The timeline alone would put both failures 4 s after the window.
        let timeline = vec![TimelineLine {
            unix_ms: 10_000,
            failed: 2,
        }];
        let window = Some((4_000, 6_000));
        let check = || check_writes("r", &all_found(), &dump());
        // Sent just before the fault, and inside the window; both gave up at 9.9 s.
        let under_way = summary(serde_json::json!([[3_900, 9_900], [5_500, 9_900]]));
        let row = judge(&args, &under_way, &timeline, window, check());
        assert!(row.passed, "{:?}", row.problems);
        // One sent after the window, one that was over before it.
        let outside = summary(serde_json::json!([[6_500, 9_900], [1_000, 3_000]]));
        let row = judge(&args, &outside, &timeline, window, check());
        assert!(
            row.problems
                .iter()
                .any(|p| p.starts_with("2 requests failed outside")),
            "{:?}",
            row.problems
        );
    }
}
