//! Integration tests: real replicas against a real Redis (see scripts/test.sh).

mod articles;
mod auth;
mod cluster;
mod comments;
mod conformance;
mod cors;
mod crash;
mod durability;
mod health;
mod helpers;
mod hostile_input;
mod idempotency;
mod login_guard;
mod process;
mod profiles;
mod redis_outage;
mod replicas;
mod response_size;
mod shutdown;
mod tracing;
mod users;
