//! Extractors that turn the `Authorization` header into the calling user.
//!
//! `AuthUser` requires a valid token. `MaybeAuthUser` allows no header at all, but a header that is
//! present and wrong is still a 401: silently treating a bad token as anonymous would hide client
//! bugs and show a logged-in user the anonymous view.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage as _, HttpRequest};

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::spans;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user id from the token's `sub` claim.
    pub id: String,
    /// The token the request was made with.
    pub token: String,
    /// The token generation the token was signed with (see [`crate::auth::Claims::gen`]).
    pub generation: u64,
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

/// The outcome of a request's token check, kept in the request's extensions so the token is
/// checked once per request: by whichever of the idempotency middleware and the handler's
/// extractor asks first.
#[derive(Clone)]
enum Caller {
    Anonymous,
    User(AuthUser),
    Refused(&'static str),
}

impl Caller {
    fn into_result(self) -> Result<Option<AuthUser>, ApiError> {
        match self {
            Caller::Anonymous => Ok(None),
            Caller::User(user) => Ok(Some(user)),
            Caller::Refused(why) => Err(ApiError::Unauthorized(why)),
        }
    }
}

/// The caller of a request, from `Authorization: Token <jwt>` or `Authorization: Bearer <jwt>`.
///
/// # Returns
/// `Ok(None)` when there is no header, `Err` when there is one that is not usable.
pub(crate) fn authenticate_request(req: &HttpRequest) -> Result<Option<AuthUser>, ApiError> {
    if let Some(caller) = req.extensions().get::<Caller>() {
        return caller.clone().into_result();
    }
    let caller = check_token(req)?;
    req.extensions_mut().insert(caller.clone());
    caller.into_result()
}

/// Reads and verifies the request's token. Only a missing application state is an error here;
/// a refused token is a [`Caller::Refused`].
fn check_token(req: &HttpRequest) -> Result<Caller, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let Ok(value) = value.to_str() else {
        return Ok(Caller::Refused("authorization header is not valid text"));
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Ok(Caller::Refused("expected 'Token <jwt>'"));
    };
    if !scheme.eq_ignore_ascii_case("token") && !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Caller::Refused("expected 'Token <jwt>'"));
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let token = token.trim();
    Ok(match state.key_ring.verify_with_kid(token) {
        Ok((claims, kid)) => {
            spans::record_token_check(Some(kid), None);
            log::debug!("token accepted kid={kid}");
            Caller::User(AuthUser {
                id: claims.sub,
                token: token.to_owned(),
                generation: claims.gen,
            })
        }
        Err(why) => {
            spans::record_token_check(None, Some(&why));
            log::info!("token refused reason={why}");
            Caller::Refused("invalid or expired token")
        }
    })
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
