//! `chaos-report check` against a real Redis (`CONDUIT_TEST_REDIS_URL`, set by scripts/test.sh)
//! holding a data set written by a real API replica, then with invariants broken by hand.

use std::time::Duration;

use chaos_report::check::{self, Args, Report};
use conduit_api::config::Config;
use conduit_api::store::Keys;
use conduit_api::Application;
use serde_json::{json, Value};

const JWT_KEYS: &str = "check1:0123456789abcdef0123456789abcdef0123";

fn redis_url() -> String {
    std::env::var("CONDUIT_TEST_REDIS_URL")
        .expect("CONDUIT_TEST_REDIS_URL is not set: run the tests with scripts/test.sh")
}

fn unique_prefix() -> String {
    conduit_api::testing::unique_prefix("checktest")
}

fn spawn_replica(prefix: &str) -> String {
    let config = Config::try_parse_from([
        "conduit-api",
        "--addr=127.0.0.1:0",
        &format!("--redis-url={}", redis_url()),
        &format!("--redis-prefix={prefix}"),
        &format!("--jwt-keys={JWT_KEYS}"),
        "--replica-id=check",
        "--workers=1",
        "--drain-seconds=0",
    ])
    .expect("replica settings parse");
    let app = Application::build(config).expect("replica builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(false));
    url
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method.clone(), &url);
    if let Some(token) = token {
        req = req.header("Authorization", format!("Token {token}"));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request answered");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{method} {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> String {
    let body = json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}});
    let user = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/users"),
        None,
        Some(body),
    )
    .await;
    user["user"]["token"].as_str().expect("token").to_owned()
}

async fn article(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    title: &str,
    tags: &[&str],
) -> String {
    let body =
        json!({"article": {"title": title, "description": "d", "body": "b", "tagList": tags}});
    let made = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/articles"),
        Some(token),
        Some(body),
    )
    .await;
    made["article"]["slug"].as_str().expect("slug").to_owned()
}

fn run_check(prefix: &str) -> Report {
    let args = Args {
        redis: Some(redis_url()),
        cluster: None,
        prefix: prefix.to_owned(),
        examples: 50,
        json: false,
    };
    check::run(&args).expect("check reads redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_api_data_and_names_broken_invariants() {
    let prefix = unique_prefix();
    let base = spawn_replica(&prefix);
    let http = reqwest::Client::new();
    let ann = register(&http, &base, "ann").await;
    let bob = register(&http, &base, "bob").await;
    let cy = register(&http, &base, "cy").await;
    use reqwest::Method;
    call(
        &http,
        Method::POST,
        format!("{base}/api/profiles/ann/follow"),
        Some(&bob),
        None,
    )
    .await;
    call(
        &http,
        Method::POST,
        format!("{base}/api/profiles/ann/follow"),
        Some(&cy),
        None,
    )
    .await;
    let first = article(&http, &base, &ann, "First", &["rust", "redis"]).await;
    let second = article(&http, &base, &ann, "Second", &["rust"]).await;
    let third = article(&http, &base, &bob, "Third", &["cluster"]).await;
    call(
        &http,
        Method::POST,
        format!("{base}/api/articles/{first}/favorite"),
        Some(&bob),
        None,
    )
    .await;
    call(
        &http,
        Method::POST,
        format!("{base}/api/articles/{second}/favorite"),
        Some(&cy),
        None,
    )
    .await;
    call(
        &http,
        Method::POST,
        format!("{base}/api/articles/{third}/favorite"),
        Some(&ann),
        None,
    )
    .await;
    let comment = json!({"comment": {"body": "nice"}});
    call(
        &http,
        Method::POST,
        format!("{base}/api/articles/{first}/comments"),
        Some(&cy),
        Some(comment),
    )
    .await;
    // A deleted article a fan had favorited and followers had in their feeds.
    call(
        &http,
        Method::DELETE,
        format!("{base}/api/articles/{second}"),
        Some(&ann),
        None,
    )
    .await;
    call(
        &http,
        Method::DELETE,
        format!("{base}/api/profiles/ann/follow"),
        Some(&cy),
        None,
    )
    .await;

    // The fan-out of the delete runs inline for so few followers; give a worker a moment anyway.
    let mut report = run_check(&prefix);
    for _ in 0..20 {
        if report.passed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = run_check(&prefix);
    }
    assert!(report.passed, "{}", check::render(&report));
    assert_eq!(report.users, 3);
    assert_eq!(report.articles, 2);
    assert_eq!(report.comments, 1);
    assert_eq!(report.follows, 1);
    assert_eq!(report.favorites, 2);

    // Break the data by hand: an article hash gone with its index entries left, a tag count
    // bumped, a stored favorites count off.
    let keys = Keys::new(&prefix);
    let mut con = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("redis connection");
    let third_id: String = {
        let got = call(
            &http,
            Method::GET,
            format!("{base}/api/articles/{third}"),
            None,
            None,
        )
        .await;
        assert_eq!(got["article"]["slug"], third);
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.authored(&user_id(&mut con, &keys, "bob")))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .expect("bob's list");
        ids.into_iter().next().expect("bob wrote one article")
    };
    let _: () = redis::cmd("DEL")
        .arg(keys.article(&third_id))
        .query(&mut con)
        .expect("DEL");
    let _: () = redis::cmd("ZINCRBY")
        .arg(keys.tag_counts_of("rust"))
        .arg(1)
        .arg("rust")
        .query(&mut con)
        .expect("ZINCRBY");
    let ann_first: String = {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(keys.authored(&user_id(&mut con, &keys, "ann")))
            .arg(0)
            .arg(0)
            .query(&mut con)
            .expect("ann's list");
        ids.into_iter().next().expect("ann wrote an article")
    };
    let _: () = redis::cmd("HSET")
        .arg(keys.article(&ann_first))
        .arg("favorites")
        .arg(7)
        .query(&mut con)
        .expect("HSET");
    let report = run_check(&prefix);
    let text = check::render(&report);
    assert!(!report.passed, "{text}");
    for invariant in [
        "favorites count unlike favorited-by",
        "global index entry without article",
        "author's list entry without article",
        "tag index entry without article",
        "favorite without article",
        "tag count differs from its index",
    ] {
        assert!(
            report.violations.contains_key(invariant),
            "{invariant} not reported:\n{text}"
        );
    }
    assert!(text.contains(&keys.tagged("cluster")), "{text}");
    assert!(text.contains("\"rust\": count 2"), "{text}");

    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{}:*", keys.prefix()))
        .query(&mut con)
        .expect("cleanup");
}

