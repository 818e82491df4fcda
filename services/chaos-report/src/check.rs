//! `chaos-report check`: walks every key under a prefix (one Redis, or every primary of a
//! cluster) and checks that the indexes, the entities and the counts agree.
//!
//! Key names come from `conduit_api::store::Keys` only: keys found by `SCAN` are read back with
//! [`Keys::parse`], and every key an entity should be in is built with the same builders the API
//! uses.
//!
//! What is allowed, following docs/DATA_MODEL.md ("Readers skip feed entries whose article is
//! gone"; claims of a dead register or rename are taken over later):
//! - a feed entry whose article is gone (counted as `stale_feed_entries`);
//! - a favorite of a deleted article while the user is still in its `fans_gone` set (the fan-out
//!   has not reached them yet; counted as `pending_unfavorites`);
//! - a claim whose owner does not exist or no longer holds the value (counted as `stale_claims`);
//! - a tag index entry of a tag an update dropped, listed in the article's `tags_gone` until the
//!   update (or its retry, or the next update) has taken it out (`pending_tag_removals`).
//!
//! Everything else that disagrees is a violation. The check is meant for a quiet data set: a
//! write still in flight can show up as a violation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use conduit_api::store::keys::{KeyFamily, Keys};
use serde::Serialize;

/// Arguments of `chaos-report check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One Redis, e.g. `redis://127.0.0.1:6379`.
    #[arg(long, conflicts_with = "cluster", required_unless_present = "cluster")]
    pub redis: Option<String>,
    /// Seeds of a Redis Cluster, comma-separated; every primary is scanned.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Key prefix (`CONDUIT_REDIS_PREFIX`).
    #[arg(long, default_value = "conduit")]
    pub prefix: String,
    /// How many example violations to print.
    #[arg(long, default_value_t = 20)]
    pub examples: usize,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of a check.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Data nodes scanned.
    pub nodes: usize,
    /// Keys under the prefix.
    pub keys: usize,
    pub users: usize,
    pub articles: usize,
    pub comments: usize,
    pub follows: usize,
    pub favorites: usize,
    pub tags: usize,
    /// Allowed by the design (see the module docs).
    pub stale_feed_entries: usize,
    pub pending_unfavorites: usize,
    pub stale_claims: usize,
    pub pending_tag_removals: usize,
    /// Violations per invariant.
    pub violations: BTreeMap<String, usize>,
    /// Up to `--examples` violations.
    pub examples: Vec<String>,
    /// Whether no invariant was violated.
    pub passed: bool,
}

/// Everything under the prefix, read into memory.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub keys: usize,
    pub users: HashMap<String, HashMap<String, String>>,
    pub following: HashMap<String, BTreeSet<String>>,
    pub followers: HashMap<String, BTreeSet<String>>,
    pub feeds: HashMap<String, BTreeSet<String>>,
    pub authored: HashMap<String, BTreeSet<String>>,
    pub favorites: HashMap<String, BTreeSet<String>>,
    pub articles: HashMap<String, HashMap<String, String>>,
    pub favorited_by: HashMap<String, BTreeSet<String>>,
    pub fans_gone: HashMap<String, BTreeSet<String>>,
    pub comment_ids: HashMap<String, BTreeSet<String>>,
    pub comments: HashMap<String, BTreeSet<String>>,
    /// Claim key -> owner.
    pub claims: HashMap<String, String>,
    pub buckets: HashMap<u64, BTreeSet<String>>,
    /// Tag index key -> article ids.
    pub tagged: HashMap<String, BTreeSet<String>>,
    /// Bucket -> tag -> count.
    pub tag_counts: HashMap<u64, BTreeMap<String, i64>>,
    pub unknown: Vec<String>,
}

/// Runs the check.
pub fn run(args: &Args) -> Result<Report> {
    let keys = Keys::new(&args.prefix);
    let nodes = match (&args.redis, &args.cluster) {
        (Some(url), None) => vec![url.clone()],
        (None, Some(seeds)) => primaries(seeds)?,
        _ => bail!("give exactly one of --redis and --cluster"),
    };
    let mut snapshot = Snapshot::default();
    for node in &nodes {
        load(node, &keys, &mut snapshot).with_context(|| format!("reading {node}"))?;
    }
    let mut report = check(&keys, &snapshot, args.examples);
    report.nodes = nodes.len();
    Ok(report)
}

