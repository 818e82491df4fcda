//! Articles, the feed and favorites (spec: Articles, Favorites).

use actix_web::{delete, get, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::profiles::Profile;
use super::timestamp;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::domain::{slugify, ArticleBody, Description, TagList, Title, Validation};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::Idem;
use crate::startup::AppState;
use crate::store::{ArticleChanges, ArticleFilter, ArticleView, NewArticle};

/// Page size when `limit` is not given.
const DEFAULT_LIMIT: u64 = 20;
/// Largest page size served; larger requests are capped.
const MAX_LIMIT: u64 = 100;

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewArticleRequest {
    article: NewArticleFields,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewArticleFields {
    /// One line, not blank.
    #[schema(value_type = String, required = true, max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$")]
    title: Option<String>,
    /// Not blank.
    #[schema(value_type = String, required = true, max_length = 1000, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$")]
    description: Option<String>,
    /// Not blank.
    #[schema(value_type = String, required = true, max_length = 60000, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$")]
    body: Option<String>,
    /// Each tag one line of 1 to 40 characters without commas; duplicates are dropped.
    #[serde(rename = "tagList")]
    #[schema(
        max_items = 20,
        max_length = 40,
        pattern = r"^[^,\x00-\x1F\x7F-\x9F]*[^,\s\x00-\x1F\x7F-\x9F][^,\x00-\x1F\x7F-\x9F]*$"
    )]
    tag_list: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateArticleRequest {
    article: UpdateArticleFields,
}

#[derive(Deserialize, ToSchema)]
/// `null` counts as not sent.
pub(crate) struct UpdateArticleFields {
    /// One line, not blank; a new title gives a new slug.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    title: Option<String>,
    /// Not blank.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: Option<String>,
    /// Not blank.
    #[schema(
        max_length = 60000,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    body: Option<String>,
    /// Replaces the tags; each one line of 1 to 40 characters without commas.
    #[serde(rename = "tagList")]
    #[schema(
        max_items = 20,
        max_length = 40,
        pattern = r"^[^,\x00-\x1F\x7F-\x9F]*[^,\s\x00-\x1F\x7F-\x9F][^,\x00-\x1F\x7F-\x9F]*$"
    )]
    tag_list: Option<Vec<String>>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only articles with this tag.
    tag: Option<String>,
    /// Only articles by this username.
    author: Option<String>,
    /// Only articles this username favorited.
    favorited: Option<String>,
    /// Page size, default 20; larger values are capped at 100.
    #[param(value_type = Option<u64>)]
    limit: Option<String>,
    /// Articles to skip, default 0.
    #[param(value_type = Option<u64>)]
    offset: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, default 20; larger values are capped at 100.
    #[param(value_type = Option<u64>)]
    limit: Option<String>,
    /// Articles to skip, default 0.
    #[param(value_type = Option<u64>)]
    offset: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SingleArticleResponse {
    article: Article,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MultipleArticlesResponse {
    articles: Vec<Article>,
    articles_count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Article {
    slug: String,
    title: String,
    description: String,
    /// Left out of list items.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    tag_list: Vec<String>,
    created_at: String,
    updated_at: String,
    favorited: bool,
    favorites_count: u64,
    author: Profile,
}

impl Article {
    fn new(view: ArticleView, with_body: bool) -> Self {
        let a = view.article;
        Self {
            slug: a.slug,
            title: a.title,
            description: a.description,
            body: with_body.then_some(a.body),
            tag_list: a.tags,
            created_at: timestamp(a.created_at),
            updated_at: timestamp(a.updated_at),
            favorited: view.favorited,
            favorites_count: view.favorites_count,
            author: view.author.into(),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The feed is registered before `/api/articles/{slug}` so "feed" is never taken for a slug.
    cfg.service(feed_articles)
        .service(list_articles)
        .service(create_article)
        .service(get_article)
        .service(update_article)
        .service(delete_article)
        .service(favorite_article)
        .service(unfavorite_article);
}

/// Parses `limit` and `offset`, reporting bad values as 422.
fn page(limit: Option<&str>, offset: Option<&str>) -> Result<(u64, u64), ApiError> {
    bounded_page(limit, offset, DEFAULT_LIMIT, MAX_LIMIT)
}

/// Parses `limit` (default `default`, capped at `max`) and `offset`, reporting bad values as 422.
pub(crate) fn bounded_page(
    limit: Option<&str>,
    offset: Option<&str>,
    default: u64,
    max: u64,
) -> Result<(u64, u64), ApiError> {
    let mut v = Validation::new();
    // A non-negative int64, as the document says; u64 would also take 2^63 and up.
    let parse = |s: &str| {
        s.trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| "must be a non-negative integer".to_owned())
    };
    let limit = v
        .optional("limit", limit, parse)
        .unwrap_or(default)
        .min(max);
    let offset = v
        .optional("offset", offset, parse)
        .unwrap_or(0)
        .min(1_000_000_000);
    v.finish()?;
    Ok((limit, offset))
}

fn list_response(views: Vec<ArticleView>, total: u64) -> MultipleArticlesResponse {
    MultipleArticlesResponse {
        articles: views.into_iter().map(|v| Article::new(v, false)).collect(),
        articles_count: total,
    }
}

/// Articles, newest first, optionally filtered by tag, author or favoriting user; auth optional.
#[utoipa::path(tag = "Articles", params(ListQuery),
    responses((status = 200, body = MultipleArticlesResponse), (status = 422, body = ErrorBody)))]
#[get("/api/articles")]
pub(crate) async fn list_articles(
    state: web::Data<AppState>,
    viewer: MaybeAuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(query.limit.as_deref(), query.offset.as_deref())?;
    let filter = ArticleFilter {
        tag: query.tag.as_deref().unwrap_or(""),
        author: query.author.as_deref().unwrap_or(""),
        favorited: query.favorited.as_deref().unwrap_or(""),
    };
    let (views, total) = state
        .store
        .list_articles(viewer.id(), &filter, limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(list_response(views, total)))
}

/// Articles by the authors the caller follows, newest first.
#[utoipa::path(tag = "Articles", security(("Token" = [])), params(PageQuery),
    responses((status = 200, body = MultipleArticlesResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/api/articles/feed")]
pub(crate) async fn feed_articles(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(query.limit.as_deref(), query.offset.as_deref())?;
    let (views, total) = state.store.feed(&user.id, limit, offset).await?;
    Ok(HttpResponse::Ok().json(list_response(views, total)))
}

/// One article; auth optional.
#[utoipa::path(tag = "Articles", params(("slug" = String, Path)),
    responses((status = 200, body = SingleArticleResponse), (status = 404, body = ErrorBody)))]
#[get("/api/articles/{slug}")]
pub(crate) async fn get_article(
    state: web::Data<AppState>,
    viewer: MaybeAuthUser,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state.store.article(viewer.id(), &slug).await?;
    Ok(HttpResponse::Ok().json(SingleArticleResponse {
        article: Article::new(view, true),
    }))
}

/// Creates an article; its slug comes from the title, with a suffix when taken.
#[utoipa::path(tag = "Articles", security(("Token" = [])), request_body = NewArticleRequest,
    responses((status = 201, body = SingleArticleResponse), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/api/articles")]
pub(crate) async fn create_article(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    body: web::Json<NewArticleRequest>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().article;
    let mut v = Validation::new();
    let title = v.required("title", new.title.as_deref(), Title::parse);
    let description = v.required(
        "description",
        new.description.as_deref(),
        Description::parse,
    );
    let body = v.required("body", new.body.as_deref(), ArticleBody::parse);
    let tags = match &new.tag_list {
        Some(list) => v.check("tagList", TagList::parse(list)),
        None => Some(TagList::default()),
    };
    v.finish()?;
    let (Some(title), Some(description), Some(body), Some(tags)) = (title, description, body, tags)
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validation passed without values"
        )));
    };

    let slug_base = slugify(title.as_str());
    let tags = tags.to_vec();
    let new = NewArticle {
        slug_base: &slug_base,
        title: title.as_str(),
        description: description.as_str(),
        body: body.as_str(),
        tags: &tags,
    };
    let id = state
        .store
        .create_article(idem.lease(), &user.id, &new)
        .await?;
    let view = state.store.article_by_id(Some(&user.id), &id).await?;
    Ok(HttpResponse::Created().json(SingleArticleResponse {
        article: Article::new(view, true),
    }))
}