fn user_id(con: &mut redis::Connection, keys: &Keys, name: &str) -> String {
    redis::cmd("HGET")
        .arg(keys.username_claim(name))
        .arg("owner")
        .query(con)
        .expect("username claim")
}

/// The user id in a token's claims.
fn subject(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64 claims"),
    )
    .expect("JSON claims");
    claims["sub"].as_str().expect("sub").to_owned()
}

/// One write that spans slots, as its route runs it, and the request a client retries it with.
struct Write {
    name: &'static str,
    steps: &'static [&'static str],
    method: reqwest::Method,
    path: &'static str,
    body: Option<Value>,
    /// Made by `bob` (who follows `ann`) instead of `ann`, or by nobody (registration).
    by: &'static str,
}

fn writes() -> Vec<Write> {
    use reqwest::Method;
    let article = json!({"article": {"title": "Second", "description": "d", "body": "b", "tagList": ["rust", "new"]}});
    vec![
        Write {
            name: "create article",
            steps: &[
                "slug_claim",
                "put_article",
                "author_list",
                "tags",
                "global_index",
            ],
            method: Method::POST,
            path: "/api/articles",
            body: Some(article),
            by: "ann",
        },
        Write {
            name: "update article",
            steps: &[
                "new_slug_claim",
                "update_article",
                "old_slug_released",
                "tags_added",
            ],
            method: Method::PUT,
            path: "/api/articles/first",
            body: Some(json!({"article": {"title": "Renamed", "tagList": ["rust", "new"]}})),
            by: "ann",
        },
        Write {
            name: "delete article",
            steps: &[
                "tags_removed",
                "global_index_removed",
                "delete_from_author_list",
                "feeds_removed",
                "delete_article",
                "fans_unfavorited",
            ],
            method: Method::DELETE,
            path: "/api/articles/first",
            body: None,
            by: "ann",
        },
        Write {
            name: "favorite",
            steps: &["favorite_commit"],
            method: Method::POST,
            path: "/api/articles/first/favorite",
            body: None,
            by: "ann",
        },
        Write {
            name: "follow",
            steps: &["follow_commit", "followers"],
            method: Method::POST,
            path: "/api/profiles/bob/follow",
            body: None,
            by: "ann",
        },
        Write {
            name: "unfollow",
            steps: &["follow_commit", "followers"],
            method: Method::DELETE,
            path: "/api/profiles/ann/follow",
            body: None,
            by: "bob",
        },
        Write {
            name: "register",
            steps: &["user_claims", "put_user"],
            method: Method::POST,
            path: "/api/users",
            body: Some(
                json!({"user": {"username": "dee", "email": "dee@example.com", "password": "password123"}}),
            ),
            by: "",
        },
        Write {
            name: "update user",
            steps: &["new_user_claims", "update_user"],
            method: Method::PUT,
            path: "/api/user",
            body: Some(json!({"user": {"username": "anna", "email": "anna@example.com"}})),
            by: "ann",
        },
    ]
}

