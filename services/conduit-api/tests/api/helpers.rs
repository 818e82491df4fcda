//! Test harness: real replicas on port 0 against a real Redis, each test with its own key prefix.

use std::sync::OnceLock;

use conduit_api::config::Config;
use conduit_api::Application;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The key ring every test replica shares.
pub const TEST_KEYS: &str = "test1:0123456789abcdef0123456789abcdef0123";
/// A second key, for rotation tests.
pub const OTHER_KEY: &str = "test2:fedcba9876543210fedcba9876543210fedc";

/// The single Redis for the tests: `CONDUIT_TEST_REDIS_URL`, set by scripts/test.sh. There is
/// no default: a test never talks to a Redis it was not given.
pub fn redis_url() -> String {
    std::env::var("CONDUIT_TEST_REDIS_URL")
        .expect("CONDUIT_TEST_REDIS_URL is not set: run the tests with scripts/test.sh")
}

/// The Redis Cluster seeds when the suite runs in cluster mode
/// (`CONDUIT_TEST_REDIS_CLUSTER_URLS`, set by scripts/test.sh for its second run).
pub fn cluster_urls() -> Option<String> {
    std::env::var("CONDUIT_TEST_REDIS_CLUSTER_URLS")
        .ok()
        .filter(|urls| !urls.trim().is_empty())
}

/// The data tier of this run: `REDIS_CLUSTER_URLS` in cluster mode, else `REDIS_URL`.
pub fn redis_env(command: &mut std::process::Command) -> &mut std::process::Command {
    match cluster_urls() {
        Some(urls) => command.env("REDIS_CLUSTER_URLS", urls),
        None => command
            .env("REDIS_URL", redis_url())
            .env_remove("REDIS_CLUSTER_URLS"),
    }
}

/// The URLs of the Redis servers that hold data: the single node, or every cluster primary.
pub fn data_nodes() -> Vec<String> {
    let Some(urls) = cluster_urls() else {
        return vec![redis_url()];
    };
    let seed = urls.split(',').next().unwrap_or_default().trim().to_owned();
    let mut con = redis::Client::open(seed)
        .unwrap()
        .get_connection()
        .expect("cannot reach the test cluster (is scripts/test.sh running it?)");
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con).unwrap();
    let primaries: Vec<String> = conduit_api::store::serving_primaries(&nodes)
        .into_iter()
        .map(|addr| format!("redis://{addr}"))
        .collect();
    assert!(!primaries.is_empty(), "no primary in CLUSTER NODES");
    primaries
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = conduit_api::telemetry::init(
                "test",
                "debug",
                conduit_api::telemetry::LogTarget::Stdout,
                conduit_api::telemetry::TraceTrust::Continue,
            );
        }
    });
}

/// A configuration for a test replica; adjust fields before `spawn_with`.
///
/// Parsed by the binary's own parser, so every setting a test does not name has its default.
pub fn test_config(prefix: &str, replica: &str) -> Config {
    let redis_url = redis_url();
    let args = [
        "conduit-api",
        "--addr=127.0.0.1:0",
        &format!("--redis-url={redis_url}"),
        &format!("--redis-prefix={prefix}"),
        "--redis-timeout-ms=1000",
        &format!("--jwt-keys={TEST_KEYS}"),
        "--token-ttl=3600",
        &format!("--replica-id={replica}"),
        "--drain-seconds=0",
        "--workers=1",
        "--idempotency-ttl=600",
        // Tests register many users from 127.0.0.1; the limit's own test sets it.
        "--registrations-per-address=0",
    ];
    let mut config = Config::try_parse_from(args).unwrap();
    config.redis_cluster_urls = cluster_urls();
    config
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The fingerprints a replica with the test key ring computes for a request, for tests that
/// play a replica against the store.
pub fn fingerprints(method: &str, path: &str, body: &[u8]) -> Vec<String> {
    let ring = conduit_api::auth::KeyRing::parse(TEST_KEYS, "conduit", "conduit", 3600).unwrap();
    conduit_api::idempotency::fingerprints(&ring, method, path, "", body)
}

pub fn unique_prefix() -> String {
    conduit_api::testing::unique_prefix("test")
}

/// A running replica and a client for it.
pub struct TestApp {
    pub address: String,
    pub replica: String,
    pub prefix: String,
    pub client: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}

/// A response, decoded.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn served_by(&self) -> String {
        self.headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
    /// Asserts the RealWorld error shape and returns the `errors` object.
    pub fn errors(&self) -> &serde_json::Map<String, Value> {
        let errors = self.body["errors"]
            .as_object()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body));
        for (field, messages) in errors {
            let list = messages
                .as_array()
                .unwrap_or_else(|| panic!("{field} is not a list: {}", self.body));
            assert!(
                !list.is_empty() && list.iter().all(Value::is_string),
                "{}",
                self.body
            );
        }
        errors
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(test_config(&unique_prefix(), "replica-a")).await
}

