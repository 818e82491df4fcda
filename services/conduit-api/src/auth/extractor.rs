//! Extractors that turn the `Authorization` header into the calling user.
//!
//! `AuthUser` requires a valid token. `MaybeAuthUser` allows no header at all, but a header that is
//! present and wrong is still a 401: silently treating a bad token as anonymous would hide client
//! bugs and show a logged-in user the anonymous view.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use opentelemetry::trace::SpanKind;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::telemetry;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user id from the token's `sub` claim.
    pub id: String,
    /// The token the request was made with.
    pub token: String,
}

/// The caller, if the request carries a token.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl MaybeAuthUser {
    /// The caller's user id, if any.
    pub fn id(&self) -> Option<&str> {
        self.0.as_ref().map(|u| u.id.as_str())
    }
}

/// Reads the token from `Authorization: Token <jwt>` or `Authorization: Bearer <jwt>`.
///
/// # Returns
/// `Ok(None)` when there is no header, `Err` when there is one that is not usable.
pub(crate) fn authenticate_request(req: &HttpRequest) -> Result<Option<AuthUser>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("authorization header is not valid text"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("expected 'Token <jwt>'"))?;
    if !scheme.eq_ignore_ascii_case("token") && !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized("expected 'Token <jwt>'"));
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let _span = telemetry::child("token.verify", SpanKind::Internal, Vec::new);
    let token = token.trim();
    match state.keys.verify(token) {
        Ok(claims) => Ok(Some(AuthUser {
            id: claims.sub,
            token: token.to_owned(),
        })),
        Err(why) => {
            log::info!("token refused reason={why}");
            Err(ApiError::Unauthorized("invalid or expired token"))
        }
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticate_request(req).and_then(|user| {
                user.ok_or(ApiError::Unauthorized("missing authorization header"))
            }),
        )
    }
}

impl FromRequest for MaybeAuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate_request(req).map(MaybeAuthUser))
    }
}
