//! The traffic itself: seeding (accounts, follows, articles) and the mixed workload of each
//! virtual user. Every virtual user's session is one trace: a root span, with one client span
//! per HTTP attempt under it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{encode_segment, Call, Client, Reply};
use crate::mix::{Mix, Op};
use crate::writelog::{WriteLog, WriteRecord};

/// Most slugs remembered for reads, favorites and comments.
const MAX_KNOWN_SLUGS: usize = 5_000;

const WORDS: [&str; 24] = [
    "stateless",
    "replica",
    "redis",
    "token",
    "trace",
    "span",
    "latency",
    "shard",
    "queue",
    "cache",
    "cluster",
    "signal",
    "drain",
    "probe",
    "ingress",
    "rollout",
    "budget",
    "quorum",
    "backoff",
    "retry",
    "ledger",
    "beacon",
    "harbor",
    "meadow",
];

/// A registered account.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub token: String,
}

/// A virtual user: its account, its session trace, its own random choices.
pub struct VirtualUser {
    pub account: Account,
    /// Context holding the session's root span.
    pub cx: Context,
    pub rng: StdRng,
    /// Slugs this user has favorited (candidates for unfavorite).
    pub favorites: Vec<String>,
}

#[derive(Default)]
struct Known {
    list: Vec<String>,
    set: HashSet<String>,
}

impl Known {
    fn add(&mut self, slug: &str) {
        if self.list.len() < MAX_KNOWN_SLUGS && !self.set.contains(slug) {
            self.set.insert(slug.to_string());
            self.list.push(slug.to_string());
        }
    }
}

/// State shared by every virtual user.
pub struct World {
    pub client: Client,
    pub tracer: SdkTracer,
    pub run_id: String,
    tags: Vec<String>,
    slugs: RwLock<Known>,
    usernames: RwLock<Vec<String>>,
    writes: Option<WriteLog>,
    key_seq: AtomicU64,
    article_seq: AtomicU64,
}

/// When the mixed phase stops, and how fast it may go.
pub struct Control {
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
    remaining: Option<AtomicU64>,
    pacer: Option<Pacer>,
}

impl Control {
    /// `stop`: set to stop early (Ctrl-C); `deadline`: stop after it; `requests`: stop after
    /// that many operations; `rate`: total operations per second (0 = unpaced).
    pub fn new(
        stop: Arc<AtomicBool>,
        deadline: Option<Instant>,
        requests: Option<u64>,
        rate: f64,
    ) -> Control {
        Control {
            stop,
            deadline,
            remaining: requests.map(AtomicU64::new),
            pacer: (rate > 0.0).then(|| Pacer::new(rate)),
        }
    }

    /// Ask every virtual user to stop after its current operation.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once [`Control::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Wait for the next operation slot. `false` means stop.
    async fn next(&self) -> bool {
        if self.stopped() || self.past_deadline() {
            return false;
        }
        if let Some(remaining) = &self.remaining {
            let taken =
                remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1));
            if taken.is_err() {
                return false;
            }
        }
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        !(self.stopped() || self.past_deadline())
    }
}

/// Spreads operations evenly in time: slot n starts at start + n / rate. A schedule that fell
/// behind (slow answers) restarts from now rather than bursting to catch up.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `rate` operations per second, > 0.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(Instant::now()),
        }
    }

    /// The instant the next caller may start (and book the slot after it).
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if *next < now {
            *next = now;
        }
        let at = *next;
        *next += self.interval;
        at
    }

    async fn wait(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at.into()).await;
    }
}

impl World {
    /// Shared state for one run. `run_id` makes usernames, titles and keys unique per run.
    pub fn new(
        client: Client,
        tracer: SdkTracer,
        run_id: String,
        tags: Vec<String>,
        writes: Option<WriteLog>,
    ) -> World {
        World {
            client,
            tracer,
            run_id,
            tags: tags
                .into_iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            slugs: RwLock::new(Known::default()),
            usernames: RwLock::new(Vec::new()),
            writes,
            key_seq: AtomicU64::new(0),
            article_seq: AtomicU64::new(0),
        }
    }

    /// A root span (a new trace) named `name`, returned as a context to parent requests on.
    pub fn root(&self, name: &'static str, attrs: Vec<KeyValue>) -> Context {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &Context::new());
        Context::new().with_span(span)
    }

    /// Flush the write log, if any.
    pub fn flush_writes(&self) {
        if let Some(w) = &self.writes {
            w.flush();
        }
    }