/// Runs `write` through `store` as its route would, with the lease of the client's request.
async fn run_stopped(
    store: &conduit_api::store::Store,
    lease: &conduit_api::store::IdempotencyLease,
    write: &Write,
    caller: &str,
) -> bool {
    use conduit_api::store::{ArticleChanges, NewArticle, UserChanges};
    let lease = Some(lease);
    let tags = vec!["rust".to_owned(), "new".to_owned()];
    match write.name {
        "create article" => {
            let new = NewArticle {
                slug_base: "second",
                title: "Second",
                description: "d",
                body: "b",
                tags: &tags,
            };
            store.create_article(lease, caller, &new).await.is_err()
        }
        "update article" => {
            let changes = ArticleChanges {
                title: Some("Renamed".into()),
                slug_base: Some("renamed".into()),
                tags: Some(tags.clone()),
                ..Default::default()
            };
            store
                .update_article(lease, caller, "first", &changes)
                .await
                .is_err()
        }
        "delete article" => store.delete_article(lease, caller, "first").await.is_err(),
        "favorite" => store.favorite(lease, caller, "first", true).await.is_err(),
        "follow" => store.follow(lease, caller, "bob", true).await.is_err(),
        "unfollow" => store.follow(lease, caller, "ann", false).await.is_err(),
        "register" => store
            .create_user(lease, "dee", "dee@example.com", "not-a-real-hash")
            .await
            .is_err(),
        "update user" => {
            let changes = UserChanges {
                username: Some("anna".into()),
                email: Some("anna@example.com".into()),
                ..Default::default()
            };
            store.update_user(lease, caller, &changes).await.is_err()
        }
        other => panic!("no such write: {other}"),
    }
}

/// Every write that spans slots, stopped after each of its steps as if its replica died there,
/// then retried by the client with the same `Idempotency-Key` through another replica: the
/// data set `check` walks is whole again, every index entry live and every entity indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stopped_after_any_step_and_retried_leaves_a_whole_data_set() {
    use conduit_api::store::{Begin, Store};
    let http = reqwest::Client::new();
    let mut stops = 0;
    for write in writes() {
        for step in write.steps {
            // Arrange: ann wrote "First" (tags rust, redis), bob follows and favorited it.
            let prefix = unique_prefix();
            let base = spawn_replica(&prefix);
            let ann = register(&http, &base, "ann").await;
            let bob = register(&http, &base, "bob").await;
            let url = |path: &str| format!("{base}{path}");
            use reqwest::Method;
            call(
                &http,
                Method::POST,
                url("/api/profiles/ann/follow"),
                Some(&bob),
                None,
            )
            .await;
            let first = article(&http, &base, &ann, "First", &["rust", "redis"]).await;
            assert_eq!(first, "first");
            call(
                &http,
                Method::POST,
                url("/api/articles/first/favorite"),
                Some(&bob),
                None,
            )
            .await;
            assert!(
                run_check(&prefix).passed,
                "{}: the data set before",
                write.name
            );

            // Act: the write stops after `step`; its lease is given back, as a 503 does.
            let token = match write.by {
                "ann" => Some(ann.as_str()),
                "bob" => Some(bob.as_str()),
                _ => None,
            };
            let scope = token.map_or_else(|| "anon".to_owned(), subject);
            let body = write
                .body
                .as_ref()
                .map(|b| b.to_string().into_bytes())
                .unwrap_or_default();
            let ring = conduit_api::auth::KeyRing::parse(JWT_KEYS, "conduit", "conduit", 3600)
                .expect("the test key ring");
            let fingerprints = conduit_api::idempotency::fingerprints(
                &ring,
                write.method.as_str(),
                write.path,
                "",
                &body,
            );
            let store = Store::new(
                &conduit_api::store::RedisTarget::Single(redis_url()),
                &prefix,
                Duration::from_secs(2),
            )
            .expect("store")
            .stopping_after(step);
            let key = format!("stop-{step}");
            let Begin::Proceed { lease, .. } = store
                .idempotency_begin(&scope, &key, &fingerprints, 10, 600)
                .await
                .expect("begin")
            else {
                panic!("{}: expected to proceed", write.name);
            };
            assert!(
                run_stopped(&store, &lease, &write, &scope).await,
                "{}: no step {step} to stop after",
                write.name
            );
            store.idempotency_release(&lease).await.expect("release");
            stops += 1;

            // The client's retry, with the same key and body, on a healthy replica.
            let mut retry = http
                .request(write.method.clone(), url(write.path))
                .header("Idempotency-Key", &key)
                .header("Content-Type", "application/json");
            if let Some(token) = token {
                retry = retry.header("Authorization", format!("Token {token}"));
            }
            if !body.is_empty() {
                retry = retry.body(body.clone());
            }
            let reply = retry.send().await.expect("retry answered");
            let status = reply.status();
            assert!(
                status.is_success(),
                "{} stopped after {step}: retry {status} {}",
                write.name,
                reply.text().await.unwrap_or_default()
            );

            // Assert: whole again.
            let report = run_check(&prefix);
            assert!(
                report.passed,
                "{} stopped after {step}, then retried: {:?} {:?}",
                write.name, report.violations, report.examples
            );
        }
    }
    assert_eq!(stops, writes().iter().map(|w| w.steps.len()).sum::<usize>());
}
