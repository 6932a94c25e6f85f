//! The end of a routed request: settle usage, and write its one log line.
//!
//! An [`Exchange`] is created when an upstream answers and travels with the
//! response: the handler finishes it for JSON bodies, the relay for streams.
//! If it is dropped unfinished (the client went away mid-body or mid-stream,
//! or the task was cancelled) its `Drop` settles the reservation with an
//! estimate and logs `client_disconnected`, so usage is never lost.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::clients::Client;
use crate::config::Cooldown;
use crate::metrics::Metrics;
use crate::routing::{Group, Reason, now_ms};
use crate::telemetry::traces::Trace;
use crate::usage::cost::usd;
use crate::usage::{Penalties, Reservation, Settlement, TokenUsage};

/// What is known about a request before it is routed.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: Arc<str>,
    pub endpoint: &'static str,
    pub started: Instant,
    /// The request's server span (empty when traces are off).
    pub trace: Trace,
}

/// How a routed request ended: the log's `outcome`, and for failures the
/// kind of `upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// The answer reached the client whole.
    #[default]
    Ok,
    /// The client went away before the answer was complete.
    ClientDisconnected,
    /// The upstream broke or stalled mid-stream.
    StreamInterrupted,
    /// The stream was still open when the shutdown drain ran out.
    Shutdown,
    /// The upstream stopped sending a JSON body for longer than allowed.
    UpstreamTimeout,
    /// The upstream's JSON body broke off.
    UpstreamBodyFailed,
    /// One SSE event grew past `limits.max_event_bytes`.
    EventTooLarge,
    /// The answer grew past `limits.max_response_bytes`.
    ResponseTooLarge,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientDisconnected => "client_disconnected",
            Self::StreamInterrupted => "stream_interrupted",
            Self::Shutdown => "shutdown",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamBodyFailed => "upstream_body_error",
            Self::EventTooLarge => "event_too_large",
            Self::ResponseTooLarge => "response_too_large",
        }
    }

    /// Whether the upstream is to blame (an error, and the error penalty).
    pub fn upstream_failed(self) -> bool {
        matches!(
            self,
            Self::StreamInterrupted
                | Self::UpstreamTimeout
                | Self::UpstreamBodyFailed
                | Self::EventTooLarge
                | Self::ResponseTooLarge
        )
    }
}

/// How a response ended.
#[derive(Debug, Clone, Default)]
pub struct End {
    pub usage: Option<TokenUsage>,
    /// Completion chunks streamed, counted as tokens when usage is unknown.
    pub streamed: u64,
    pub outcome: Outcome,
    /// The response's text-bearing parts (stream event data, or the whole
    /// body), kept only so a missing `usage` can be estimated.
    pub captured: Vec<Bytes>,
}

impl End {
    /// An answer that reached the client whole.
    pub fn ok(usage: Option<TokenUsage>) -> Self {
        Self {
            usage,
            ..Self::default()
        }
    }

    /// An answer that ended otherwise.
    pub fn with(outcome: Outcome) -> Self {
        Self {
            outcome,
            ..Self::default()
        }
    }
}

/// Where a request went: the candidate that answered, its status, and the
/// reservation its routing made.
pub struct Routed {
    pub group: Arc<Group>,
    pub candidate: usize,
    pub attempts: u32,
    pub status: u16,
    pub reservation: Reservation,
    /// The answering attempt's span.
    pub trace: Trace,
}

/// Who pays, and how: the penalties and the cooldown a failure costs the
/// candidate, the client key, and the request body (a cheap reference, kept
/// to estimate usage the upstream did not report).
pub struct Billing {
    pub penalties: Penalties,
    pub cooldown: Cooldown,
    pub client: Option<Arc<Client>>,
    pub request_body: Bytes,
    pub metrics: Arc<Metrics>,
}

pub struct Exchange {
    pub info: RequestInfo,
    pub group: Arc<Group>,
    pub candidate: usize,
    pub status: u16,
    pub attempts: u32,
    reservation: Option<Reservation>,
    billing: Billing,
    first_event_seen: bool,
    /// The answering attempt's span.
    attempt: Trace,
    /// The answer's text, kept for the span when content is captured.
    output: Option<String>,
}

impl Exchange {
    pub fn new(info: RequestInfo, routed: Routed, billing: Billing) -> Self {
        Self {
            info,
            group: routed.group,
            candidate: routed.candidate,
            status: routed.status,
            attempts: routed.attempts,
            reservation: Some(routed.reservation),
            billing,
            first_event_seen: false,
            output: (routed.trace.is_on() && crate::telemetry::traces::capture_content())
                .then(String::new),
            attempt: routed.trace,
        }
    }

    /// Whether the answer's text is wanted (for a span).
    pub fn keeps_output(&self) -> bool {
        self.output.is_some()
    }

    /// Notes the text of an answer's body or event, for the spans, when
    /// content is captured (bounded).
    pub fn note_output(&mut self, data: &[u8]) {
        if let Some(out) = &mut self.output
            && out.len() < crate::telemetry::traces::MAX_CONTENT_BYTES
        {
            crate::usage::estimate::completion_text(data, out);
        }
    }

