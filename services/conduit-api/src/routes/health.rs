//! Liveness and readiness.
//!
//! `/healthz` says the process answers. `/readyz` says this replica should get traffic: Redis
//! answers and the replica is not draining after SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::startup::AppState;

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
        Ok(()) => HttpResponse::Ok().json(health(&state, "ok")),
        Err(err) => {
            log::warn!("readiness check failed error={err}");
            HttpResponse::ServiceUnavailable().json(health(&state, "unavailable"))
        }
    }
}
