//! The HTTP side: OTLP/HTTP `POST /v1/traces` (protobuf or JSON) plus the report endpoints
//! `GET /report`, `POST /reset` and `GET /healthz`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Deserialize;

use crate::grpc::export_response;
use crate::report::Report;
use crate::store::SpanStore;

/// Largest accepted request body; SDK batches are far smaller.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// All HTTP routes over the shared store.
pub(crate) fn router(store: SpanStore) -> Router {
    Router::new()
        .route("/v1/traces", post(post_traces))
        .route("/report", get(get_report))
        .route("/reset", post(post_reset))
        .route("/healthz", get(get_healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
}

/// OTLP/HTTP export (<https://opentelemetry.io/docs/specs/otlp/#otlphttp-request>): the reply
/// uses the request's encoding. Compressed bodies are not supported (415).
async fn post_traces(State(store): State<SpanStore>, headers: HeaderMap, body: Bytes) -> Response {
    let encoding = header_str(&headers, header::CONTENT_ENCODING);
    if !matches!(encoding.as_str(), "" | "identity") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed bodies are not supported",
        )
            .into_response();
    }
    let content_type = header_str(&headers, header::CONTENT_TYPE);
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let request = match media_type {
        PROTOBUF => ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string()),
        JSON => {
            serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
        }
        _ => {
            let msg = format!("Content-Type must be {PROTOBUF} or {JSON}");
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, msg).into_response();
        }
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            log::warn!("bad OTLP/HTTP body: {e}");
            return (StatusCode::BAD_REQUEST, format!("bad OTLP body: {e}")).into_response();
        }
    };
    let refused = store.ingest(request);
    log::debug!("http export stored (refused {refused} spans)");
    let response = export_response(refused);
    if media_type == JSON {
        Json(response).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROTOBUF)], response.encode_to_vec()).into_response()
    }
}

/// Query of `GET /report`.
#[derive(Deserialize)]
struct ReportQuery {
    /// Only this trace (hex, any case).
    trace_id: Option<String>,
    /// `false` leaves out the span lists and keeps the counts.
    spans: Option<bool>,
}

async fn get_report(State(store): State<SpanStore>, Query(q): Query<ReportQuery>) -> Json<Report> {
    Json(store.report(q.trace_id.as_deref(), q.spans.unwrap_or(true)))
}

async fn post_reset(State(store): State<SpanStore>) -> StatusCode {
    store.reset();
    log::info!("span store reset");
    StatusCode::NO_CONTENT
}

async fn get_healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// A header's value in lowercase, or "" when absent or not ASCII.
fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}
