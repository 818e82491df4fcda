//! A small OTLP **trace** receiver for tests and local stacks.
//!
//! It accepts spans over OTLP/gRPC (`TraceService/Export`) and OTLP/HTTP (`POST /v1/traces`,
//! protobuf or JSON), keeps them in memory (bounded, see [`DEFAULT_MAX_SPANS`]) and reports
//! them as JSON at `GET /report`: totals, spans per `service.instance.id` and per
//! `service.name`, and per trace the span count, the instances involved and the spans with
//! their parent links. `POST /reset` forgets everything, `GET /healthz` answers 200.
//!
//! It is not a Jaeger replacement: there is no UI, no search, no persistence, no sampling
//! and no metrics or logs; it exists so tests can check which replica made which span.
//!
//! Rust tests start it in-process on port 0:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let receiver = otlp_receiver::Receiver::start(
//!     "127.0.0.1:0".parse()?,
//!     "127.0.0.1:0".parse()?,
//! ).await?;
//! // point an exporter at receiver.grpc_endpoint() or receiver.http_traces_endpoint(), then:
//! let report = receiver.report();
//! println!("{} spans", report.total_spans);
//! receiver.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: `report` (the JSON report types), `store` (the bounded span store), `grpc` (the
//! gRPC service), `http` (the HTTP routes).

mod grpc;
mod http;
mod report;
mod store;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use report::{Report, SpanRecord, TraceReport, MISSING};

use crate::grpc::GrpcTraceService;
use crate::store::SpanStore;

/// Spans kept by default; later ones are counted in [`Report::dropped_spans`].
pub const DEFAULT_MAX_SPANS: usize = 200_000;

/// Largest gRPC message accepted.
const MAX_GRPC_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long [`Receiver::shutdown`] waits for open connections before it stops the servers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where to listen and how much to keep.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// OTLP/gRPC listen address (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for `/v1/traces`, `/report`, `/reset`, `/healthz` (port 0 allowed).
    pub http_addr: SocketAddr,
    /// Most spans kept in memory.
    pub max_spans: usize,
}

impl ReceiverConfig {
    /// The given addresses with [`DEFAULT_MAX_SPANS`].
    pub fn new(grpc_addr: SocketAddr, http_addr: SocketAddr) -> Self {
        Self {
            grpc_addr,
            http_addr,
            max_spans: DEFAULT_MAX_SPANS,
        }
    }
}

/// A running receiver. Dropping it stops the servers too, without waiting.
pub struct Receiver {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: SpanStore,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Binds both listeners and starts serving, keeping up to [`DEFAULT_MAX_SPANS`] spans.
    ///
    /// # Returns
    /// The running receiver, or an error when an address cannot be bound.
    pub async fn start(grpc_addr: SocketAddr, http_addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(ReceiverConfig::new(grpc_addr, http_addr)).await
    }

    /// Like [`Receiver::start`] with every setting given.
    pub async fn start_with(config: ReceiverConfig) -> anyhow::Result<Self> {
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot bind the gRPC address {}", config.grpc_addr))?;
        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot bind the HTTP address {}", config.http_addr))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let store = SpanStore::new(config.max_spans);
        let (stop_tx, _) = watch::channel(false);

        let grpc_service = TraceServiceServer::new(GrpcTraceService {
            store: store.clone(),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let stop = stopped(stop_tx.subscribe());
        let grpc_task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(grpc_service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc_listener),
                    stop,
                )
                .await;
            if let Err(e) = result {
                log::error!("gRPC server failed: {e}");
            }
        });

        let app = http::router(store.clone());
        let stop = stopped(stop_tx.subscribe());
        let http_task = tokio::spawn(async move {
            let result = axum::serve(http_listener, app)
                .with_graceful_shutdown(stop)
                .await;
            if let Err(e) = result {
                log::error!("HTTP server failed: {e}");
            }
        });

        log::info!("OTLP receiver: gRPC on {grpc_addr}, HTTP on {http_addr}");
        Ok(Self {
            grpc_addr,
            http_addr,
            store,
            stop_tx,
            tasks: vec![grpc_task, http_task],
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// URL for an OTLP/gRPC exporter, e.g. `http://127.0.0.1:4317` (a wildcard bind address
    /// becomes loopback).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", loopback_if_unspecified(self.grpc_addr))
    }

    /// Base URL of the HTTP side, e.g. `http://127.0.0.1:4318`.
    pub fn http_base_url(&self) -> String {
        format!("http://{}", loopback_if_unspecified(self.http_addr))
    }

    /// URL for an OTLP/HTTP exporter configured in code: `<http base>/v1/traces`.
    pub fn http_traces_endpoint(&self) -> String {
        format!("{}/v1/traces", self.http_base_url())
    }

    /// Report of every stored span (the same data as `GET /report`).
    pub fn report(&self) -> Report {
        self.store.report(None, true)
    }

    /// Report of one trace (hex id, any case); empty when the trace is unknown.
    pub fn trace_report(&self, trace_id: &str) -> Report {
        self.store.report(Some(trace_id), true)
    }

    /// Forgets every stored span and the dropped count.
    pub fn reset(&self) {
        self.store.reset();
    }

    /// Waits until at least `min_spans` spans are stored.
    ///
    /// # Returns
    /// The report at that moment, or an error naming the count reached when `timeout` passes first.
    pub async fn wait_for_spans(
        &self,
        min_spans: usize,
        timeout: Duration,
    ) -> anyhow::Result<Report> {
        let mut stored = self.store.watch_stored();
        let reached = tokio::time::timeout(timeout, stored.wait_for(|n| *n >= min_spans))
            .await
            .is_ok_and(|r| r.is_ok());
        anyhow::ensure!(
            reached,
            "waited {timeout:?} for {min_spans} spans, have {}",
            *stored.borrow()
        );
        Ok(self.report())
    }

    /// Stops accepting, lets open requests finish (up to a few seconds), then stops both servers.
    pub async fn shutdown(mut self) {
        self.stop_tx.send_replace(true);
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                // A client kept its connection open; do not wait for it any longer.
                task.abort();
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop_tx.send_replace(true);
    }
}

/// Resolves once the stop flag turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// `0.0.0.0` / `::` are not addresses a client can dial; use loopback instead.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
