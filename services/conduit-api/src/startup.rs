//! Builds the HTTP application and runs it until it is stopped.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, HttpRequest, HttpServer, ResponseError as _};
use anyhow::Context as _;
use tracing_actix_web::{RootSpanBuilder, TracingLogger};

use crate::auth::KeyRing;
use crate::config::Config;
use crate::error::{error_response, ApiError, FieldErrors};
use crate::idempotency::idempotency;
use crate::routes::{self, Draining};
use crate::store::Store;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler may use. It holds handles and configuration, never client data.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub keys: KeyRing,
    pub replica_id: String,
    pub draining: Draining,
}

/// A bound, ready-to-run replica.
pub struct Application {
    port: u16,
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
        let keys = load_key_ring(&config)?;
        let store = Store::new(
            &config.redis_url,
            &config.redis_prefix,
            Duration::from_millis(config.redis_timeout_ms),
        )?;
        let listener = TcpListener::bind(config.addr)
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let replica_id = config.replica_id();
        let draining = Draining::default();
        let drain = Duration::from_secs(config.drain_seconds);
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        tracing::info!(replica = %replica_id, port, workers, signing_kid = keys.current_kid(), ring = %keys.fingerprint(), "replica starting");
        let _ = REPLICA_ID.set(replica_id.clone());
        let state = web::Data::new(AppState {
            config,
            store,
            keys,
            replica_id: replica_id.clone(),
            draining: draining.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
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
                .wrap(ErrorHandlers::new().default_handler(json_error_body))
                .wrap(from_fn(served_by))
                .wrap(TracingLogger::<ReplicaRootSpan>::new())
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
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
                tracing::info!(
                    drain_seconds = drain.as_secs(),
                    "shutdown requested, draining"
                );
                draining.start();
                actix_web::rt::time::sleep(drain).await;
                tracing::info!("drain over, finishing in-flight requests");
                handle.stop(true).await;
            });
        }
        self.server.await
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

static REPLICA_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The server span of each request: the route template, method, target, status and replica id,
/// continuing the caller's trace when the request carries a `traceparent`.
pub struct ReplicaRootSpan;

impl RootSpanBuilder for ReplicaRootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let replica = REPLICA_ID.get().map(String::as_str).unwrap_or("unknown");
        let method = request.method().as_str();
        let route = request.match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.method = method,
            http.route = route,
            http.target = %request.uri(),
            http.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            conduit.replica = replica,
        );
        crate::telemetry::continue_remote_trace(&span, request.headers());
        span
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("http.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            if let Some(error) = error {
                span.record("exception.message", tracing::field::display(error));
            }
        } else {
            span.record("otel.status_code", "OK");
        }
    }
}

/// Adds `X-Served-By` and `X-Trace-Id` to every response and logs one line per request.
async fn served_by(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    let start = Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let trace_id = crate::telemetry::current_trace_id();
    let mut res = match next.call(req).await {
        Ok(res) => res,
        Err(err) => return Err(err),
    };
    let headers = res.headers_mut();
    let replica = state.as_ref().map_or("unknown", |s| s.replica_id.as_str());
    if let Ok(value) = HeaderValue::from_str(replica) {
        headers.insert(header::HeaderName::from_static("x-served-by"), value);
    }
    if let Some(trace_id) = &trace_id {
        if let Ok(value) = HeaderValue::from_str(trace_id) {
            headers.insert(header::HeaderName::from_static("x-trace-id"), value);
        }
    }
    let status = res.status();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let latency_ms = format_args!("{:.3}", start.elapsed().as_secs_f64() * 1000.0);
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(target: "conduit_api::access", %method, %route, status = status.as_u16(), %latency_ms, "request");
    } else {
        tracing::info!(target: "conduit_api::access", %method, %route, status = status.as_u16(), %latency_ms, "request");
    }
    Ok(res)
}
