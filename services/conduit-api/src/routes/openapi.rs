//! `GET /api/openapi.json`: the API's OpenAPI document, generated from the handlers and types
//! themselves so it cannot drift from the code.

use std::sync::OnceLock;

use actix_web::dev::ResourceDef;
use actix_web::{get, web, HttpResponse};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, ResponseBuilder};
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
/// format: any status not listed (400, 413, 503, ...) still comes with an `errors` body. Also
/// states that an update names at least one field (the derive cannot say so).
struct CommonResponses;

/// Turns the schema `name` into `allOf: [<schema>, anyOf: [{required: [field]}, ...]]`. A field
/// with a type must be sent with that type (its `null` counts as not sent); one without may be
/// `null` too.
fn require_one_of(components: &mut Components, name: &str, fields: &[(&str, Option<Type>)]) {
    let Some(schema) = components.schemas.remove(name) else {
        return;
    };
    let one_of_them = fields.iter().fold(AnyOfBuilder::new(), |any, (field, ty)| {
        let present = ObjectBuilder::new().required(*field);
        any.item(match ty {
            Some(ty) => present.property(*field, ObjectBuilder::new().schema_type(ty.clone())),
            None => present,
        })
    });
    components.schemas.insert(
        name.to_owned(),
        AllOfBuilder::new().item(schema).item(one_of_them).into(),
    );
}

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
        require_one_of(
            components,
            "UpdateUser",
            &[
                ("username", Some(Type::String)),
                ("email", Some(Type::String)),
                ("password", Some(Type::String)),
                ("bio", None),
                ("image", None),
            ],
        );
        require_one_of(
            components,
            "UpdateArticleFields",
            &[
                ("title", Some(Type::String)),
                ("description", Some(Type::String)),
                ("body", Some(Type::String)),
                ("tagList", Some(Type::Array)),
            ],
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

/// The methods served on `path`, as an `Allow` header value (`GET, PUT`), or `None` when no route
/// has this path. Read from the document, which lists every route, so a known path asked with
/// another method can be answered 405 instead of 404.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    static ROUTES: OnceLock<Vec<(ResourceDef, String)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let doc = ApiDoc::openapi();
        let mut routes: Vec<(ResourceDef, String)> = doc
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods = [
                    ("GET", &item.get),
                    ("PUT", &item.put),
                    ("POST", &item.post),
                    ("DELETE", &item.delete),
                ]
                .into_iter()
                .filter(|(_, op)| op.is_some())
                .map(|(name, _)| name)
                .collect::<Vec<_>>();
                (ResourceDef::new(template.as_str()), methods.join(", "))
            })
            .collect();
        routes.push((ResourceDef::new("/api/openapi.json"), "GET".to_owned()));
        routes
    });
    routes
        .iter()
        .find(|(def, _)| def.is_match(path))
        .map(|(_, allow)| allow.as_str())
}
