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

/// The middleware; see the module docs.
pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // Logging in changes nothing (it is safe to repeat), and its response is a fresh token that
    // has no business being stored.
    let is_write = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) && crate::routes::matched_route(req.request()).as_deref()
        != Some("/api/users/login");
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .filter(|_| is_write)
        .cloned()
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let fail = |req: ServiceRequest, err: ApiError| Ok(req.into_response(err.error_response()));
    let key = match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY_LEN => k.trim().to_owned(),
        _ => {
            return fail(
                req,
                ApiError::BadRequest(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
                ),
            )
        }
    };
    let scope = match authenticate_request(req.request()) {
        Ok(Some(user)) => user.id,
        Ok(None) => "anon".to_owned(),
        Err(err) => return fail(req, err),
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return fail(
            req,
            ApiError::Internal(anyhow::anyhow!("application state missing")),
        );
    };

    // Read the body (bounded) to fingerprint it, then hand it back to the handler.
    let mut body = web::BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) if body.len() + chunk.len() <= MAX_BODY_BYTES => {
                body.extend_from_slice(&chunk)
            }
            Ok(_) => return fail(req, ApiError::PayloadTooLarge),
            Err(_) => {
                return fail(
                    req,
                    ApiError::BadRequest("body", "could not be read".into()),
                )
            }
        }
    }
    let body = body.freeze();
    let fingerprint = fingerprint(req.method().as_str(), req.path(), req.query_string(), &body);
    req.set_payload(Payload::from(body));

    let config = &state.config;
    let begin = state
        .store
        .idempotency_begin(
            &scope,
            &key,
            &fingerprint,
            config.idempotency_lease,
            config.idempotency_ttl,
        )
        .await;
    let lease = match begin {
        Ok(Begin::Proceed(lease)) => lease,
        Ok(Begin::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = HttpResponse::build(status);
            response.insert_header(("Idempotent-Replayed", "true"));
            if !body.is_empty() {
                response.content_type("application/json");
            }
            return Ok(req.into_response(response.body(body)));
        }
        Ok(Begin::InFlight) => {
            return fail(
                req,
                ApiError::Conflict("a request with this Idempotency-Key is in progress"),
            )
        }
        Ok(Begin::Mismatch) => {
            return fail(
                req,
                ApiError::unprocessable(
                    "Idempotency-Key",
                    "was already used for a different request",
                ),
            );
        }
        Err(err) => return fail(req, err.into()),
    };

    req.extensions_mut().insert(lease.clone());
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    let storable = status.is_success()
        || (status.is_client_error() && !matches!(status.as_u16(), 401 | 408 | 409 | 429));
    if !storable {
        if let Err(err) = state.store.idempotency_release(&lease).await {
            log::warn!("could not release idempotency key error={err}");
        }
        return Ok(response);
    }
    let (http_req, res) = response.into_parts();
    let (head, body) = res.into_parts();
    let bytes = match to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Ok(ServiceResponse::new(
                http_req,
                ApiError::Internal(anyhow::anyhow!("response body unreadable")).error_response(),
            ))
        }
    };
    if let Err(err) = state
        .store
        .idempotency_finish(&lease, status.as_u16(), &bytes)
        .await
    {
        // The write itself is committed; a retry will re-render it, so the client still gets its answer.
        log::warn!("could not store idempotent response error={err}");
    }
    let res = head.set_body(BoxBody::new(bytes));
    Ok(ServiceResponse::new(http_req, res))
}
