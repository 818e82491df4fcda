//! Integration tests: real replicas against a real Redis (see scripts/test.sh).

mod articles;
mod auth;
mod cluster;
mod comments;
mod conformance;
mod durability;
mod health;
mod helpers;
mod hostile_input;
mod idempotency;
mod process;
mod profiles;
mod redis_outage;
mod replicas;
mod shutdown;
mod tracing;
mod users;
