//! `Idempotency-Key` handling, shared by every POST, PUT and DELETE.
//!
//! Every POST, PUT and DELETE takes part except login, which writes nothing.
//!
//! The middleware scopes the key to the caller (user id from a valid token, or `anon`), fingerprints
//! the request (method, path, query, body), and asks the store what to do:
//! - first time: take a lease and run the handler. The handler passes the lease to its store write,
//!   which commits the result atomically with the write itself; the middleware then stores the
//!   response for replay (2xx and 4xx) or releases the key (5xx).
//! - completed before: replay the stored status and body (`Idempotent-Replayed: true`), from any
//!   replica, without running the handler.
//! - still in flight elsewhere: 409 with `Retry-After`.
//! - same key, different request: 422.
//!
//! A replica that dies before committing leaves a lease that expires; a retry then runs the request.
//! One that dies after committing leaves a committed result; a retry re-renders it without writing
//! again. Either way the write happens at most once.

use std::future::{ready, Ready};

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

use crate::auth::authenticate_request;
use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Begin, IdempotencyLease};

/// Longest accepted `Idempotency-Key`.
const MAX_KEY_LEN: usize = 255;

/// The lease of the current request, if it carries an `Idempotency-Key`.
#[derive(Debug, Clone, Default)]
pub struct Idem(Option<IdempotencyLease>);

impl Idem {
    pub fn lease(&self) -> Option<&IdempotencyLease> {
        self.0.as_ref()
    }
}

impl FromRequest for Idem {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Idem(
            req.extensions().get::<IdempotencyLease>().cloned(),
        )))
    }
}

/// Identifies a request for an idempotency key: a key reused for another request is refused.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

/// The middleware; see the module docs. Its steps: read the key, begin (buffer and fingerprint
/// the body, take the lease or answer from the record), run the handler, finish (store the
/// response, or give the key back).
pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = match idempotency_key(&req) {
        Ok(Some(key)) => key,
        Ok(None) => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Err(err) => return Ok(req.into_response(err.error_response())),
    };
    let (state, lease) = match begin(&mut req, &key).await {
        Ok(Started::Proceed(state, lease)) => (state, lease),
        Ok(Started::Answered(response)) => return Ok(req.into_response(response)),
        Err(err) => return Ok(req.into_response(err.error_response())),
    };
    req.extensions_mut().insert(lease.clone());
    let response = next.call(req).await?.map_into_boxed_body();
    Ok(finish(&state, &lease, response).await)
}

/// The request's `Idempotency-Key` when it is a write that takes one, `None` otherwise.
/// Logging in changes nothing (it is safe to repeat), and its response is a fresh token that
/// has no business being stored: it is recognised by the route the router matches.
///
/// # Errors
/// The header is there but not 1 to [`MAX_KEY_LEN`] visible ASCII characters.
fn idempotency_key(req: &ServiceRequest) -> Result<Option<String>, ApiError> {
    let is_write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) && crate::routes::matched_route(req.request()).as_deref()
        != Some("/api/users/login");
    let Some(key) = req.headers().get("idempotency-key").filter(|_| is_write) else {
        return Ok(None);
    };
    match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY_LEN => Ok(Some(k.trim().to_owned())),
        _ => Err(ApiError::BadRequest(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )),
    }
}

/// How beginning an idempotent request ended.
enum Started {
    /// The request holds the key's lease: run it.
    Proceed(web::Data<AppState>, IdempotencyLease),
    /// The key's record answers: a replay of the stored response.
    Answered(HttpResponse),
}

/// Begins an idempotent request for the caller: buffers and fingerprints the body, then takes
/// the key's lease, or answers from its record.
///
/// # Errors
/// The token is refused, the body is too large or unreadable, the key is in flight (409) or was
/// used for another request (422), or Redis failed.
async fn begin(req: &mut ServiceRequest, key: &str) -> Result<Started, ApiError> {
    let scope = authenticate_request(req.request())?.map_or_else(|| "anon".to_owned(), |u| u.id);
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let body = buffer_body(req).await?;
    let fingerprint = fingerprint(req.method().as_str(), req.path(), req.query_string(), &body);
    req.set_payload(Payload::from(body));
    let config = &state.config;
    let begun = state
        .store
        .idempotency_begin(
            &scope,
            key,
            &fingerprint,
            config.idempotency_lease,
            config.idempotency_ttl,
        )
        .await?;
    match begun {
        Begin::Proceed(lease) => Ok(Started::Proceed(state, lease)),
        Begin::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = HttpResponse::build(status);
            response.insert_header(("Idempotent-Replayed", "true"));
            if !body.is_empty() {
                response.content_type("application/json");
            }
            Ok(Started::Answered(response.body(body)))
        }
        Begin::InFlight => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is in progress",
        )),
        Begin::Mismatch => Err(ApiError::unprocessable(
            "Idempotency-Key",
            "was already used for a different request",
        )),
    }
}

/// Reads the request body, at most [`MAX_BODY_BYTES`], for the fingerprint.
async fn buffer_body(req: &mut ServiceRequest) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() <= MAX_BODY_BYTES => {
                body.extend_from_slice(&chunk)
            }
            Ok(_) => return Err(ApiError::PayloadTooLarge),
            Err(_) => return Err(ApiError::BadRequest("body", "could not be read".into())),
        }
    }
    Ok(body.freeze())
}

/// Stores the handler's response in the key's record, or gives the key back when the response
/// must not be replayed (a 5xx, or a 401, 408, 409 or 429 that a retry may get past).
async fn finish(
    state: &AppState,
    lease: &IdempotencyLease,
    response: ServiceResponse<BoxBody>,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let storable = status.is_success()
        || (status.is_client_error() && !matches!(status.as_u16(), 401 | 408 | 409 | 429));
    if !storable {
        if let Err(err) = state.store.idempotency_release(lease).await {
            log::warn!("could not release idempotency key error={err}");
        }
        return response;
    }
    let (http_req, res) = response.into_parts();
    let (head, body) = res.into_parts();
    let Ok(bytes) = to_bytes(body).await else {
        return ServiceResponse::new(
            http_req,
            ApiError::Internal(anyhow::anyhow!("response body unreadable")).error_response(),
        );
    };
    if let Err(err) = state
        .store
        .idempotency_finish(lease, status.as_u16(), &bytes)
        .await
    {
        // The write itself is committed; a retry will re-render it, so the client still gets its answer.
        log::warn!("could not store idempotent response error={err}");
    }
    ServiceResponse::new(http_req, head.set_body(BoxBody::new(bytes)))
}
