//! Comments on articles (spec: Comments).

use actix_web::{delete, get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::profiles::Profile;
use super::timestamp;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::domain::{required, CommentBody, ValidationErrors};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::Idem;
use crate::state::AppState;
use crate::store::CommentView;

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewCommentRequest {
    comment: NewComment,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewComment {
    /// Not blank.
    #[schema(value_type = CommentBody, required = true)]
    body: Option<String>,
}

impl TryFrom<NewComment> for CommentBody {
    type Error = ValidationErrors;

    fn try_from(new: NewComment) -> Result<Self, Self::Error> {
        Ok(required("body", new.body.as_deref(), CommentBody::parse)?)
    }
}

/// Comments per page when `limit` is not given.
pub const DEFAULT_COMMENTS: u64 = 100;
/// Largest comment page.
pub const MAX_COMMENTS: u64 = 500;
/// A page stops early once its comments and their authors pass this many bytes (the first
/// comment is always there): 500 comments of 10 000 four-byte characters would be 20 MB.
pub const COMMENT_PAGE_BYTES: usize = 1 << 20;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CommentPageQuery {
    /// Page size, default 100; larger values are capped at 500.
    #[param(value_type = Option<u64>)]
    limit: Option<String>,
    /// Comments to skip (newest first), default 0.
    #[param(value_type = Option<u64>)]
    offset: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SingleCommentResponse {
    comment: Comment,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MultipleCommentsResponse {
    comments: Vec<Comment>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Comment {
    id: u64,
    created_at: String,
    updated_at: String,
    body: String,
    author: Profile,
}

impl From<CommentView> for Comment {
    fn from(view: CommentView) -> Self {
        let c = view.comment;
        Self {
            id: c.id.parse().unwrap_or(0),
            created_at: timestamp(c.created_at),
            updated_at: timestamp(c.updated_at),
            body: c.body,
            author: view.author.into(),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_comments)
        .service(add_comment)
        .service(delete_comment);
}

/// Comments of an article, newest first, one page (`limit` default 100, at most 500, and fewer
/// once the page passes 1 MiB; the next page starts at `offset` plus the comments returned);
/// auth optional.
#[utoipa::path(tag = "Comments", params(("slug" = String, Path), CommentPageQuery),
    responses((status = 200, body = MultipleCommentsResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/api/articles/{slug}/comments")]
pub(crate) async fn list_comments(
    state: web::Data<AppState>,
    viewer: MaybeAuthUser,
    slug: web::Path<String>,
    query: web::Query<CommentPageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = super::articles::bounded_page(
        query.limit.as_deref(),
        query.offset.as_deref(),
        DEFAULT_COMMENTS,
        MAX_COMMENTS,
    )?;
    let comments = state
        .store
        .comments(viewer.id(), &slug, limit, offset, COMMENT_PAGE_BYTES)
        .await?;
    Ok(HttpResponse::Ok().json(MultipleCommentsResponse {
        comments: comments.into_iter().map(Comment::from).collect(),
    }))
}

/// Adds a comment to an article.
#[utoipa::path(tag = "Comments", security(("Token" = [])), params(("slug" = String, Path)), request_body = NewCommentRequest,
    responses((status = 200, body = SingleCommentResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/api/articles/{slug}/comments")]
pub(crate) async fn add_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    slug: web::Path<String>,
    body: web::Json<NewCommentRequest>,
) -> Result<HttpResponse, ApiError> {
    let text = CommentBody::try_from(body.into_inner().comment)?;
    let id = state
        .store
        .add_comment(idem.lease(), &user.id, &slug, text.as_str())
        .await?;
    let view = state.store.comment(Some(&user.id), &slug, &id).await?;
    Ok(HttpResponse::Ok().json(SingleCommentResponse {
        comment: view.into(),
    }))
}

/// Deletes the caller's comment.
#[utoipa::path(tag = "Comments", security(("Token" = [])), params(("slug" = String, Path), ("id" = u64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/api/articles/{slug}/comments/{id}")]
pub(crate) async fn delete_comment(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    // Comment ids are decimal numbers; anything else cannot name a comment.
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::NotFound("comment"));
    }
    state
        .store
        .delete_comment(idem.lease(), &user.id, &slug, &id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
