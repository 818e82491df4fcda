//! Profiles and follows (spec: Profile).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::non_empty;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::Idem;
use crate::state::AppState;
use crate::store::ProfileView;

#[derive(Serialize, ToSchema)]
pub(crate) struct ProfileResponse {
    profile: Profile,
}

/// A user as the caller sees them; also the `author` of articles and comments.
#[derive(Serialize, ToSchema)]
pub(crate) struct Profile {
    username: String,
    bio: Option<String>,
    image: Option<String>,
    following: bool,
}

impl From<ProfileView> for Profile {
    fn from(p: ProfileView) -> Self {
        Self {
            username: p.username,
            bio: non_empty(p.bio),
            image: non_empty(p.image),
            following: p.following,
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_profile)
        .service(follow_user)
        .service(unfollow_user);
}

/// A user's profile; auth optional (it sets `following`).
#[utoipa::path(tag = "Profile", params(("username" = String, Path)),
    responses((status = 200, body = ProfileResponse), (status = 404, body = ErrorBody)))]
#[get("/api/profiles/{username}")]
pub(crate) async fn get_profile(
    state: web::Data<AppState>,
    viewer: MaybeAuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let profile = state.store.profile(viewer.id(), &path).await?;
    Ok(HttpResponse::Ok().json(ProfileResponse {
        profile: profile.into(),
    }))
}

/// Follows a user.
#[utoipa::path(tag = "Profile", security(("Token" = [])), params(("username" = String, Path)),
    responses((status = 200, body = ProfileResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/api/profiles/{username}/follow")]
pub(crate) async fn follow_user(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_following(&state, &user, &idem, &path, true).await
}

/// Stops following a user.
#[utoipa::path(tag = "Profile", security(("Token" = [])), params(("username" = String, Path)),
    responses((status = 200, body = ProfileResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/api/profiles/{username}/follow")]
pub(crate) async fn unfollow_user(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_following(&state, &user, &idem, &path, false).await
}

async fn set_following(
    state: &AppState,
    user: &AuthUser,
    idem: &Idem,
    username: &str,
    on: bool,
) -> Result<HttpResponse, ApiError> {
    let target = state
        .store
        .follow(idem.lease(), &user.id, username, on)
        .await?;
    let profile = state
        .store
        .profile_by_id(Some(&user.id), &target)
        .await?
        .ok_or(ApiError::NotFound("profile"))?;
    Ok(HttpResponse::Ok().json(ProfileResponse {
        profile: profile.into(),
    }))
}