    /// Whether to keep response text for a usage estimate.
    pub fn wants_capture(&self) -> bool {
        self.group.candidates[self.candidate]
            .usage
            .reports_no_usage()
    }

    /// Records time to first token, once, when a stream's first event leaves.
    pub fn first_event(&mut self) {
        if !self.first_event_seen {
            self.first_event_seen = true;
            let c = &self.group.candidates[self.candidate];
            c.metrics.first_token.observe(self.info.started.elapsed());
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.billing.metrics
    }

    pub fn finish(mut self, end: End) {
        self.settle(end);
    }

    fn settle(&mut self, end: End) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let needs_estimate =
            end.usage.is_none() && (!end.captured.is_empty() || !end.outcome.upstream_failed());
        let settle = Settle {
            info: self.info.clone(),
            group: self.group.clone(),
            candidate: self.candidate,
            status: self.status,
            attempts: self.attempts,
            penalties: self.billing.penalties,
            cooldown: self.billing.cooldown.clone(),
            metrics: self.billing.metrics.clone(),
            client: self.billing.client.take(),
            request_body: std::mem::take(&mut self.billing.request_body),
            reservation,
            attempt: std::mem::take(&mut self.attempt),
            output: self.output.take(),
        };
        match tokio::runtime::Handle::try_current() {
            // Counting tokens is CPU work in proportion to the text (a long
            // prompt takes milliseconds): off the worker thread, whose other
            // connections would wait for it.
            Ok(runtime) if needs_estimate => {
                runtime.spawn_blocking(move || settle.run(end));
            }
            _ => settle.run(end),
        }
    }
}

/// What settling an exchange needs, owned, so it can run elsewhere.
struct Settle {
    info: RequestInfo,
    group: Arc<Group>,
    candidate: usize,
    status: u16,
    attempts: u32,
    penalties: Penalties,
    cooldown: Cooldown,
    metrics: Arc<Metrics>,
    client: Option<Arc<Client>>,
    request_body: Bytes,
    reservation: Reservation,
    attempt: Trace,
    output: Option<String>,
}

impl Settle {
    /// Estimates usage if need be, settles the reservation, counts, logs.
    fn run(self, mut end: End) {
        let reservation = self.reservation;
        let prompt_estimate = reservation.prompt_estimate();
        let c = &self.group.candidates[self.candidate];
        let failed = end.outcome.upstream_failed();
        let mut estimated = false;
        if end.usage.is_none() && (!end.captured.is_empty() || !failed) {
            let mut usage = crate::usage::estimate::estimate(&self.request_body, &end.captured);
            if end.captured.is_empty() {
                // Nothing was kept (this upstream usually reports usage):
                // count streamed chunks, about a token each.
                usage.completion_tokens = end.streamed;
                usage.total_tokens = usage.prompt_tokens + end.streamed;
            }
            end.usage = Some(usage);
            estimated = true;
        }
        if end.outcome == Outcome::Ok {
            c.usage.set_reports_no_usage(estimated);
        }
        // What the provider bills: settled usage at the model's prices (a
        // failure that produced nothing costs nothing). No price, no cost.
        let cost_nanos = c.price.map(|p| end.usage.map_or(0, |u| p.cost_nanos(&u)));
        let settlement = Settlement {
            usage: end.usage,
            estimated,
            streamed_tokens: end.streamed,
            failed,
            penalties: self.penalties,
            cost_nanos: cost_nanos.unwrap_or(0),
        };
        reservation.settle(settlement);
        let tokens = end.usage.unwrap_or(TokenUsage {
            prompt_tokens: prompt_estimate,
            completion_tokens: end.streamed,
            total_tokens: prompt_estimate + end.streamed,
            cached_prompt_tokens: 0,
        });
        if let Some(client) = &self.client {
            client.record(
                Settlement {
                    penalties: Penalties::default(),
                    ..settlement
                },
                prompt_estimate,
                tokens.total_tokens,
            );
        }
        let m = &c.metrics;
        if let Some(nanos) = cost_nanos {
            m.cost.inc_by(usd(nanos));
        }
        m.request(&self.metrics, self.status);
        m.prompt_tokens.inc_by(tokens.prompt_tokens);
        m.completion_tokens.inc_by(tokens.completion_tokens);
        if estimated || end.usage.is_none() {
            m.estimated.inc();
        }
        if failed {
            m.upstream_error(&self.metrics, end.outcome.as_str());
            // The answer began and then went wrong: the next requests try
            // another candidate first.
            c.health
                .failed(now_ms(), Reason::BrokenAnswer, None, &self.cooldown);
        }
        let latency = self.info.started.elapsed();
        m.duration.observe(latency);
        self.metrics
            .recent
            .record(crate::metrics::recent::RecentRequest {
                at: 0,
                request_id: self.info.request_id.clone(),
                group: self.group.name.clone(),
                provider: c.provider.name.clone(),
                model: c.model.clone(),
                key: c.key.alias.clone(),
                status: self.status,
                outcome: end.outcome.as_str(),
                total_tokens: tokens.total_tokens,
                latency_ms: latency.as_secs_f64() * 1000.0,
            });
        let spans = [&self.info.trace, &self.attempt];
        if spans[0].is_on() {
            let request = &self.info.trace;
            request.set("gen_ai.request.model", self.group.name.to_string());
            request.set("gen_ai.provider.name", c.provider.kind.gen_ai_name());
            request.set("llm_router.provider", c.provider.name.to_string());
            request.set("llm_router.key", c.key.alias.to_string());
            request.set("llm_router.attempts", i64::from(self.attempts));
            request.set("http.response.status_code", i64::from(self.status));
            if let Some(client) = &self.client {
                request.set("llm_router.client", client.name.to_string());
            }
            for span in spans {
                span.set("gen_ai.response.model", c.model.to_string());
                span.set("gen_ai.usage.input_tokens", tokens.prompt_tokens as i64);
                span.set(
                    "gen_ai.usage.output_tokens",
                    tokens.completion_tokens as i64,
                );
                span.set(
                    "llm_router.usage_estimated",
                    estimated || end.usage.is_none(),
                );
                span.set("llm_router.outcome", end.outcome.as_str());
                if let Some(nanos) = cost_nanos {
                    span.set("llm_router.cost_usd", usd(nanos));
                }
                if end.outcome != Outcome::Ok {
                    span.fail(end.outcome.as_str());
                } else if self.status >= 400 {
                    span.fail(status_error(self.status));
                }
                if let Some(text) = &self.output {
                    span.set_content("gen_ai.output.messages", &output_messages(text));
                }
            }
        }
        let trace_id = self.info.trace.trace_id();
        // Plain `&str` values: the JSON format escapes them once, the text
        // format quotes and escapes them (no log injection), and neither
        // goes through `fmt` machinery (that was most of this line's cost).
        tracing::info!(
            target: "llm_router::request",
            request_id = &*self.info.request_id,
            endpoint = self.info.endpoint,
            group = &*self.group.name,
            provider = &*c.provider.name,
            model = &*c.model,
            key = &*c.key.alias,
            client = self.client.as_ref().map(|c| &*c.name),
            status = self.status,
            outcome = end.outcome.as_str(),
            attempts = self.attempts,
            prompt_tokens = tokens.prompt_tokens,
            completion_tokens = tokens.completion_tokens,
            total_tokens = tokens.total_tokens,
            usage_estimated = estimated || end.usage.is_none(),
            cost_usd = cost_nanos.map(usd),
            latency_ms = latency.as_secs_f64() * 1000.0,
            trace_id = trace_id.as_deref(),
            "request"
        );
    }
}

