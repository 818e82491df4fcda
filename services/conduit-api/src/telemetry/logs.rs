//! Log lines: env_logger, with the replica id and the current request's trace id on every line,
//! and warnings copied into the trace.

use std::io::Write as _;

use log::{Level, Log, Metadata, Record};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::KeyValue;

/// Crates whose warnings are about exporting spans; they never become span events.
const EXPORTER_TARGETS: [&str; 7] = [
    "opentelemetry",
    "tonic",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "reqwest",
];

/// The process logger: env_logger for filtering (`RUST_LOG`) and writing, plus span events.
pub(super) struct Logger {
    lines: env_logger::Logger,
}

impl Logger {
    /// Lines to `target`, filtered by `RUST_LOG` or else by `default_filter`.
    pub(super) fn new(replica: &str, default_filter: &str, target: env_logger::Target) -> Self {
        let replica = replica.to_owned();
        let lines = env_logger::Builder::from_env(
            env_logger::Env::default().default_filter_or(default_filter),
        )
        .target(target)
        // The format below adds no colours. Any other style than `Always` would pass every line
        // through a filter that looks for colour codes to strip, at a third of the line's cost.
        .write_style(env_logger::WriteStyle::Always)
        .format(move |buf, record| {
            write!(
                buf,
                "{} {:>5} {}: {} replica={replica}",
                buf.timestamp_micros(),
                record.level(),
                record.target(),
                record.args(),
            )?;
            opentelemetry::Context::map_current(|cx| {
                if let Some(trace_id) = super::spans::trace_id(cx) {
                    write!(buf, " trace_id={trace_id}")?;
                }
                writeln!(buf)
            })
        })
        .build();
        Self { lines }
    }

    /// The most verbose level any record is needed for: the lines' filter, and at least
    /// warnings, which become span events.
    pub(super) fn max_level(&self) -> log::LevelFilter {
        self.lines.filter().max(log::LevelFilter::Warn)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Warn || self.lines.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() <= Level::Warn {
            add_span_event(record);
        }
        self.lines.log(record);
    }

    fn flush(&self) {
        self.lines.flush();
    }
}

/// Copies a warning or an error into the current request's span, so it shows up in the trace
/// next to the work that raised it.
fn add_span_event(record: &Record<'_>) {
    let target = record.target();
    let crate_name = target.split("::").next().unwrap_or(target);
    if EXPORTER_TARGETS.iter().any(|t| crate_name.starts_with(t)) {
        return;
    }
    opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        if span.is_recording() {
            span.add_event(
                record.args().to_string(),
                vec![
                    KeyValue::new("level", record.level().as_str()),
                    KeyValue::new("target", target.to_owned()),
                ],
            );
        }
    });
}