/// Updates the caller's article; a new title gives a new slug.
#[utoipa::path(tag = "Articles", security(("Token" = [])), params(("slug" = String, Path)), request_body = UpdateArticleRequest,
    responses((status = 200, body = SingleArticleResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[put("/api/articles/{slug}")]
pub(crate) async fn update_article(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    slug: web::Path<String>,
    body: web::Json<UpdateArticleRequest>,
) -> Result<HttpResponse, ApiError> {
    let update = body.into_inner().article;
    let mut v = Validation::new();
    let title = v.optional("title", update.title.as_deref(), Title::parse);
    let description = v.optional(
        "description",
        update.description.as_deref(),
        Description::parse,
    );
    let body = v.optional("body", update.body.as_deref(), ArticleBody::parse);
    let tags = match &update.tag_list {
        Some(list) => v.check("tagList", TagList::parse(list)),
        None => None,
    };
    if update.title.is_none()
        && update.description.is_none()
        && update.body.is_none()
        && update.tag_list.is_none()
    {
        v.fail("article", "at least one field is required");
    }
    v.finish()?;

    let changes = ArticleChanges {
        slug_base: title.as_ref().map(|t| slugify(t.as_str())),
        title: title.map(|t| t.as_str().to_owned()),
        description: description.map(|d| d.as_str().to_owned()),
        body: body.map(|b| b.as_str().to_owned()),
        tags: tags.map(|t| t.to_vec()),
    };
    let id = state
        .store
        .update_article(idem.lease(), &user.id, &slug, &changes)
        .await?;
    let view = state.store.article_by_id(Some(&user.id), &id).await?;
    Ok(HttpResponse::Ok().json(SingleArticleResponse {
        article: Article::new(view, true),
    }))
}

/// Deletes the caller's article with its comments and favorites.
#[utoipa::path(tag = "Articles", security(("Token" = [])), params(("slug" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/api/articles/{slug}")]
pub(crate) async fn delete_article(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .delete_article(idem.lease(), &user.id, &slug)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Favorites an article.
#[utoipa::path(tag = "Favorites", security(("Token" = [])), params(("slug" = String, Path)),
    responses((status = 200, body = SingleArticleResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/api/articles/{slug}/favorite")]
pub(crate) async fn favorite_article(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_favorite(&state, &user, &idem, &slug, true).await
}

/// Removes an article from the caller's favorites.
#[utoipa::path(tag = "Favorites", security(("Token" = [])), params(("slug" = String, Path)),
    responses((status = 200, body = SingleArticleResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/api/articles/{slug}/favorite")]
pub(crate) async fn unfavorite_article(
    state: web::Data<AppState>,
    user: AuthUser,
    idem: Idem,
    slug: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_favorite(&state, &user, &idem, &slug, false).await
}

async fn set_favorite(
    state: &AppState,
    user: &AuthUser,
    idem: &Idem,
    slug: &str,
    on: bool,
) -> Result<HttpResponse, ApiError> {
    let id = state
        .store
        .favorite(idem.lease(), &user.id, slug, on)
        .await?;
    let view = state.store.article_by_id(Some(&user.id), &id).await?;
    Ok(HttpResponse::Ok().json(SingleArticleResponse {
        article: Article::new(view, true),
    }))
}
