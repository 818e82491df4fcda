//! `Idempotency-Key` handling, shared by every POST, PUT and DELETE.
//!
//! Only the routes that write take part, recognised by the route the router matches and the
//! method ([`write_route`]): registration for anyone, every other write only with a valid token
//! (without one the handler answers 401 and nothing is stored). Login writes nothing and is
//! never stored; a request to no route, or with a method the route does not serve, neither.
//!
//! The middleware scopes the key to the caller (user id from a valid token, or `anon`), fingerprints
//! the request (method, path, query, body) with a keyed MAC, and asks the store what to do:
//! - first time: count the new record against the caller's cap (the user, or for registration
//!   the client address; 429 with Retry-After beyond it), take a lease and run the handler. The handler passes the lease to its store write,
//!   which commits the result atomically with the write itself; the middleware then stores the
//!   response for replay (2xx and 4xx) or releases the key (5xx).
//! - completed before: replay the stored status and body (`Idempotent-Replayed: true`), from any
//!   replica, without running the handler. A token is never stored: a response that carried one
//!   (register, `PUT /api/user`) is stored without it, and its replay gets a freshly signed
//!   token for the same user and token generation (none once the password has changed since).
//! - still in flight elsewhere: 409 with `Retry-After`.
//! - same key, different request: 422.
//!
//! A replica that dies before committing leaves a lease that expires; a retry then runs the request.
//! One that dies after committing leaves a committed result; a retry re-renders it without writing
//! again. Either way the write happens at most once.

use std::future::{ready, Ready};

use crate::auth::{authenticate_request, KeyRing};
use crate::client::{client_address, limited_address};
use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Begin, IdempotencyLease, TokenFor};
use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt as _;

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

/// Identifies a request for an idempotency key, so a key reused for another request is refused:
/// the MAC of method, path, query and body under each key of the ring (the signing key's first).
/// Keyed, because the body may hold a password: a record read out of Redis gives nothing to
/// guess it against without the ring.
pub fn fingerprints(
    ring: &KeyRing,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Vec<String> {
    ring.request_macs(&[method.as_bytes(), path.as_bytes(), query.as_bytes(), body])
}

/// Who may store a record on a writing route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone (registration, the one anonymous write).
    Anyone,
    /// Only a caller with a valid token.
    User,
}

/// Who may store idempotency records on the route `route` (a template as the router matched
/// it) with `method`; `None` for every request that is not a write (login included).
pub fn write_route(method: &Method, route: &str) -> Option<Caller> {
    match (method.as_str(), route) {
        ("POST", "/api/users") => Some(Caller::Anyone),
        ("PUT", "/api/user")
        | ("POST" | "DELETE", "/api/profiles/{username}/follow")
        | ("POST", "/api/articles")
        | ("PUT" | "DELETE", "/api/articles/{slug}")
        | ("POST" | "DELETE", "/api/articles/{slug}/favorite")
        | ("POST", "/api/articles/{slug}/comments")
        | ("DELETE", "/api/articles/{slug}/comments/{id}") => Some(Caller::User),
        _ => None,
    }
}

/// The middleware; see the module docs. Its steps: read the key, begin (buffer and fingerprint
/// the body, take the lease or answer from the record), run the handler, finish (store the
/// response, or give the key back).
pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (key, caller) = match idempotency_key(&req) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Err(err) => return Ok(req.into_response(err.error_response())),
    };
    let (state, lease) = match begin(&mut req, &key, caller).await {
        Ok(Started::Proceed(state, lease)) => (state, lease),
        Ok(Started::Unrecorded) => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Ok(Started::Answered(response)) => return Ok(req.into_response(response)),
        Err(err) => return Ok(req.into_response(err.error_response())),
    };
    req.extensions_mut().insert(lease.clone());
    let response = next.call(req).await?.map_into_boxed_body();
    Ok(finish(&state, &lease, response).await)
}

