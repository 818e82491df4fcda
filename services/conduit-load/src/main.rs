//! `conduit-load`: traffic generator for the Stateless Conduit API.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = conduit_load::config::Cli::parse();
    conduit_load::telemetry::init_logging();
    ExitCode::from(conduit_load::run(cli).await)
}
