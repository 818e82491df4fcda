//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers and types
//! themselves so it cannot drift from the code.

use std::sync::OnceLock;

use actix_web::{get, web, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{articles, comments, health, profiles, tags, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Conduit API", description = "A stateless RealWorld Conduit API replica backed by Redis."),
    paths(
        users::register, users::login, users::get_current_user, users::update_current_user,
        profiles::get_profile, profiles::follow_user, profiles::unfollow_user,
        articles::list_articles, articles::feed_articles, articles::get_article, articles::create_article,
        articles::update_article, articles::delete_article, articles::favorite_article, articles::unfavorite_article,
        comments::list_comments, comments::add_comment, comments::delete_comment,
        tags::list_tags, health::healthz, health::readyz,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&CommonResponses),
)]
pub struct ApiDoc;

/// Adds the `Token` security scheme and, on every operation, a `default` response in the error
/// format: any status not listed (400, 413, 503, ...) still comes with an `errors` body.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "Token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <jwt>` or `Bearer <jwt>`",
            ))),
        );
        let error = ResponseBuilder::new()
            .description("An error in the RealWorld format")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| error.clone().into());
            }
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi_json);
}

/// The OpenAPI document of this API.
#[get("/api/openapi.json")]
pub(crate) async fn openapi_json() -> HttpResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.as_str())
}