/// The request's `Idempotency-Key`, with who may store a record, when the request is a write
/// ([`write_route`]); `None` otherwise. The route is the one the router matches, not the raw
/// path: `/api/users/%6Cogin` is login too, and logging in (safe to repeat, answered with a
/// fresh token that has no business being stored) is no write.
///
/// # Errors
/// The header is there but not 1 to [`MAX_KEY_LEN`] visible ASCII characters.
fn idempotency_key(req: &ServiceRequest) -> Result<Option<(String, Caller)>, ApiError> {
    let caller = crate::routes::matched_route(req.request())
        .and_then(|route| write_route(req.method(), &route));
    let (Some(key), Some(caller)) = (req.headers().get("idempotency-key"), caller) else {
        return Ok(None);
    };
    match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY_LEN => {
            Ok(Some((k.trim().to_owned(), caller)))
        }
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
    /// No record for this caller (a write that needs a token, sent without one): the request
    /// runs as if it had no key, and its handler refuses it.
    Unrecorded,
}

/// Begins an idempotent request for the caller: buffers and fingerprints the body, then takes
/// the key's lease, or answers from its record.
///
/// # Errors
/// The token is refused, the body is too large or unreadable, the key is in flight (409) or was
/// used for another request (422), or Redis failed.
async fn begin(req: &mut ServiceRequest, key: &str, caller: Caller) -> Result<Started, ApiError> {
    let user = authenticate_request(req.request())?;
    if user.is_none() && caller == Caller::User {
        return Ok(Started::Unrecorded);
    }
    let scope = user.map_or_else(|| "anon".to_owned(), |u| u.id);
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let body = buffer_body(req).await?;
    let fingerprints = fingerprints(
        &state.key_ring,
        req.method().as_str(),
        req.path(),
        req.query_string(),
        &body,
    );
    req.set_payload(Payload::from(body));
    let config = &state.config;
    let begun = state
        .store
        .idempotency_begin(
            &scope,
            key,
            &fingerprints,
            config.idempotency_lease,
            config.idempotency_ttl,
        )
        .await?;
    match begun {
        Begin::Proceed { lease, new } => {
            if new {
                count_record(&state, req, &scope, &lease).await?;
            }
            Ok(Started::Proceed(state, lease))
        }
        Begin::Replay {
            status,
            body,
            token_for,
        } => {
            let body = match token_for {
                Some(token_for) => with_fresh_token(&state, &token_for, body).await?,
                None => body,
            };
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

/// Counts a new record against its caller's cap: the user's records, or an anonymous caller's
/// by client address (IPv6: its /64), over one record lifetime. Beyond the cap the record is
/// given back and the request refused with 429.
async fn count_record(
    state: &AppState,
    req: &ServiceRequest,
    scope: &str,
    lease: &IdempotencyLease,
) -> Result<(), ApiError> {
    let config = &state.config;
    let keys = state.store.keys();
    let (counter, limit) = if scope == "anon" {
        let address = limited_address(&client_address(req.request(), config.trust_forwarded));
        (
            keys.idempotency_quota_address(&address),
            config.idempotency_records_per_address,
        )
    } else {
        (
            keys.idempotency_quota_user(scope),
            config.idempotency_records_per_user,
        )
    };
    let counted = state
        .store
        .count_in_window(&counter, limit, config.idempotency_ttl)
        .await;
    let refusal = match counted {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(retry_after)) => ApiError::TooManyRequests {
            field: "Idempotency-Key",
            message: "too many requests with a new key from this caller, retry later",
            retry_after,
        },
        Err(err) => err.into(),
    };
    if let Err(err) = state.store.idempotency_release(lease).await {
        log::warn!("could not release idempotency key error={err}");
    }
    Err(refusal)
}

/// A stored body with the token taken out, with a fresh token for the user it was for, unless
/// the user's password changed since (a replay must not outlive the password it was sent with).
async fn with_fresh_token(
    state: &AppState,
    token_for: &TokenFor,
    body: Vec<u8>,
) -> Result<Vec<u8>, ApiError> {
    let user = state
        .store
        .user_by_id(&token_for.user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if user.token_generation != token_for.generation {
        return Err(ApiError::Unauthorized(
            "the password was changed after this request; log in",
        ));
    }
    let token = state
        .key_ring
        .issue(&user.id, user.token_generation)
        .map_err(ApiError::Internal)?;
    Ok(replace_once(
        &body,
        EMPTY_TOKEN,
        format!("\"token\":\"{token}\"").as_bytes(),
    ))
}

/// The token member of a stored body, emptied. JSON escapes every `"` inside a string, so this
/// sequence only ever is the member itself.
const EMPTY_TOKEN: &[u8] = b"\"token\":\"\"";

/// `haystack` with the first `needle` replaced by `with`.
fn replace_once(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match haystack.windows(needle.len()).position(|w| w == needle) {
        Some(at) => [&haystack[..at], with, &haystack[at + needle.len()..]].concat(),
        None => haystack.to_vec(),
    }
}

/// A response body without its token: the body with `user.token` emptied, and the user and
/// token generation the token was for; `None` when the body carries no token.
fn without_token(ring: &KeyRing, body: &[u8]) -> Option<(Vec<u8>, Option<TokenFor>)> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = json.get("user")?.get("token")?.as_str()?;
    if token.is_empty() {
        return None;
    }
    let member = format!("\"token\":\"{token}\"");
    let stripped = replace_once(body, member.as_bytes(), EMPTY_TOKEN);
    // `None` for the user (the body is then not stored) unless the token is readable and gone.
    let gone = !stripped.windows(token.len()).any(|w| w == token.as_bytes());
    let token_for = ring
        .verify(token)
        .ok()
        .filter(|_| gone)
        .map(|claims| TokenFor {
            user_id: claims.sub,
            generation: claims.gen,
        });
    Some((stripped, token_for))
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
    let (stored, token_for) = match without_token(&state.key_ring, &bytes) {
        Some((stripped, Some(token_for))) => (stripped, Some(token_for)),
        Some((_, None)) => {
            // A token that cannot be taken out (or read) is never stored; a retry re-renders
            // the write.
            if let Err(err) = state.store.idempotency_release(lease).await {
                log::warn!("could not release idempotency key error={err}");
            }
            return ServiceResponse::new(http_req, head.set_body(BoxBody::new(bytes)));
        }
        None => (bytes.to_vec(), None),
    };
    if let Err(err) = state
        .store
        .idempotency_finish(lease, status.as_u16(), &stored, token_for.as_ref())
        .await
    {
        // The write itself is committed; a retry will re-render it, so the client still gets its answer.
        log::warn!("could not store idempotent response error={err}");
    }
    ServiceResponse::new(http_req, head.set_body(BoxBody::new(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::openapi::ApiDoc;
    use utoipa::OpenApi as _;

    /// Every write in the API's document takes a record, for the callers the document names:
    /// anyone where it needs no token, only token holders where it does; login and every read
    /// take none. A route added without being listed in `write_route` fails here.
    #[test]
    fn write_route_lists_every_write_of_the_document_with_its_callers() {
        let doc = ApiDoc::openapi();
        let mut writes = 0;
        for (template, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
            ] {
                let Some(op) = op else { continue };
                let expected = if method == Method::GET || template == "/api/users/login" {
                    None
                } else if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    Some(Caller::User)
                } else {
                    Some(Caller::Anyone)
                };
                writes += usize::from(expected.is_some());
                assert_eq!(
                    write_route(&method, template),
                    expected,
                    "{method} {template}"
                );
            }
        }
        assert_eq!(writes, 11);
        assert_eq!(write_route(&Method::PATCH, "/api/user"), None);
        assert_eq!(write_route(&Method::DELETE, "/api/users"), None);
    }

    #[test]
    fn a_token_is_taken_out_of_a_stored_body_and_put_back_in_a_replay() {
        let ring = KeyRing::parse(
            "k1:0123456789abcdef0123456789abcdef",
            "conduit",
            "conduit",
            60,
        )
        .unwrap();
        let token = ring.issue("7", 2).unwrap();
        let body = format!(r#"{{"user":{{"bio":"\"token\":\"\"","token":"{token}"}}}}"#);
        let (stored, token_for) = without_token(&ring, body.as_bytes()).unwrap();
        let stored_text = String::from_utf8(stored.clone()).unwrap();
        assert!(!stored_text.contains(&token), "{stored_text}");
        assert_eq!(
            token_for,
            Some(TokenFor {
                user_id: "7".into(),
                generation: 2
            })
        );
        let replay = replace_once(&stored, EMPTY_TOKEN, br#""token":"fresh""#);
        let json: serde_json::Value = serde_json::from_slice(&replay).unwrap();
        assert_eq!(json["user"]["token"], "fresh");
        assert_eq!(json["user"]["bio"], "\"token\":\"\"");
        assert!(without_token(&ring, br#"{"article":{"title":"t"}}"#).is_none());
    }
}