pub async fn spawn_with(config: Config) -> TestApp {
    init_logs();
    let prefix = config.redis_prefix.clone();
    let replica = config.replica_id.clone().unwrap_or_default();
    let app = Application::build(config).expect("failed to build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped(false));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    TestApp {
        address,
        replica,
        prefix,
        client,
        handle,
    }
}

impl TestApp {
    /// Stops the replica, gracefully (open connections are served until they close) or not.
    pub fn stop(&self, graceful: bool) -> impl std::future::Future<Output = ()> {
        self.handle.stop(graceful)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path));
        if let Some(token) = token {
            req = req.header("Authorization", format!("Token {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.header("Content-Type", "application/json").body(body);
        }
        let res = req.send().await.expect("request failed");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body unreadable");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `GET path` with this exact `Authorization` header.
    pub async fn get_with_authorization(&self, path: &str, authorization: &str) -> Reply {
        self.raw(
            Method::GET,
            path,
            None,
            None,
            &[("Authorization", authorization)],
        )
        .await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.raw(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
            &[],
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }

    /// Registers `name` (email `<name>@example.com`, password `password123`) and returns its token.
    pub async fn register(&self, name: &str) -> String {
        let reply = self.post("/api/users", None, json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["user"]["token"].as_str().unwrap().to_owned()
    }

    /// Logs in as `name`, registered by [`TestApp::register`], with the right password.
    pub async fn login(&self, name: &str) -> Reply {
        self.post(
            "/api/users/login",
            None,
            json!({"user": {"email": format!("{name}@example.com"), "password": "password123"}}),
        )
        .await
    }

    /// Creates an article and returns its slug.
    pub async fn create_article(&self, token: &str, title: &str, tags: &[&str]) -> String {
        let reply = self
            .post("/api/articles", Some(token), json!({"article": {"title": title, "description": "about it", "body": "the text", "tagList": tags}}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["article"]["slug"].as_str().unwrap().to_owned()
    }

    /// Every key under this app's prefix, per data node (every primary in cluster mode).
    pub fn keys_by_node(&self) -> Vec<(String, Vec<String>)> {
        data_nodes()
            .into_iter()
            .map(|node| {
                let mut con = redis::Client::open(node.as_str())
                    .unwrap()
                    .get_connection()
                    .expect("cannot reach the test Redis (is scripts/test.sh running it?)");
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query(&mut con)
                    .unwrap();
                (node, keys)
            })
            .collect()
    }

    /// Runs one command on the test Redis, routed to the key's node in cluster mode.
    pub fn redis_cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        match cluster_urls() {
            Some(urls) => {
                let client = redis::cluster::ClusterClient::new(urls.split(',').map(str::trim))
                    .expect("bad CONDUIT_TEST_REDIS_CLUSTER_URLS");
                let mut con = client
                    .get_connection()
                    .expect("cannot reach the test cluster (is scripts/test.sh running it?)");
                cmd.query(&mut con).unwrap()
            }
            None => {
                let mut con = redis::Client::open(redis_url())
                    .unwrap()
                    .get_connection()
                    .expect("cannot reach the test Redis (is scripts/test.sh running it?)");
                cmd.query(&mut con).unwrap()
            }
        }
    }

    /// The bytes Redis holds for the keys under this app's prefix (`MEMORY USAGE`, summed
    /// over every key on every data node).
    pub fn stored_bytes(&self) -> i64 {
        self.each_key(|con, key| {
            let usage: Option<i64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query(con)
                .unwrap();
            vec![usage.unwrap_or(0)]
        })
        .into_iter()
        .sum()
    }

    /// Every value stored under this app's prefix, as bytes: string values, hash fields and
    /// values, set and sorted-set members, stream entries.
    pub fn stored_values(&self) -> Vec<Vec<u8>> {
        self.each_key(|con, key| {
            let kind: String = redis::cmd("TYPE").arg(key).query(con).unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(key).query(con).unwrap()],
                "hash" => redis::cmd("HGETALL").arg(key).query(con).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(key).query(con).unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query(con)
                    .unwrap(),
                "stream" => {
                    let v: redis::Value = redis::cmd("XRANGE")
                        .arg(key)
                        .arg("-")
                        .arg("+")
                        .query(con)
                        .unwrap();
                    vec![format!("{v:?}").into_bytes()]
                }
                _ => vec![],
            };
            values
        })
    }

    /// `f` over every key under this app's prefix, on the node that holds it.
    fn each_key<T>(&self, f: impl Fn(&mut redis::Connection, &str) -> Vec<T>) -> Vec<T> {
        let mut out = Vec::new();
        for (node, keys) in self.keys_by_node() {
            let mut con = redis::Client::open(node.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            for key in keys {
                out.extend(f(&mut con, &key));
            }
        }
        out
    }

    /// Every key under this app's prefix.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .keys_by_node()
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect();
        keys.sort();
        keys
    }
}