/// `error.type` for an answer passed on with an error status.
fn status_error(status: u16) -> &'static str {
    if status >= 500 {
        "server_error"
    } else {
        "client_error"
    }
}

/// The answer's text as OpenTelemetry's `gen_ai.output.messages` JSON.
fn output_messages(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([
        {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    ]))
    .unwrap_or_default()
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.settle(End::with(Outcome::ClientDisconnected));
    }
}

/// Logs (and counts) a request answered without reaching an upstream.
pub fn log_rejected(
    metrics: &Metrics,
    info: &RequestInfo,
    group: Option<&str>,
    status: u16,
    code: &'static str,
) {
    metrics
        .rejected
        .get_or_create(&crate::metrics::CodeLabels { code })
        .inc();
    let trace = &info.trace;
    if trace.is_on() {
        if let Some(group) = group {
            trace.set("gen_ai.request.model", group.to_string());
        }
        trace.set("http.response.status_code", i64::from(status));
        trace.set("llm_router.outcome", code);
        trace.fail(code);
    }
    tracing::info!(
        target: "llm_router::request",
        request_id = &*info.request_id,
        endpoint = info.endpoint,
        group,
        status,
        outcome = code,
        latency_ms = info.started.elapsed().as_secs_f64() * 1000.0,
        trace_id = trace.trace_id().as_deref(),
        "request"
    );
}

/// Logs a request the router answered itself (say, tokens counted locally
/// for a group with no provider to ask).
pub fn log_local(metrics: &Metrics, info: &RequestInfo, group: &str, outcome: &'static str) {
    metrics
        .answered_locally
        .get_or_create(&crate::metrics::CodeLabels { code: outcome })
        .inc();
    let trace = &info.trace;
    if trace.is_on() {
        trace.set("gen_ai.request.model", group.to_string());
        trace.set("http.response.status_code", 200i64);
        trace.set("llm_router.outcome", outcome);
    }
    tracing::info!(
        target: "llm_router::request",
        request_id = &*info.request_id,
        endpoint = info.endpoint,
        group,
        status = 200u16,
        outcome,
        latency_ms = info.started.elapsed().as_secs_f64() * 1000.0,
        trace_id = trace.trace_id().as_deref(),
        "request"
    );
}
