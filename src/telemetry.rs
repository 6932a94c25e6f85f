//! Log setup: one structured line per event, JSON or text, level from
//! `RUST_LOG` (default `info`).
//!
//! Lines are written by a dedicated thread (tracing-appender's non-blocking
//! writer): the request path only formats its line and queues it, and never
//! takes the stdout lock or waits on a slow log pipe. If the queue (128k
//! lines) ever fills, lines are dropped rather than stalling requests.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber. Keep the guard alive: dropping it flushes.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}
