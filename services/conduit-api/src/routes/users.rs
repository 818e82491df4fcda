//! Registration, login and the current user (spec: User and Authentication).

use actix_web::{get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::non_empty;
use crate::auth::AuthUser;
use crate::client::{client_address, limited_address};
use crate::domain::{
    at_least_one, optional, required, AllValid, Bio, Credentials, Email, ImageUrl, LoginPassword,
    Password, Registration, UserUpdate, Username, ValidationErrors,
};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::Idem;
use crate::state::AppState;
use crate::store::{UserChanges, UserRecord};

#[derive(Deserialize, ToSchema)]
pub(crate) struct RegisterRequest {
    user: NewUser,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewUser {
    #[schema(value_type = Username, required = true)]
    username: Option<String>,
    #[schema(value_type = Email, required = true)]
    email: Option<String>,
    #[schema(value_type = Password, required = true)]
    password: Option<String>,
}

impl TryFrom<NewUser> for Registration {
    type Error = ValidationErrors;

    fn try_from(new: NewUser) -> Result<Self, Self::Error> {
        let (username, email, password) = (
            required("username", new.username.as_deref(), Username::parse),
            required("email", new.email.as_deref(), Email::parse),
            required("password", new.password.as_deref(), Password::parse),
        )
            .all_valid()?;
        Ok(Self {
            username,
            email,
            password,
        })
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    user: LoginUser,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginUser {
    #[schema(value_type = Email, required = true)]
    email: Option<String>,
    /// At most 1024 bytes.
    #[schema(value_type = LoginPassword, required = true)]
    password: Option<String>,
}

impl TryFrom<LoginUser> for Credentials {
    type Error = ValidationErrors;

    fn try_from(creds: LoginUser) -> Result<Self, Self::Error> {
        // A malformed email is "invalid" whatever is wrong with it: it cannot name an account.
        let email = |s: &str| Email::parse(s).map_err(|_| "is invalid".to_owned());
        let (email, password) = (
            required("email", creds.email.as_deref(), email),
            required("password", creds.password.as_deref(), LoginPassword::parse),
        )
            .all_valid()?;
        Ok(Self { email, password })
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateUserRequest {
    user: UpdateUser,
}

#[derive(Deserialize, ToSchema)]
/// `null` counts as not sent, except for `bio` and `image`.
pub(crate) struct UpdateUser {
    #[schema(value_type = Option<Username>)]
    username: Option<String>,
    #[schema(value_type = Option<Email>)]
    email: Option<String>,
    #[schema(value_type = Option<Password>)]
    password: Option<String>,
    /// `null` clears the bio.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Bio>)]
    bio: Option<Option<String>>,
    /// `null` clears the image.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<ImageUrl>)]
    image: Option<Option<String>>,
}

impl TryFrom<UpdateUser> for UserUpdate {
    type Error = ValidationErrors;

    fn try_from(update: UpdateUser) -> Result<Self, Self::Error> {
        let any_field = update.username.is_some()
            || update.email.is_some()
            || update.password.is_some()
            || update.bio.is_some()
            || update.image.is_some();
        // `null` clears: it is checked as the empty string.
        let bio = update.bio.as_ref().map(|b| b.as_deref().unwrap_or(""));
        let image = update.image.as_ref().map(|i| i.as_deref().unwrap_or(""));
        let (username, email, password, bio, image, ()) = (
            optional("username", update.username.as_deref(), Username::parse),
            optional("email", update.email.as_deref(), Email::parse),
            optional("password", update.password.as_deref(), Password::parse),
            optional("bio", bio, Bio::parse),
            optional("image", image, ImageUrl::parse),
            at_least_one("user", any_field),
        )
            .all_valid()?;
        Ok(Self {
            username,
            email,
            password,
            bio,
            image,
        })
    }
}

/// Tells a field sent as `null` (`Some(None)`) from a field not sent (`None`).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserResponse {
    user: UserJson,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserJson {
    email: String,
    token: String,
    username: String,
    bio: Option<String>,
    image: Option<String>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(register)
        .service(login)
        .service(get_current_user)
        .service(update_current_user);
}

fn user_response(user: UserRecord, token: String) -> UserResponse {
    UserResponse {
        user: UserJson {
            email: user.email,
            token,
            username: user.username,
            bio: non_empty(user.bio),
            image: non_empty(user.image),
        },
    }
}

/// The user with a newly signed token, after registration or login.
fn with_new_token(state: &AppState, user: UserRecord) -> Result<UserResponse, ApiError> {
    let token = state.key_ring.issue(&user.id, user.token_generation)?;
    Ok(user_response(user, token))
}

/// Registers a user and returns it with a token.
#[utoipa::path(tag = "User and Authentication", request_body = RegisterRequest,
    responses((status = 201, body = UserResponse), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[post("/api/users")]
pub(crate) async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    idem: Idem,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let new = Registration::try_from(body.into_inner().user)?;

    // Each valid registration counts for its client address before its password is hashed.
    let address = limited_address(&client_address(&req, state.config.trust_forwarded));
    let counter = state.store.keys().registrations_address(&address);
    if let Err(retry_after) = state
        .store
        .count_in_window(&counter, state.config.registrations_per_address, 3600)
        .await?
    {
        return Err(ApiError::TooManyRequests {
            field: "registration",
            message: "too many registrations from this address, retry later",
            retry_after,
        });
    }

    let hash = state.passwords.hash(new.password.into_inner()).await?;
    let id = state
        .store
        .create_user(
            idem.lease(),
            new.username.as_str(),
            new.email.as_str(),
            &hash,
        )
        .await?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Created().json(with_new_token(&state, user)?))
}

/// Logs in with email and password. Failures are counted per account and per client address in
/// Redis, so the limit holds however many replicas an attacker spreads tries over.
#[utoipa::path(tag = "User and Authentication", request_body = LoginRequest,
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[post("/api/users/login")]
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { email, password } = Credentials::try_from(body.into_inner().user)?;

    // Every attempt is counted before the password is checked, and only a failure keeps its
    // count: no more attempts than the limits are ever verified in a window.
    let address = limited_address(&client_address(&req, state.config.trust_forwarded));
    let reservation = match state
        .store
        .reserve_login(email.as_str(), &address, &state.config.login_limits())
        .await?
    {
        Ok(reservation) => reservation,
        Err(retry_after) => {
            return Err(ApiError::TooManyRequests {
                field: "login",
                message: "too many failed attempts, retry later",
                retry_after,
            })
        }
    };
    let checked = check_password(&state, email.as_str(), password.into_inner()).await;
    match checked {
        Ok(Some(user)) => {
            state.store.login_succeeded(&reservation).await?;
            Ok(HttpResponse::Ok().json(with_new_token(&state, user)?))
        }
        Ok(None) => Err(ApiError::InvalidCredentials),
        Err(err) => {
            state.store.login_unchecked(&reservation).await?;
            Err(err)
        }
    }
}

/// The user with this email if `password` is theirs. An unknown account is checked against a
/// dummy hash, so both failures take as long.
async fn check_password(
    state: &AppState,
    email: &str,
    password: String,
) -> Result<Option<UserRecord>, ApiError> {
    let user = state.store.user_by_email(email).await?;
    let phc = match &user {
        Some(user) => user.password_hash.clone(),
        None => state.passwords.dummy_hash().await?.to_owned(),
    };
    let matches = state.passwords.verify(password, phc).await?;
    Ok(user.filter(|_| matches))
}

/// The current user, with the token the request was made with: reading yourself signs nothing.
/// A new token comes from logging in.
#[utoipa::path(tag = "User and Authentication", security(("Token" = [])),
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody)))]
#[get("/api/user")]
pub(crate) async fn get_current_user(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let record = current_record(&state, &user).await?;
    Ok(HttpResponse::Ok().json(user_response(record, user.token)))
}

