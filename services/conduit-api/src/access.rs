//! What every request gets, whatever its route: a server span, the `X-Served-By` and
//! `X-Trace-Id` response headers, and one access log line (target `conduit_api::access`; at
//! debug level for a CORS preflight).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use opentelemetry::context::FutureExt as _;

use crate::state::AppState;
use crate::telemetry::spans::{self, ServerRequest};

const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");
const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// The outermost middleware. The request runs inside its server span, so every span it starts
/// (token check, Redis round trips) is a child of it and every line it logs carries its trace id.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    let start = Instant::now();
    let method = req.method().clone();
    let preflight = crate::cors::is_preflight(req.head());
    let route =
        crate::routes::matched_route(req.request()).unwrap_or_else(|| "unmatched".to_owned());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let replica = state.as_ref().map_or("unknown", |s| s.replica_id.as_str());
    let context = spans::start_server_span(ServerRequest {
        method: method.as_str(),
        route: &route,
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path(), |target| target.as_str()),
        replica,
        headers: req.headers(),
    });

    let outcome = next.call(req).with_context(context.clone()).await;

    let (status, error) = match &outcome {
        Ok(res) => (res.status(), res.response().error()),
        Err(err) => (err.as_response_error().status_code(), Some(err)),
    };
    spans::end_server_span(&context, status, error.map(|e| e as &dyn std::fmt::Display));
    let trace_header = spans::trace_id(&context).and_then(|id| HeaderValue::from_str(id).ok());
    {
        let _current = context.attach();
        let level = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            log::Level::Error
        } else if preflight {
            // Browsers send one before many cross-origin calls; they are not worth a line each.
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "request method={method} route={route} status={} latency_ms={:.3}",
            status.as_u16(),
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    let mut res = outcome?;
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(replica) {
        headers.insert(X_SERVED_BY, value);
    }
    if let Some(value) = trace_header {
        headers.insert(X_TRACE_ID, value);
    }
    Ok(res)
}
