//! `otlp-receiver`: runs the test OTLP trace receiver until SIGINT/SIGTERM, or checks the
//! health of a running one (`otlp-receiver healthcheck`, for container health checks).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use otlp_receiver::{Receiver, ReceiverConfig, DEFAULT_MAX_SPANS};

/// A small OTLP trace receiver for tests: OTLP/gRPC and OTLP/HTTP in, a JSON report of spans
/// per service.instance.id and per trace out (GET /report on the HTTP address). Not a Jaeger
/// replacement.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// OTLP/gRPC listen address.
    #[arg(long, env = "OTLP_RECEIVER_GRPC_ADDR", default_value = "0.0.0.0:4317")]
    grpc_addr: SocketAddr,
    /// HTTP listen address: POST /v1/traces, GET /report, POST /reset, GET /healthz.
    #[arg(long, env = "OTLP_RECEIVER_HTTP_ADDR", default_value = "0.0.0.0:4318")]
    http_addr: SocketAddr,
    /// Most spans kept in memory; later spans are counted as dropped.
    #[arg(long, env = "OTLP_RECEIVER_MAX_SPANS", default_value_t = DEFAULT_MAX_SPANS)]
    max_spans: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the receiver (the default).
    Serve,
    /// GET /healthz of a running receiver; exit 0 on 200, 1 otherwise.
    Healthcheck {
        /// Address of the receiver's HTTP side (default: loopback with the --http-addr port).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck { addr }) => {
            let addr =
                addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], cli.http_addr.port())));
            match healthcheck(addr) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve) | None => {
            let config = ReceiverConfig {
                grpc_addr: cli.grpc_addr,
                http_addr: cli.http_addr,
                max_spans: cli.max_spans,
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[tokio::main]
async fn serve(config: ReceiverConfig) -> anyhow::Result<()> {
    let receiver = Receiver::start_with(config).await?;
    shutdown_signal().await?;
    log::info!("stopping");
    receiver.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// A bare HTTP/1.0 GET of /healthz, so the check needs no other tools in the image.
fn healthcheck(addr: SocketAddr) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_line = response.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.split_whitespace().nth(1) == Some("200"),
        "GET http://{addr}/healthz answered {status_line:?}"
    );
    Ok(())
}
