//! `GET /api/tags` (spec: Tags).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub(crate) struct TagsResponse {
    tags: Vec<String>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_tags);
}

/// Tags in use, most used first.
#[utoipa::path(tag = "Tags", responses((status = 200, body = TagsResponse)))]
#[get("/api/tags")]
pub(crate) async fn list_tags(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let tags = state.store.tags().await?;
    Ok(HttpResponse::Ok().json(TagsResponse { tags }))
}