    fn new_key(&self) -> String {
        let n = self.key_seq.fetch_add(1, Ordering::Relaxed);
        format!("cl-{}-{n}", self.run_id)
    }

    fn log_write(&self, kind: &'static str, user: &str, key: &str, reply: &Reply) -> WriteRecord {
        WriteRecord::new(
            kind,
            user,
            key,
            reply.status(),
            reply.replayed,
            reply.attempts,
        )
    }

    fn append(&self, rec: WriteRecord) {
        if let Some(w) = &self.writes {
            w.append(&rec);
        }
    }

    fn remember_slug(&self, slug: &str) {
        self.slugs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(slug);
    }

    fn random_slug(&self, rng: &mut StdRng) -> Option<String> {
        let known = self.slugs.read().unwrap_or_else(|e| e.into_inner());
        known.list.choose(rng).cloned()
    }

    fn random_username(&self, rng: &mut StdRng) -> Option<String> {
        let names = self.usernames.read().unwrap_or_else(|e| e.into_inner());
        names.choose(rng).cloned()
    }

    /// Every registered username so far.
    pub fn usernames(&self) -> Vec<String> {
        self.usernames
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Number of slugs known.
    pub fn known_slugs(&self) -> usize {
        self.slugs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .list
            .len()
    }

    /// `POST /api/users`. The username is `l<run id>x<name>`.
    pub async fn register(&self, cx: &Context, name: &str) -> Option<Account> {
        let username = format!("l{}x{name}", self.run_id);
        let key = self.new_key();
        let body = json!({"user": {
            "username": username,
            "email": format!("{username}@load.example"),
            "password": format!("pw-{}-{name}-secret", self.run_id),
        }});
        let call = Call::write(
            Method::POST,
            "/api/users".into(),
            "/api/users",
            "register",
            "user",
            Some(body),
            None,
            key.clone(),
        );
        let reply = self.client.send(cx, call).await;
        if !reply.ok() {
            let body = if reply.body.is_null() {
                String::new()
            } else {
                format!(" {}", reply.body)
            };
            log::warn!("registering {username} failed: {}{body}", reply.outcome);
            return None;
        }
        let Some(token) = reply.body["user"]["token"].as_str() else {
            log::warn!("registering {username}: no token in the answer");
            return None;
        };
        let rec = self.log_write("user", &username, &key, &reply);
        self.append(rec);
        self.usernames
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(username.clone());
        Some(Account {
            username,
            token: token.to_string(),
        })
    }

    /// `POST /api/profiles/{username}/follow`.
    pub async fn follow(&self, cx: &Context, who: &Account, username: &str) -> bool {
        let key = self.new_key();
        let call = Call::write(
            Method::POST,
            format!("/api/profiles/{}/follow", encode_segment(username)),
            "/api/profiles/{username}/follow",
            "follow",
            "follow",
            None,
            Some(&who.token),
            key.clone(),
        );
        let reply = self.client.send(cx, call).await;
        if reply.ok() {
            let mut rec = self.log_write("follow", &who.username, &key, &reply);
            rec.profile = Some(username.to_string());
            self.append(rec);
        }
        reply.ok()
    }

    /// `POST /api/articles` with 1 to 3 tags. Returns the slug.
    pub async fn write_article(
        &self,
        cx: &Context,
        who: &Account,
        rng: &mut StdRng,
        op: &'static str,
    ) -> Option<String> {
        let n = self.article_seq.fetch_add(1, Ordering::Relaxed);
        let count = rng.random_range(1..=3.min(self.tags.len()));
        let tags: Vec<&String> = self.tags.choose_multiple(rng, count).collect();
        let title = format!("{} {} {n}", words(rng, 3), who.username);
        let body = json!({"article": {
            "title": title,
            "description": format!("About {}", words(rng, 4)),
            "body": format!("{}.\n\n{}.", words(rng, 30), words(rng, 20)),
            "tagList": tags,
        }});
        let key = self.new_key();
        let call = Call::write(
            Method::POST,
            "/api/articles".into(),
            "/api/articles",
            op,
            "article",
            Some(body),
            Some(&who.token),
            key.clone(),
        );
        let reply = self.client.send(cx, call).await;
        if !reply.ok() {
            return None;
        }
        let slug = reply.body["article"]["slug"].as_str().map(str::to_string);
        let mut rec = self.log_write("article", &who.username, &key, &reply);
        rec.slug.clone_from(&slug);
        self.append(rec);
        if let Some(slug) = &slug {
            self.remember_slug(slug);
        } else {
            log::warn!("created an article but the answer had no slug");
        }
        slug
    }

    /// Run one operation of the mixed phase.
    pub async fn run_op(&self, vu: &mut VirtualUser, op: Op) {
        let token = vu.account.token.clone();
        let cx = vu.cx.clone();
        match op {
            Op::ListArticles => self.list_articles(&cx, &token, &mut vu.rng).await,
            Op::ReadArticle => match self.random_slug(&mut vu.rng) {
                Some(slug) => {
                    let call = Call::read(
                        format!("/api/articles/{}", encode_segment(&slug)),
                        "/api/articles/{slug}",
                        op.name(),
                        &token,
                    );
                    self.client.send(&cx, call).await;
                }
                None => self.list_articles(&cx, &token, &mut vu.rng).await,
            },
            Op::Feed => {
                let call = Call::read(
                    "/api/articles/feed?limit=20".into(),
                    "/api/articles/feed",
                    op.name(),
                    &token,
                );
                let reply = self.client.send(&cx, call).await;
                self.learn_slugs(&reply.body);
            }
            Op::Tags => {
                let call = Call::read("/api/tags".into(), "/api/tags", op.name(), &token);
                self.client.send(&cx, call).await;
            }
            Op::Profile => {
                let name = self
                    .random_username(&mut vu.rng)
                    .unwrap_or_else(|| vu.account.username.clone());
                let call = Call::read(
                    format!("/api/profiles/{}", encode_segment(&name)),
                    "/api/profiles/{username}",
                    op.name(),
                    &token,
                );
                self.client.send(&cx, call).await;
            }
            Op::ListComments => match self.random_slug(&mut vu.rng) {
                Some(slug) => {
                    let call = Call::read(
                        format!("/api/articles/{}/comments", encode_segment(&slug)),
                        "/api/articles/{slug}/comments",
                        op.name(),
                        &token,
                    );
                    self.client.send(&cx, call).await;
                }
                None => self.list_articles(&cx, &token, &mut vu.rng).await,
            },
            Op::Favorite => match self.random_slug(&mut vu.rng) {
                Some(slug) => {
                    if self.favorite(&cx, &vu.account, &slug, true).await
                        && !vu.favorites.contains(&slug)
                    {
                        vu.favorites.push(slug);
                    }
                }
                None => {
                    self.write_article(&cx, &vu.account, &mut vu.rng, Op::WriteArticle.name())
                        .await;
                }
            },
            Op::Unfavorite => {
                if vu.favorites.is_empty() {
                    return;
                }
                let i = vu.rng.random_range(0..vu.favorites.len());
                let slug = vu.favorites.swap_remove(i);
                self.favorite(&cx, &vu.account, &slug, false).await;
            }
            Op::Comment => match self.random_slug(&mut vu.rng) {
                Some(slug) => self.comment(&cx, &vu.account, &slug, &mut vu.rng).await,
                None => {
                    self.write_article(&cx, &vu.account, &mut vu.rng, Op::WriteArticle.name())
                        .await;
                }
            },
            Op::WriteArticle => {
                self.write_article(&cx, &vu.account, &mut vu.rng, op.name())
                    .await;
            }
        }
    }

    async fn list_articles(&self, cx: &Context, token: &str, rng: &mut StdRng) {
        let roll: f64 = rng.random();
        let mut path = String::from("/api/articles?limit=20");
        if roll < 0.2 {
            if let Some(tag) = self.tags.choose(rng) {
                path.push_str(&format!("&tag={}", encode_segment(tag)));
            }
        } else if roll < 0.35 {
            if let Some(name) = self.random_username(rng) {
                path.push_str(&format!("&author={}", encode_segment(&name)));
            }
        } else if roll < 0.5 {
            path.push_str(&format!("&offset={}", rng.random_range(1..=3) * 20));
        }
        let call = Call::read(path, "/api/articles", Op::ListArticles.name(), token);
        let reply = self.client.send(cx, call).await;
        self.learn_slugs(&reply.body);
    }

    fn learn_slugs(&self, body: &Value) {
        if let Some(articles) = body["articles"].as_array() {
            let mut known = self.slugs.write().unwrap_or_else(|e| e.into_inner());
            for a in articles {
                if let Some(slug) = a["slug"].as_str() {
                    known.add(slug);
                }
            }
        }
    }

    async fn favorite(&self, cx: &Context, who: &Account, slug: &str, on: bool) -> bool {
        let (method, op) = if on {
            (Method::POST, Op::Favorite)
        } else {
            (Method::DELETE, Op::Unfavorite)
        };
        let key = self.new_key();
        let call = Call::write(
            method,
            format!("/api/articles/{}/favorite", encode_segment(slug)),
            "/api/articles/{slug}/favorite",
            op.name(),
            op.name(),
            None,
            Some(&who.token),
            key.clone(),
        );
        let reply = self.client.send(cx, call).await;
        // A toggle with no answer (or a 5xx) may have been executed: logged as unanswered, so
        // the final state it leaves is not held against the data store.
        let status = reply.status();
        if reply.ok() || status == 0 || status >= 500 {
            let mut rec = self.log_write(op.name(), &who.username, &key, &reply);
            rec.slug = Some(slug.to_string());
            self.append(rec);
        }
        reply.ok()
    }

    async fn comment(&self, cx: &Context, who: &Account, slug: &str, rng: &mut StdRng) {
        let key = self.new_key();
        let call = Call::write(
            Method::POST,
            format!("/api/articles/{}/comments", encode_segment(slug)),
            "/api/articles/{slug}/comments",
            Op::Comment.name(),
            "comment",
            Some(json!({"comment": {"body": format!("{}.", words(rng, 12))}})),
            Some(&who.token),
            key.clone(),
        );
        let reply = self.client.send(cx, call).await;
        if reply.ok() {
            let mut rec = self.log_write("comment", &who.username, &key, &reply);
            rec.slug = Some(slug.to_string());
            rec.comment_id = Some(reply.body["comment"]["id"].clone());
            self.append(rec);
        }
    }
}

/// `n` random words separated by spaces.
fn words(rng: &mut StdRng, n: usize) -> String {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(*WORDS.choose(rng).unwrap_or(&"word"));
    }
    out.join(" ")
}

