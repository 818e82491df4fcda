//! Builds the HTTP application and runs it until it is stopped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpServer, ResponseError as _};
use anyhow::Context as _;

use crate::access;
use crate::auth::{KeyRing, Passwords};
use crate::config::{Config, MAX_BODY_BYTES};
use crate::cors::{self, CorsPolicy};
use crate::error::{error_response, ApiError, FieldErrors};
use crate::idempotency::idempotency;
use crate::routes::{self, Draining};
use crate::state::AppState;
use crate::store::Store;

/// A bound, ready-to-run replica.
pub struct Application {
    port: u16,
    store: Store,
    server: Server,
    draining: Draining,
    drain: Duration,
    replica_id: String,
}

impl Application {
    /// Loads the key ring, prepares the Redis handle (without connecting) and binds the listener.
    ///
    /// # Errors
    /// No or invalid signing keys, an invalid Redis URL, or an address that cannot be bound.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let cors_policy =
            CorsPolicy::parse(&config.cors_origins).context("invalid CONDUIT_CORS_ORIGINS")?;
        let keys = load_key_ring(&config)?;
        let target = config.redis_target();
        let store = Store::new(
            &target,
            &config.redis_prefix,
            Duration::from_millis(config.redis_timeout_ms),
        )?
        .with_inline_fanout(config.fanout_inline)
        .with_min_replicas(config.min_replicas());
        let listener = TcpListener::bind(config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let replica_id = config.replica_id();
        let draining = Draining::default();
        let drain = Duration::from_secs(config.drain_seconds);
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        log::info!(
            "replica starting port={port} workers={workers} redis={} min_replicas={} signing_kid={} ring={} cors={cors_policy}",
            target.mode(),
            config.min_replicas(),
            keys.current_kid(),
            keys.fingerprint()
        );
        let keys = Arc::new(keys);
        let passwords = Arc::new(Passwords::new(
            config.password_hashers(),
            config.password_queue,
        ));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The login of an unknown account checks a dummy hash: make it before any login.
            let passwords = passwords.clone();
            runtime.spawn(async move {
                if let Err(err) = passwords.dummy_hash().await {
                    log::warn!("dummy password hash failed error={err}");
                }
            });
        }
        let shared = draining.clone();
        let replica = replica_id.clone();
        let workers_store = store.clone();
        let server = HttpServer::new(move || {
            // Built once per worker, on the worker's thread: see `Store::own_connection`.
            let state = web::Data::new(AppState {
                config: config.clone(),
                store: workers_store.own_connection(),
                key_ring: keys.clone(),
                passwords: passwords.clone(),
                replica_id: replica.clone(),
                draining: shared.clone(),
            });
            App::new()
                .app_data(state)
                .app_data(json_config())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|_, _| ApiError::NotFound("resource").into()),
                )
                .configure(routes::configure)
                .default_service(web::to(no_route))
                .wrap(from_fn(idempotency))
                // Outside idempotency (and the handlers' token checks): a preflight is answered
                // here and goes no further, so it never touches Redis.
                .wrap(cors_policy.middleware())
                .wrap(from_fn(cors::shape_preflight))
                .wrap(ErrorHandlers::new().default_handler(json_error_body))
                .wrap(from_fn(access::observe))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            store,
            server,
            draining,
            drain,
            replica_id,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The replica id this process answers with.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The draining flag, to start a graceful shutdown.
    pub fn draining(&self) -> Draining {
        self.draining.clone()
    }

    /// Serves until stopped. With `on_signals`, SIGTERM or SIGINT starts a graceful shutdown:
    /// readiness turns 503 at once, requests are served for the drain time, then the listener
    /// closes and in-flight requests finish.
    pub async fn run_until_stopped(self, on_signals: bool) -> std::io::Result<()> {
        if on_signals {
            let (handle, draining, drain) =
                (self.server.handle(), self.draining.clone(), self.drain);
            actix_web::rt::spawn(async move {
                wait_for_signal().await;
                log::info!(
                    "shutdown requested, draining drain_seconds={}",
                    drain.as_secs()
                );
                draining.start();
                actix_web::rt::time::sleep(drain).await;
                log::info!("drain over, finishing in-flight requests");
                handle.stop(true).await;
            });
        }
        // The feed fan-out worker, on a connection of its own (it polls the job stream).
        let worker = tokio::spawn(
            self.store
                .own_connection()
                .run_fanout_worker(crate::store::consumer_name(&self.replica_id)),
        );
        let result = self.server.await;
        worker.abort();
        result
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reads the key ring from `CONDUIT_JWT_KEYS` or `CONDUIT_JWT_KEYS_FILE`.
pub fn load_key_ring(config: &Config) -> anyhow::Result<KeyRing> {
    let spec = match (&config.jwt_keys, &config.jwt_keys_file) {
        (Some(keys), _) if !keys.trim().is_empty() => keys.clone(),
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key ring file {}", path.display()))?,
        _ => anyhow::bail!(NO_KEY_HELP),
    };
    KeyRing::parse(
        &spec,
        &config.jwt_issuer,
        &config.jwt_audience,
        config.token_ttl,
    )
    .map_err(|e| match e {
        crate::auth::KeyRingError::Empty => anyhow::anyhow!(NO_KEY_HELP),
        other => anyhow::anyhow!("invalid signing key ring: {other}"),
    })
}

/// Shown when no key is configured. A random per-process key would make every other replica
/// reject this one's tokens, so the replica refuses to start instead.
pub const NO_KEY_HELP: &str = "no signing key configured. All replicas must share one key ring: \
create one with `conduit-api keygen --out jwt-keys` and pass it as CONDUIT_JWT_KEYS_FILE=jwt-keys \
(or its line as CONDUIT_JWT_KEYS=kid:secret)";

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(false)
        .error_handler(|err, _req| {
            match &err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError::PayloadTooLarge,
                JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge,
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::unprocessable("body", e.to_string())
                }
                JsonPayloadError::Deserialize(_) => {
                    ApiError::BadRequest("body", "is not valid JSON".into())
                }
                _ => ApiError::BadRequest("body", "could not be read".into()),
            }
            .into()
        })
}

/// Answers a request no route took: 405 with `Allow` when the path exists with other methods,
/// else 404.
async fn no_route(req: HttpRequest) -> actix_web::HttpResponse {
    match routes::openapi::allowed_methods(req.path()) {
        Some(allow) => {
            let mut errors = FieldErrors::new();
            errors.insert("method".to_owned(), vec![format!("must be one of {allow}")]);
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, errors);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
        None => ApiError::NotFound("route").error_response(),
    }
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::unprocessable("query", err.to_string()).into()
}

/// Gives every error response that is not already JSON (404 for an unknown method, errors raised
/// inside actix) a body in the API's error format.
fn json_error_body<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let mut errors = FieldErrors::new();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    errors.insert("request".to_owned(), vec![reason]);
    let (req, old) = res.into_parts();
    let mut new = error_response(status, errors);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body(),
    ))
}