/// Updates the current user; at least one field is required.
#[utoipa::path(tag = "User and Authentication", security(("Token" = [])), request_body = UpdateUserRequest,
    responses((status = 200, body = UserResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[put("/api/user")]
pub(crate) async fn update_current_user(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    body: web::Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let update = UserUpdate::try_from(body.into_inner().user)?;
    let current = current_record(&state, &user).await?;

    // A new password moves the token generation on: every older token of this user stops
    // working here and in GET /api/user, and the response carries a new one.
    let (password_hash, token_generation) = match update.password {
        Some(p) => (
            Some(state.passwords.hash(p.into_inner()).await?),
            Some((current.token_generation + 1).to_string()),
        ),
        None => (None, None),
    };
    let changes = UserChanges {
        username: update.username.map(|u| u.as_str().to_owned()),
        email: update.email.map(|e| e.as_str().to_owned()),
        password_hash,
        bio: update.bio.map(|b| b.as_str().to_owned()),
        image: update.image.map(|i| i.as_str().to_owned()),
        token_generation,
    };
    state
        .store
        .update_user(idem.lease(), &user.id, &changes)
        .await?;
    let record = state
        .store
        .user_by_id(&user.id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    if record.token_generation == user.generation {
        Ok(HttpResponse::Ok().json(user_response(record, user.token)))
    } else {
        Ok(HttpResponse::Ok().json(with_new_token(&state, record)?))
    }
}

/// The caller's user record, if the token is of its current generation: a token signed before
/// the last password change is refused here. Only the routes that read the record anyway check
/// (`GET` and `PUT /api/user`); the others trust the signature until the token expires, which
/// is what keeps them free of a per-request lookup.
async fn current_record(state: &AppState, user: &AuthUser) -> Result<UserRecord, ApiError> {
    let record = state
        .store
        .user_by_id(&user.id)
        .await?
        .ok_or(ApiError::Unauthorized("user no longer exists"))?;
    if user.generation < record.token_generation {
        return Err(ApiError::Unauthorized(
            "token was signed before the last password change",
        ));
    }
    Ok(record)
}
