//! The API's error type and its mapping to the RealWorld error body.
//!
//! Every error leaves as `{"errors": {"<field>": ["<message>", ...]}}` with the matching status.
//! Internal causes are logged in full and never sent to the client.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::ValidationErrors;
use crate::store::StoreError;

/// Field name to messages, as sent in the `errors` object.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing, malformed or invalid credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 401: login with an unknown email or a wrong password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 403: authenticated, but not allowed to touch this resource.
    #[error("forbidden")]
    Forbidden(&'static str),
    /// 404: the named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 400: the request could not be read (for example JSON that does not parse).
    #[error("bad request: {1}")]
    BadRequest(&'static str, String),
    /// 409: a request with the same idempotency key is still in flight.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 413: the body is larger than the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 422: validation failed, per field.
    #[error("unprocessable entity: {0:?}")]
    Unprocessable(FieldErrors),
    /// 429: too many attempts of what `field` names; retry after the given seconds.
    #[error("too many requests: {field}")]
    TooManyRequests {
        field: &'static str,
        message: &'static str,
        retry_after: u64,
    },
    /// 503: the named part of the replica is at capacity; retry shortly.
    #[error("{0} is at capacity")]
    Busy(&'static str),
    /// 503: the data store did not answer in time.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: anything else. The cause is logged, not sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 with one message for one field.
    pub fn unprocessable(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self::Unprocessable(errors)
    }

    fn body(&self) -> FieldErrors {
        let one = |field: &str, msg: String| {
            let mut m = FieldErrors::new();
            m.insert(field.to_owned(), vec![msg]);
            m
        };
        match self {
            Self::Unauthorized(why) => one("token", (*why).to_owned()),
            Self::InvalidCredentials => one("email or password", "is invalid".to_owned()),
            Self::Forbidden(what) => one(what, "is not yours to change".to_owned()),
            Self::NotFound(what) => one(what, "not found".to_owned()),
            Self::BadRequest(field, msg) => one(field, msg.clone()),
            Self::Conflict(msg) => one("request", (*msg).to_owned()),
            Self::PayloadTooLarge => one(
                "body",
                format!(
                    "is larger than {} KiB",
                    crate::config::MAX_BODY_BYTES / 1024
                ),
            ),
            Self::Unprocessable(errors) => errors.clone(),
            Self::TooManyRequests { field, message, .. } => one(field, (*message).to_owned()),
            Self::Busy(what) => one("service", format!("{what} is at capacity, retry later")),
            Self::Unavailable(_) => {
                one("service", "temporarily unavailable, retry later".to_owned())
            }
            Self::Internal(_) => one("server", "internal error".to_owned()),
        }
    }
}

/// The RealWorld error body: `{"errors": {"<field>": ["<message>", ...]}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    errors: FieldErrors,
}

/// Builds the RealWorld error body for any status; used for errors raised outside handlers too.
pub fn error_response(status: StatusCode, errors: FieldErrors) -> HttpResponse {
    let mut builder = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        builder.insert_header((header::WWW_AUTHENTICATE, "Token"));
    }
    builder.json(ErrorBody { errors })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(..) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => log::error!("request failed error={cause:?}"),
            Self::Unavailable(cause) => log::warn!("data store unavailable error={cause:#}"),
            Self::Busy(what) => log::info!("refused at capacity what={what}"),
            _ => {}
        }
        let mut response = error_response(self.status_code(), self.body());
        match self {
            Self::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
            }
            Self::Busy(_) | Self::Unavailable(_) | Self::Conflict(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Unprocessable(errors.into_map())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Taken(fields) => Self::Unprocessable(
                fields
                    .into_iter()
                    .map(|f| (f.to_owned(), vec!["has already been taken".to_owned()]))
                    .collect(),
            ),
            StoreError::Invalid(field, message) => Self::unprocessable(field, message),
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Forbidden(what) => Self::Forbidden(what),
            StoreError::InFlight => {
                Self::Conflict("a request with this Idempotency-Key is in progress")
            }
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn unauthorized_carries_the_token_challenge() {
        let response = ApiError::Unauthorized("missing").error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Token"
        );
    }

    #[actix_web::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let response = ApiError::Internal(anyhow::anyhow!("secret detail")).error_response();
        let body = to_bytes(response.into_body()).await.unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(!text.contains("secret detail"), "{text}");
        assert!(text.starts_with("{\"errors\":"), "{text}");
    }
}
