//! The `conduit-api` binary: serve a replica, make a key ring, or probe a replica's health.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use conduit_api::auth::keygen_line;
use conduit_api::config::{HealthcheckArgs, KeygenArgs};
use conduit_api::{telemetry, Application, Cli, Command, Config};

fn main() -> ExitCode {
    release_large_allocations();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(cli.serve),
        Some(Command::Keygen(args)) => keygen(&args),
        Some(Command::Healthcheck(args)) => healthcheck(&cli.serve, &args),
    }
}

/// Each password hash allocates argon2's 19 MiB working memory. glibc's allocator would keep
/// that memory after it is freed, so a replica's RSS would only grow with every login. Serving
/// allocations of 1 MiB and more straight from the kernel gives it back on free.
fn release_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; it is called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[actix_web::main]
async fn serve(config: Config) -> ExitCode {
    let guard = match telemetry::init(
        &config.replica_id(),
        telemetry::DEFAULT_LOG_FILTER,
        telemetry::LogTarget::Stderr,
        config.trace_trust,
    ) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("conduit-api: telemetry setup failed: {err:#}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(err) => {
            log::error!("cannot start: {err:#}");
            eprintln!("conduit-api: {err:#}");
            guard.shutdown().await;
            return ExitCode::from(2);
        }
    };
    log::info!(
        "listening on port {} exporting_traces={}",
        app.port(),
        guard.exporting()
    );
    let result = app.run_until_stopped(true).await;
    log::info!("stopped");
    guard.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("conduit-api: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(args: &KeygenArgs) -> ExitCode {
    let line = keygen_line(args.kid.as_deref());
    let Some(path) = &args.out else {
        println!("{line}");
        return ExitCode::SUCCESS;
    };
    if path.exists() && !args.force {
        eprintln!(
            "conduit-api: {} exists, keeping it (use --force to replace)",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
        let mut file = options.open(path)?;
        writeln!(
            file,
            "# Conduit signing key ring: one kid:secret per line, the first one signs."
        )?;
        writeln!(file, "{line}")?;
        file.sync_all()
    })();
    match written {
        Ok(()) => {
            eprintln!("conduit-api: wrote a new key ring to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("conduit-api: cannot write {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// A dependency-free HTTP/1.1 GET, so the runtime image needs no curl or shell.
fn healthcheck(config: &Config, args: &HealthcheckArgs) -> ExitCode {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}/healthz", config.addr.port()));
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("healthcheck: only http:// URLs are supported");
        return ExitCode::FAILURE;
    };
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let timeout = Duration::from_secs(args.timeout.max(1));
    let result = (|| -> std::io::Result<String> {
        use std::io::Read as _;
        use std::net::ToSocketAddrs as _;
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(response) if response.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!(
                "healthcheck: {}",
                response.lines().next().unwrap_or("no answer")
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}
