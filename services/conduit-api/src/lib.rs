//! Stateless Conduit: a RealWorld "Conduit" API replica that keeps nothing about its clients.
//!
//! Any number of replicas run side by side behind a load balancer. Each request carries a signed
//! token; the replicas share only the signing key ring and a Redis that holds the business data.
//!
//! # Layout
//! - [`config`]: flags and environment variables (`conduit-api --help`).
//! - [`startup`]: builds the actix application, binds the listener, runs and drains it.
//! - [`state`]: `AppState`, the handles and settings every handler shares.
//! - [`client`]: the caller's address, from the peer or a trusted proxy's `X-Forwarded-For`.
//! - [`access`]: what every request gets: a server span, `X-Served-By`, one log line.
//! - [`cors`]: which browser origins may call the API (`CONDUIT_CORS_ORIGINS`), preflights.
//! - [`telemetry`]: logs filtered by `RUST_LOG`; spans, made with the OpenTelemetry API, over OTLP.
//! - [`error`]: the API error type and the RealWorld `{"errors": ..}` body.
//! - [`auth`]: the JWT key ring, the `AuthUser` extractors, password hashing.
//! - [`domain`]: validated values (usernames, titles, tags, slugs, ...).
//! - [`idempotency`]: the `Idempotency-Key` middleware.
//! - [`routes`]: one file per API resource, each handler's whole story.
//! - [`store`]: the only code that talks to Redis; key names in `store::keys`.
//! - `testing`: helpers the workspace's test suites share (hidden from the docs).

pub mod access;
pub mod auth;
pub mod client;
pub mod config;
pub mod cors;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;

pub use config::{Cli, Command, Config};
pub use startup::Application;
pub use state::AppState;
