//! Log setup: one structured line per event, JSON or text, level from
//! `RUST_LOG` (default `info`).
//!
//! Lines are written by a dedicated thread (tracing-appender's non-blocking
//! writer): the request path only formats its line and queues it, and never
//! takes the stdout lock or waits on a slow log pipe. If the queue (128k
//! lines) ever fills, lines are dropped rather than stalling requests.
//!
//! Lines are formatted by [`Lines`], a small event formatter writing one
//! buffer per line. tracing-subscriber's own formats
//! built each line through layers of `fmt::Write` adaptors (and, for JSON,
//! a serde map per event); at the default `info` level, where every request
//! logs a line, that was 21k (text) to 28k (JSON) instructions per request,
//! a quarter to a third of the whole proxy path. The shapes are unchanged:
//! JSON `{"timestamp","level",<fields, message first>,"target"}`, and text
//! `<timestamp> <LEVEL> <target>: <message> key=value ...` with strings
//! quoted and escaped (a client-sent name cannot forge a line).

pub mod traces;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber: the log lines, and, given a tracer, request
/// spans turned into OpenTelemetry spans (see [`traces`]). Keep the guard
/// alive: dropping it flushes the log.
pub fn init(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::Tracer>) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Request spans are for the exporter only: the log lines never format
    // them, whatever `RUST_LOG` says.
    let filter = match format!("{}=off", traces::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .event_format(Lines(format))
        .with_filter(filter);
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_level(false)
            .with_context_activation(false)
            .with_filter(Targets::new().with_target(traces::TARGET, LevelFilter::INFO))
    });
    tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .init();
    guard
}

/// The line formatter: one buffer per line, in either format.
/// JSON: `{"timestamp","level",<fields>,"target"}`; text:
/// `2026-11-24T10:35:03.648643Z  INFO llm_router::request: request key="v" n=1`.
pub struct Lines(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        match self.0 {
            LogFormat::Json => {
                let mut line = JsonObject(Vec::with_capacity(512));
                line.0.push(b'{');
                line.field("timestamp", &now.to_string());
                line.field("level", meta.level().as_str());
                event.record(&mut line);
                line.field("target", meta.target());
                line.0.extend_from_slice(b"}\n");
                writer.write_str(std::str::from_utf8(&line.0).map_err(|_| fmt::Error)?)
            }
            LogFormat::Text => {
                use std::fmt::Write as _;
                let mut line = TextFields(String::with_capacity(256));
                let (level, target) = (meta.level().as_str(), meta.target());
                write!(line.0, "{now} {level:>5} {target}:")?;
                event.record(&mut line);
                line.0.push('\n');
                writer.write_str(&line.0)
            }
        }
    }
}

/// A JSON object being written; every key and value goes through
/// serde_json, so strings are escaped exactly once and properly.
struct JsonObject(Vec<u8>);

impl JsonObject {
    fn field<V: serde::Serialize + ?Sized>(&mut self, key: &str, value: &V) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        // Writing to a Vec cannot fail; non-finite floats become null.
        let _ = serde_json::to_writer(&mut self.0, key);
        self.0.push(b':');
        let _ = serde_json::to_writer(&mut self.0, value);
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field.name(), value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field.name(), &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field.name(), &value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field.name(), &value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field.name(), &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` arrives as format arguments, whose Debug is their text.
        self.field(field.name(), &format!("{value:?}"));
    }
}

/// `key=value` pairs; strings (and anything Debug-formatted) are quoted and
/// escaped, the message is written bare.
struct TextFields(String);

impl TextFields {
    fn pair(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Visit for TextFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, format_args!("{value:?}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, format_args!("{value}"));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, format_args!("{value}"));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, format_args!("{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, format_args!("{value}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, format_args!("{:?}", value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            // Quoted and escaped like a string: Debug output of a type we
            // do not know may contain anything.
            self.pair(field, format_args!("{:?}", format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes, formatted as `format`.
    fn capture(format: LogFormat, log: impl FnOnce()) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(Lines(format))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_have_every_field_escaped_once() {
        let text = capture(LogFormat::Json, || {
            let group = "g\"\n1";
            tracing::info!(
                target: "llm_router::request",
                group,
                status = 200u16,
                ratio = 0.5,
                missing = f64::NAN,
                estimated = false,
                failure = ?Some(3),
                "request"
            );
        });
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["message"], "request");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "llm_router::request");
        assert_eq!(v["group"], "g\"\n1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["ratio"], 0.5);
        assert!(v["missing"].is_null());
        assert_eq!(v["estimated"], false);
        assert_eq!(v["failure"], "Some(3)");
        assert!(
            humantime::parse_rfc3339(v["timestamp"].as_str().unwrap()).is_ok(),
            "{v}"
        );
    }

    #[test]
    fn text_lines_quote_strings_so_no_line_can_be_forged() {
        let text = capture(LogFormat::Text, || {
            let group = "g\"\n2026-01-01T00:00:00Z  INFO forged";
            tracing::warn!(target: "llm_router::request", group, status = 429u16, ok = false, "request {}", 1);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        let (stamp, rest) = text.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{text}");
        assert_eq!(
            rest,
            " WARN llm_router::request: request 1 group=\"g\\\"\\n2026-01-01T00:00:00Z  INFO forged\" status=429 ok=false\n"
        );
    }
}
