//! The end of a routed request: settle usage, and write its one log line.
//!
//! An [`Exchange`] is created when an upstream answers and travels with the
//! response: the handler finishes it for JSON bodies, the relay for streams.
//! If it is dropped unfinished (the client went away mid-body or mid-stream,
//! or the task was cancelled) its `Drop` settles the reservation with an
//! estimate and logs `client_disconnected`, so usage is never lost.

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;
use crate::routing::Group;
use crate::usage::{Reservation, Settlement, TokenUsage};

/// What is known about a request before it is routed.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: Arc<str>,
    pub endpoint: &'static str,
    pub started: Instant,
}

/// How a response ended.
#[derive(Debug, Clone, Default)]
pub struct End {
    pub usage: Option<TokenUsage>,
    /// Completion chunks streamed, counted as tokens when usage is unknown.
    pub streamed: u64,
    /// The upstream failed (counts an error and the error penalty).
    pub failed: bool,
    pub outcome: &'static str,
    /// The response's text-bearing parts (stream event data, or the whole
    /// body), kept only so a missing `usage` can be estimated.
    pub captured: Vec<bytes::Bytes>,
}

impl End {
    pub fn ok(usage: Option<TokenUsage>) -> Self {
        Self {
            usage,
            outcome: "ok",
            ..Self::default()
        }
    }
}

pub struct Exchange {
    pub info: RequestInfo,
    pub group: Arc<Group>,
    pub candidate: usize,
    pub status: u16,
    pub attempts: u32,
    reservation: Option<Reservation>,
    penalties: (u64, u64),
    metrics: Arc<Metrics>,
    first_event_seen: bool,
    client: Option<Arc<crate::clients::Client>>,
    /// The request as sent, for estimating usage the upstream did not report.
    request_body: bytes::Bytes,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        info: RequestInfo,
        group: Arc<Group>,
        candidate: usize,
        status: u16,
        attempts: u32,
        reservation: Reservation,
        penalties: (u64, u64),
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            info,
            group,
            candidate,
            status,
            attempts,
            reservation: Some(reservation),
            penalties,
            metrics,
            first_event_seen: false,
            client: None,
            request_body: bytes::Bytes::new(),
        }
    }

    /// Keeps the request body (a cheap reference) for usage estimates.
    pub fn with_request_body(mut self, body: bytes::Bytes) -> Self {
        self.request_body = body;
        self
    }

    /// Counts this request's tokens against a client key too.
    pub fn with_client(mut self, client: Option<Arc<crate::clients::Client>>) -> Self {
        self.client = client;
        self
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
        &self.metrics
    }

    pub fn finish(mut self, end: End) {
        self.settle(end);
    }

    fn settle(&mut self, end: End) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let needs_estimate = end.usage.is_none() && (!end.captured.is_empty() || !end.failed);
        let settle = Settle {
            info: self.info.clone(),
            group: self.group.clone(),
            candidate: self.candidate,
            status: self.status,
            attempts: self.attempts,
            penalties: self.penalties,
            metrics: self.metrics.clone(),
            client: self.client.take(),
            request_body: std::mem::take(&mut self.request_body),
            reservation,
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
    penalties: (u64, u64),
    metrics: Arc<Metrics>,
    client: Option<Arc<crate::clients::Client>>,
    request_body: bytes::Bytes,
    reservation: Reservation,
}

impl Settle {
    /// Estimates usage if need be, settles the reservation, counts, logs.
    fn run(self, mut end: End) {
        let reservation = self.reservation;
        let prompt_estimate = reservation.prompt_estimate();
        let c = &self.group.candidates[self.candidate];
        let mut estimated = false;
        if end.usage.is_none() && (!end.captured.is_empty() || !end.failed) {
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
        if end.outcome == "ok" {
            c.usage.set_reports_no_usage(estimated);
        }
        let settlement = Settlement {
            usage: end.usage,
            estimated,
            streamed_tokens: end.streamed,
            failed: end.failed,
            request_penalty: self.penalties.0,
            error_penalty: self.penalties.1,
        };
        reservation.settle(settlement);
        let tokens = end.usage.unwrap_or(TokenUsage {
            prompt_tokens: prompt_estimate,
            completion_tokens: end.streamed,
            total_tokens: prompt_estimate + end.streamed,
        });
        if let Some(client) = &self.client {
            client.usage.reserve(prompt_estimate).settle(Settlement {
                request_penalty: 0,
                error_penalty: 0,
                ..settlement
            });
            client.record_tokens(tokens.total_tokens);
        }
        let m = &c.metrics;
        m.request(&self.metrics, self.status);
        m.prompt_tokens.inc_by(tokens.prompt_tokens);
        m.completion_tokens.inc_by(tokens.completion_tokens);
        if estimated || end.usage.is_none() {
            m.estimated.inc();
        }
        if end.failed {
            m.upstream_error(&self.metrics, end.outcome);
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
                outcome: end.outcome,
                total_tokens: tokens.total_tokens,
                latency_ms: latency.as_secs_f64() * 1000.0,
            });
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
            outcome = end.outcome,
            attempts = self.attempts,
            prompt_tokens = tokens.prompt_tokens,
            completion_tokens = tokens.completion_tokens,
            total_tokens = tokens.total_tokens,
            usage_estimated = estimated || end.usage.is_none(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request"
        );
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.settle(End {
            outcome: "client_disconnected",
            ..End::default()
        });
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
    tracing::info!(
        target: "llm_router::request",
        request_id = &*info.request_id,
        endpoint = info.endpoint,
        group,
        status,
        outcome = code,
        latency_ms = info.started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
}
