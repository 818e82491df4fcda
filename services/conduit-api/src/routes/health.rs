//! Liveness and readiness.
//!
//! `/healthz` says the process answers. `/readyz` says this replica should get traffic: Redis
//! answers and the replica is not draining after SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::store::{ReplicaState, StoreError};

/// Set once SIGTERM arrives; readiness turns 503 while the replica keeps serving.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HealthResponse {
    /// `ok`, `draining` or `unavailable`.
    status: &'static str,
    replica: String,
    version: &'static str,
    /// How this replica reaches Redis: `single` or `cluster`.
    redis: &'static str,
    /// Readiness only: `ok` when every Redis primary has the replicas writes wait for
    /// (`CONDUIT_REDIS_MIN_REPLICAS`), `missing` when some has not (writes go on without),
    /// `not_required` when writes do not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<&'static str>,
    /// Readiness only: the primaries without enough replicas.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    primaries_without_replica: Vec<String>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

fn health(state: &AppState, status: &'static str) -> HealthResponse {
    HealthResponse {
        status,
        replica: state.replica_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        redis: state.store.mode(),
        replicas: None,
        primaries_without_replica: Vec::new(),
    }
}

/// The process is alive.
#[utoipa::path(tag = "Operations", responses((status = 200, body = HealthResponse)))]
#[get("/healthz")]
pub(crate) async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(health(&state, "ok"))
}

/// The replica is ready for traffic: Redis answers and it is not draining.
#[utoipa::path(tag = "Operations", responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
#[get("/readyz")]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.is_draining() {
        return HttpResponse::ServiceUnavailable().json(health(&state, "draining"));
    }
    match state.store.ping().await {
        Ok(()) => {
            let mut body = health(&state, "ok");
            match state.store.replica_state().await {
                Ok(ReplicaState::NotRequired) => body.replicas = Some("not_required"),
                Ok(ReplicaState::Ok) => body.replicas = Some("ok"),
                Ok(ReplicaState::Missing(nodes)) => {
                    body.replicas = Some("missing");
                    body.primaries_without_replica = nodes;
                }
                Err(err) => return not_ready(&state, err),
            }
            HttpResponse::Ok().json(body)
        }
        Err(err) => not_ready(&state, err),
    }
}

/// 503 `unavailable`, logging why (a refused connection, a timeout, a name that does not
/// resolve), so an operator sees more than "unavailable".
fn not_ready(state: &AppState, err: StoreError) -> HttpResponse {
    let cause = std::error::Error::source(&err)
        .map(|cause| format!(": {cause}"))
        .unwrap_or_default();
    log::warn!("readiness check failed error={err}{cause}");
    HttpResponse::ServiceUnavailable().json(health(state, "unavailable"))
}