/// `n` distinct usernames other than `me`, chosen at random.
pub fn pick_follows(all: &[String], me: &str, n: usize, rng: &mut StdRng) -> Vec<String> {
    let mut others: Vec<String> = all.iter().filter(|u| *u != me).cloned().collect();
    others.shuffle(rng);
    others.truncate(n);
    others
}

/// The mixed phase of one virtual user; ends its session span when it stops.
pub async fn virtual_user(world: Arc<World>, control: Arc<Control>, mix: Mix, mut vu: VirtualUser) {
    while control.next().await {
        let op = mix.choose(&mut vu.rng, !vu.favorites.is_empty());
        world.run_op(&mut vu, op).await;
    }
    vu.cx.span().end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_pacer_spaces_slots_by_the_interval() {
        let pacer = Pacer::new(10.0);
        let now = Instant::now();
        let a = pacer.reserve(now);
        let b = pacer.reserve(now);
        let c = pacer.reserve(now);
        assert_eq!(b - a, Duration::from_millis(100));
        assert_eq!(c - b, Duration::from_millis(100));
    }

    #[test]
    fn a_pacer_that_fell_behind_does_not_burst() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        pacer.reserve(start);
        let later = start + Duration::from_secs(5);
        let a = pacer.reserve(later);
        let b = pacer.reserve(later);
        assert_eq!(a, later);
        assert_eq!(b - a, Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_request_budget_allows_exactly_that_many_operations() {
        let control = Control::new(Arc::default(), None, Some(3), 0.0);
        let mut n = 0;
        while control.next().await {
            n += 1;
            assert!(n <= 3, "budget overrun");
        }
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn a_stopped_control_allows_nothing() {
        let control = Control::new(Arc::default(), None, None, 0.0);
        control.stop();
        assert!(!control.next().await);
    }

    #[test]
    fn follows_never_include_oneself_and_are_distinct() {
        let all: Vec<String> = (0..6).map(|i| format!("u{i}")).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let picked = pick_follows(&all, "u2", 4, &mut rng);
        assert_eq!(picked.len(), 4);
        assert!(!picked.contains(&"u2".to_string()));
        let set: HashSet<&String> = picked.iter().collect();
        assert_eq!(set.len(), 4);
        assert_eq!(pick_follows(&all, "u2", 10, &mut rng).len(), 5);
    }

    #[test]
    fn known_slugs_are_deduplicated() {
        let mut k = Known::default();
        k.add("a");
        k.add("b");
        k.add("a");
        assert_eq!(k.list, vec!["a", "b"]);
    }
}