/// The primaries of the cluster, from `CLUSTER NODES` of the first seed that answers.
fn primaries(seeds: &str) -> Result<Vec<String>> {
    let mut last = None;
    for seed in seeds.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let nodes: redis::RedisResult<String> = redis::Client::open(seed)
            .and_then(|c| c.get_connection())
            .and_then(|mut con| redis::cmd("CLUSTER").arg("NODES").query(&mut con));
        match nodes {
            Ok(nodes) => {
                let out: Vec<String> = conduit_api::store::serving_primaries(&nodes)
                    .into_iter()
                    .map(|addr| format!("redis://{addr}"))
                    .collect();
                if out.is_empty() {
                    bail!("no primary with slots in CLUSTER NODES of {seed}");
                }
                return Ok(out);
            }
            Err(err) => last = Some(format!("{seed}: {err}")),
        }
    }
    bail!(
        "no cluster seed answered CLUSTER NODES ({})",
        last.unwrap_or_else(|| "no seeds given".to_owned())
    )
}

/// A key's value as read from Redis.
enum Value {
    Hash(HashMap<String, String>),
    Members(BTreeSet<String>),
    Scores(BTreeMap<String, i64>),
    Other,
}

fn load(url: &str, keys: &Keys, snapshot: &mut Snapshot) -> Result<()> {
    let mut con = redis::Client::open(url)?.get_connection()?;
    let pattern = format!("{}:*", keys.prefix());
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)?;
        if !batch.is_empty() {
            let mut pipe = redis::pipe();
            for key in &batch {
                pipe.cmd("TYPE").arg(key);
            }
            let types: Vec<String> = pipe.query(&mut con)?;
            let mut pipe = redis::pipe();
            for (key, kind) in batch.iter().zip(&types) {
                match kind.as_str() {
                    "hash" => pipe.cmd("HGETALL").arg(key),
                    "set" => pipe.cmd("SMEMBERS").arg(key),
                    "zset" => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
                    _ => pipe.cmd("EXISTS").arg(key),
                };
            }
            let values: Vec<redis::Value> = pipe.query(&mut con)?;
            for ((key, kind), value) in batch.iter().zip(&types).zip(values) {
                let value = match kind.as_str() {
                    "hash" => Value::Hash(redis::from_redis_value(value)?),
                    "set" => Value::Members(redis::from_redis_value(value)?),
                    "zset" => {
                        let pairs: Vec<(String, f64)> = redis::from_redis_value(value)?;
                        Value::Scores(pairs.into_iter().map(|(m, s)| (m, s as i64)).collect())
                    }
                    _ => Value::Other,
                };
                snapshot.add(keys, key, value);
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

impl Snapshot {
    fn add(&mut self, keys: &Keys, key: &str, value: Value) {
        let Some(family) = keys.parse(key) else {
            return;
        };
        self.keys += 1;
        let members = |value: Value| -> BTreeSet<String> {
            match value {
                Value::Members(m) => m,
                Value::Scores(s) => s.into_keys().collect(),
                Value::Hash(h) => h.into_keys().collect(),
                Value::Other => BTreeSet::new(),
            }
        };
        let hash = |value: Value| -> HashMap<String, String> {
            match value {
                Value::Hash(h) => h,
                _ => HashMap::new(),
            }
        };
        match family {
            KeyFamily::User(id) => {
                self.users.insert(id, hash(value));
            }
            KeyFamily::Following(id) => {
                self.following.insert(id, members(value));
            }
            KeyFamily::Followers(id) => {
                self.followers.insert(id, members(value));
            }
            KeyFamily::Feed(id) => {
                self.feeds.insert(id, members(value));
            }
            KeyFamily::Authored(id) => {
                self.authored.insert(id, members(value));
            }
            KeyFamily::Favorites(id) => {
                self.favorites.insert(id, members(value));
            }
            KeyFamily::Article(id) => {
                self.articles.insert(id, hash(value));
            }
            KeyFamily::FavoritedBy(id) => {
                self.favorited_by.insert(id, members(value));
            }
            KeyFamily::FansGone(id) => {
                self.fans_gone.insert(id, members(value));
            }
            KeyFamily::CommentIds(id) => {
                self.comment_ids.insert(id, members(value));
            }
            KeyFamily::Comments(id) => {
                self.comments.insert(id, members(value));
            }
            KeyFamily::SlugClaim(_) | KeyFamily::UsernameClaim(_) | KeyFamily::EmailClaim(_) => {
                let owner = hash(value).remove("owner").unwrap_or_default();
                self.claims.insert(key.to_owned(), owner);
            }
            KeyFamily::ArticlesBucket(bucket) => {
                self.buckets.insert(bucket, members(value));
            }
            KeyFamily::Tagged { .. } => {
                self.tagged.insert(key.to_owned(), members(value));
            }
            KeyFamily::TagCounts(bucket) => {
                if let Value::Scores(scores) = value {
                    self.tag_counts.insert(bucket, scores);
                }
            }
            KeyFamily::Unknown => self.unknown.push(key.to_owned()),
            KeyFamily::Idempotency { .. }
            | KeyFamily::FanoutJobs
            | KeyFamily::Sequence(_)
            | KeyFamily::LoginFailures
            | KeyFamily::IdempotencyQuota
            | KeyFamily::Registrations => {}
        }
    }
}

struct Findings {
    report: Report,
    limit: usize,
}

impl Findings {
    fn violation(&mut self, invariant: &str, example: String) {
        *self
            .report
            .violations
            .entry(invariant.to_owned())
            .or_default() += 1;
        if self.report.examples.len() < self.limit {
            self.report.examples.push(format!("{invariant}: {example}"));
        }
    }
}

fn contains(map: &HashMap<String, BTreeSet<String>>, key: &str, member: &str) -> bool {
    map.get(key).is_some_and(|s| s.contains(member))
}

/// The comma-joined tag list in `field` of an article hash.
fn article_tags(article: &HashMap<String, String>, field: &str) -> Vec<String> {
    article
        .get(field)
        .map(|t| {
            t.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a snapshot; `limit` bounds the examples kept.
pub fn check(keys: &Keys, s: &Snapshot, limit: usize) -> Report {
    let mut f = Findings {
        report: Report {
            keys: s.keys,
            users: s.users.len(),
            articles: s.articles.len(),
            comments: s.comments.values().map(BTreeSet::len).sum(),
            follows: s.following.values().map(BTreeSet::len).sum(),
            favorites: s.favorites.values().map(BTreeSet::len).sum(),
            tags: s.tag_counts.values().map(BTreeMap::len).sum(),
            ..Report::default()
        },
        limit,
    };
    for key in &s.unknown {
        f.violation("unknown key", key.clone());
    }

    // Index entries point at live entities.
    global_and_tag_indexes(keys, s, &mut f);
    author_lists(keys, s, &mut f);
    favorites(keys, s, &mut f);
    follows(keys, s, &mut f);
    feeds(keys, s, &mut f);
    comments(keys, s, &mut f);
    // Entities are in every index they belong to.
    entities_in_their_indexes(keys, s, &mut f);
    stale_claims(keys, s, &mut f);
    // Counts match the indexes.
    tag_counts(keys, s, &mut f);
    f.report.passed = f.report.violations.is_empty();
    f.report
}

/// Every global and tag index entry names a live article that belongs there (a tag being removed by an interrupted update counts as pending).
fn global_and_tag_indexes(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (bucket, ids) in &s.buckets {
        for id in ids {
            if !s.articles.contains_key(id) {
                f.violation(
                    "global index entry without article",
                    format!("{} holds {id}", keys.articles_bucket(*bucket)),
                );
            } else if Keys::article_bucket(id) != *bucket {
                f.violation(
                    "article in the wrong global bucket",
                    format!("{} holds {id}", keys.articles_bucket(*bucket)),
                );
            }
        }
    }
    for (key, ids) in &s.tagged {
        for id in ids {
            match s.articles.get(id) {
                None => f.violation(
                    "tag index entry without article",
                    format!("{key} holds {id}"),
                ),
                Some(a)
                    if !article_tags(a, "tags")
                        .iter()
                        .any(|t| keys.tagged(t) == *key) =>
                {
                    if article_tags(a, "tags_gone")
                        .iter()
                        .any(|t| keys.tagged(t) == *key)
                    {
                        f.report.pending_tag_removals += 1;
                    } else {
                        f.violation(
                            "tag index entry of an article without the tag",
                            format!("{key} holds {id}"),
                        );
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// Every entry of an author's list names a live article by that author.
fn author_lists(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (user, ids) in &s.authored {
        for id in ids {
            match s.articles.get(id) {
                None => f.violation(
                    "author's list entry without article",
                    format!("{} holds {id}", keys.authored(user)),
                ),
                Some(a) if a.get("author") != Some(user) => f.violation(
                    "author's list entry of another author's article",
                    format!("{} holds {id}", keys.authored(user)),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Favorites and favorited-by mirror each other, and the stored favorites count matches (a deleted article's fans still being cleaned up count as pending).
fn favorites(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (user, ids) in &s.favorites {
        for id in ids {
            if !s.articles.contains_key(id) {
                if contains(&s.fans_gone, id, user) {
                    f.report.pending_unfavorites += 1;
                } else {
                    f.violation(
                        "favorite without article",
                        format!("{} holds {id}", keys.favorites(user)),
                    );
                }
            } else if !contains(&s.favorited_by, id, user) {
                f.violation(
                    "favorite missing from favorited-by",
                    format!(
                        "{} holds {id}, {} lacks {user}",
                        keys.favorites(user),
                        keys.favorited_by(id)
                    ),
                );
            }
        }
    }
    for (id, fans) in &s.favorited_by {
        if !s.articles.contains_key(id) {
            f.violation("favorited-by without article", keys.favorited_by(id));
        }
        for user in fans {
            if !s.users.contains_key(user) {
                f.violation(
                    "favorited-by entry without user",
                    format!("{} holds {user}", keys.favorited_by(id)),
                );
            } else if !contains(&s.favorites, user, id) {
                f.violation(
                    "favorited-by missing from favorites",
                    format!(
                        "{} holds {user}, {} lacks {id}",
                        keys.favorited_by(id),
                        keys.favorites(user)
                    ),
                );
            }
        }
    }
    // The count the favorite step stores with the article (absent on articles stored before it
    // was kept: those are counted from the set when read).
    for (id, article) in &s.articles {
        let Some(stored) = article.get("favorites") else {
            continue;
        };
        let fans = s.favorited_by.get(id).map_or(0, BTreeSet::len);
        if stored.parse::<usize>().ok() != Some(fans) {
            f.violation(
                "favorites count unlike favorited-by",
                format!(
                    "{} says {stored}, {} holds {fans}",
                    keys.article(id),
                    keys.favorited_by(id)
                ),
            );
        }
    }
    for id in s.fans_gone.keys() {
        if s.articles.contains_key(id) {
            f.violation("fans_gone of a live article", keys.fans_gone(id));
        }
    }
}

/// Following and followers mirror each other and name live users.
fn follows(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (user, targets) in &s.following {
        for target in targets {
            if !s.users.contains_key(target) {
                f.violation(
                    "following entry without user",
                    format!("{} holds {target}", keys.following(user)),
                );
            } else if !contains(&s.followers, target, user) {
                f.violation(
                    "following without follower",
                    format!(
                        "{} holds {target}, {} lacks {user}",
                        keys.following(user),
                        keys.followers(target)
                    ),
                );
            }
        }
    }
    for (user, fans) in &s.followers {
        for fan in fans {
            if !s.users.contains_key(fan) {
                f.violation(
                    "follower entry without user",
                    format!("{} holds {fan}", keys.followers(user)),
                );
            } else if !contains(&s.following, fan, user) {
                f.violation(
                    "follower without following",
                    format!(
                        "{} holds {fan}, {} lacks {user}",
                        keys.followers(user),
                        keys.following(fan)
                    ),
                );
            }
        }
    }
}

/// Feed entries are by followed authors (entries of deleted articles are counted as stale, which readers skip).
fn feeds(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (user, ids) in &s.feeds {
        for id in ids {
            match s.articles.get(id) {
                None => f.report.stale_feed_entries += 1,
                Some(a) => {
                    let author = a.get("author").map(String::as_str).unwrap_or_default();
                    if !contains(&s.following, user, author) {
                        f.violation(
                            "feed entry of an author not followed",
                            format!("{} holds {id} by {author}", keys.feed(user)),
                        );
                    }
                }
            }
        }
    }
}

/// Comment ids and comments match, and belong to a live article.
fn comments(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (id, ids) in &s.comment_ids {
        if !s.articles.contains_key(id) {
            f.violation("comments without article", keys.comment_ids(id));
        }
        let stored = s.comments.get(id);
        for c in ids {
            if !stored.is_some_and(|m| m.contains(c)) {
                f.violation(
                    "comment id without comment",
                    format!("{} holds {c}", keys.comment_ids(id)),
                );
            }
        }
    }
    for (id, stored) in &s.comments {
        if !s.articles.contains_key(id) && !s.comment_ids.contains_key(id) {
            f.violation("comments without article", keys.comments(id));
        }
        for c in stored {
            if !contains(&s.comment_ids, id, c) {
                f.violation(
                    "comment not in comment ids",
                    format!("{} holds {c}", keys.comments(id)),
                );
            }
        }
    }
}

/// Every article is in its author's list, its global bucket and its tags' indexes and holds its slug claim; every user holds its username and email claims.
fn entities_in_their_indexes(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (id, a) in &s.articles {
        let author = a.get("author").cloned().unwrap_or_default();
        if !s.users.contains_key(&author) {
            f.violation(
                "article without author",
                format!("{} by {author:?}", keys.article(id)),
            );
        }
        if !contains(&s.authored, &author, id) {
            f.violation(
                "article missing from its author's list",
                format!("{} lacks {id}", keys.authored(&author)),
            );
        }
        let bucket = Keys::article_bucket(id);
        if !s.buckets.get(&bucket).is_some_and(|b| b.contains(id)) {
            f.violation(
                "article missing from the global index",
                format!("{} lacks {id}", keys.articles_bucket(bucket)),
            );
        }
        for tag in article_tags(a, "tags") {
            if !contains(&s.tagged, &keys.tagged(&tag), id) {
                f.violation(
                    "article missing from a tag index",
                    format!("{} lacks {id}", keys.tagged(&tag)),
                );
            }
        }
        let slug = a.get("slug").cloned().unwrap_or_default();
        if s.claims.get(&keys.slug_claim(&slug)) != Some(id) {
            f.violation(
                "article without its slug claim",
                format!("{} does not name {id}", keys.slug_claim(&slug)),
            );
        }
    }
    for (id, u) in &s.users {
        let name = u.get("username").cloned().unwrap_or_default();
        if s.claims.get(&keys.username_claim(&name)) != Some(id) {
            f.violation(
                "user without its username claim",
                format!("{} does not name {id}", keys.username_claim(&name)),
            );
        }
        let email = u.get("email").cloned().unwrap_or_default();
        if s.claims.get(&keys.email_claim(&email)) != Some(id) {
            f.violation(
                "user without its email claim",
                format!("{} does not name {id}", keys.email_claim(&email)),
            );
        }
    }
}

/// Claims whose owner is gone or holds another value: left by a request that died, taken over by the next claimant (allowed, counted).
fn stale_claims(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    for (claim, owner) in &s.claims {
        let held = match keys.parse(claim) {
            Some(KeyFamily::SlugClaim(_)) => s
                .articles
                .get(owner)
                .and_then(|a| a.get("slug"))
                .is_some_and(|slug| keys.slug_claim(slug) == *claim),
            Some(KeyFamily::UsernameClaim(_)) => s
                .users
                .get(owner)
                .and_then(|u| u.get("username"))
                .is_some_and(|name| keys.username_claim(name) == *claim),
            _ => s
                .users
                .get(owner)
                .and_then(|u| u.get("email"))
                .is_some_and(|email| keys.email_claim(email) == *claim),
        };
        if !held {
            f.report.stale_claims += 1;
        }
    }
}

/// Each tag count sits in its bucket and equals the size of the tag's index, and every tag index has a count.
fn tag_counts(keys: &Keys, s: &Snapshot, f: &mut Findings) {
    let mut counted = BTreeSet::new();
    for (bucket, counts) in &s.tag_counts {
        for (tag, count) in counts {
            let key = keys.tagged(tag);
            if Keys::tag_bucket(tag) != *bucket {
                f.violation(
                    "tag counted in the wrong bucket",
                    format!("{} holds {tag:?}", keys.tag_counts(*bucket)),
                );
            }
            let size = s.tagged.get(&key).map_or(0, BTreeSet::len) as i64;
            if size != *count {
                f.violation(
                    "tag count differs from its index",
                    format!("{tag:?}: count {count}, {key} holds {size}"),
                );
            }
            counted.insert(key);
        }
    }
    for (key, ids) in &s.tagged {
        if !counted.contains(key) {
            f.violation(
                "tag index without a count",
                format!("{key} holds {}", ids.len()),
            );
        }
    }
}

/// The report as a small table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let rows: [(&str, usize); 12] = [
        ("nodes", report.nodes),
        ("keys", report.keys),
        ("users", report.users),
        ("articles", report.articles),
        ("comments", report.comments),
        ("follows", report.follows),
        ("favorites", report.favorites),
        ("tags", report.tags),
        ("stale feed entries (allowed)", report.stale_feed_entries),
        ("pending unfavorites (allowed)", report.pending_unfavorites),
        ("stale claims (allowed)", report.stale_claims),
        (
            "pending tag removals (allowed)",
            report.pending_tag_removals,
        ),
    ];
    for (name, n) in rows {
        out.push_str(&format!("{name:<48} {n:>8}\n"));
    }
    for (name, n) in &report.violations {
        out.push_str(&format!("{:<48} {n:>8}\n", format!("VIOLATION {name}")));
    }
    for example in &report.examples {
        out.push_str(&format!("  e.g. {example}\n"));
    }
    out.push_str(if report.passed {
        "check: passed\n"
    } else {
        "check: FAILED\n"
    });
    out
}
