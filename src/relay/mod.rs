//! Relaying an upstream SSE stream to the client, event by event.
//!
//! Every event is forwarded as the exact bytes received, the moment it is
//! complete: no buffering beyond one event, one flush per event (compressed
//! or not). Along the way the relay reads the final usage chunk, drops that
//! chunk when the router (not the client) asked for it, enforces the idle
//! timeout and the request deadline, and ends a broken stream with an error
//! event rather than hanging. Its state owns the request's [`Exchange`], so
//! usage settles when the stream ends, however it ends.

pub mod body;
pub mod compress;
pub mod sse;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::{End, Exchange, Outcome};
use crate::metrics::InFlight;
use crate::usage::TokenUsage;
use compress::{Encoding, EventEncoder};
use sse::EventSplitter;

/// Most event data kept per stream for usage estimates.
const MAX_CAPTURE: usize = 256 * 1024;

/// The event that ends a stream the upstream broke or stalled.
pub const INTERRUPTED_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream stream was interrupted before it completed.\",\"type\":\"server_error\",\"param\":null,\"code\":\"stream_interrupted\"}}\n\n";

/// The event that ends a stream still open when the shutdown drain expires.
pub const SHUTDOWN_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The router is shutting down; the stream was ended before it completed.\",\"type\":\"server_error\",\"param\":null,\"code\":\"shutting_down\"}}\n\n";

#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Drop the usage-only chunk: the router asked for it, the client did not.
    pub strip_usage_chunk: bool,
    pub idle: Duration,
    pub deadline: Instant,
    pub encoding: Option<Encoding>,
    /// Cancelled when the shutdown drain runs out.
    pub stop: CancellationToken,
    /// Longest single event (`limits.max_event_bytes`): past it the stream
    /// ends with an error event, so a provider that never ends an event
    /// cannot grow the router's memory.
    pub max_event_bytes: usize,
}

enum Phase {
    Streaming,
    /// The upstream is finished; the encoder's trailer is still to send.
    Ending,
    Done,
}

struct Relay<S> {
    upstream: S,
    splitter: EventSplitter,
    opts: RelayOptions,
    encoder: Option<EventEncoder>,
    usage: Option<TokenUsage>,
    streamed: u64,
    /// Event data kept (bounded) until usage arrives, for estimates.
    captured: Vec<Bytes>,
    captured_bytes: usize,
    capture: bool,
    /// The event that ends the stream (`[DONE]`, ...) has been sent: a
    /// client that closes now has everything.
    completed: bool,
    phase: Phase,
    exchange: Option<Exchange>,
    /// Held for the stream's life: the in-flight and open-stream gauges.
    _gauges: (InFlight, InFlight),
}

/// Wraps an upstream byte stream into the client's event stream.
pub fn relay<S, E>(
    upstream: S,
    exchange: Exchange,
    opts: RelayOptions,
    gauges: (InFlight, InFlight),
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send,
{
    let state = Relay {
        upstream,
        splitter: EventSplitter::default(),
        encoder: opts.encoding.map(EventEncoder::new),
        opts,
        usage: None,
        streamed: 0,
        captured: Vec::new(),
        captured_bytes: 0,
        capture: exchange.wants_capture(),
        completed: false,
        phase: Phase::Streaming,
        exchange: Some(exchange),
        _gauges: gauges,
    };
    futures_util::stream::unfold(state, |mut relay| async move {
        relay.next_block().await.map(|b| (Ok(b), relay))
    })
}

impl<S, E> Relay<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// The next bytes for the client, or `None` at the end.
    async fn next_block(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.splitter.next_event() {
                if let Some(out) = self.keep(event) {
                    if let Some(exchange) = &mut self.exchange {
                        exchange.first_event();
                    }
                    return Some(self.encode(&out).await);
                }
                continue;
            }
            match self.phase {
                Phase::Done => return None,
                Phase::Ending => {
                    self.phase = Phase::Done;
                    let trailer = match &mut self.encoder {
                        Some(enc) => enc.finish().await.unwrap_or_default(),
                        None => Bytes::new(),
                    };
                    return (!trailer.is_empty()).then_some(trailer);
                }
                Phase::Streaming => {}
            }
            if self.splitter.pending() > self.opts.max_event_bytes {
                tracing::warn!(
                    limit = self.opts.max_event_bytes,
                    "upstream event grew past limits.max_event_bytes"
                );
                return Some(self.interrupt(Outcome::EventTooLarge).await);
            }
            let wait_until = (Instant::now() + self.opts.idle).min(self.opts.deadline);
            let next = tokio::select! {
                next = tokio::time::timeout_at(wait_until, self.upstream.next()) => next,
                () = self.opts.stop.cancelled() => {
                    self.phase = Phase::Ending;
                    self.end(Outcome::Shutdown);
                    return Some(self.encode(SHUTDOWN_EVENT).await);
                }
            };
            match next {
                Ok(Some(Ok(bytes))) => self.splitter.push(&bytes),
                Ok(None) => {
                    self.phase = Phase::Ending;
                    self.end(Outcome::Ok);
                    if let Some(rest) = self.splitter.take_rest()
                        && let Some(out) = self.keep(rest)
                    {
                        return Some(self.encode(&out).await);
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream stream broke");
                    return Some(self.interrupt(Outcome::StreamInterrupted).await);
                }
                Err(_elapsed) => {
                    tracing::warn!("upstream stream stalled past the idle timeout or deadline");
                    return Some(self.interrupt(Outcome::StreamInterrupted).await);
                }
            }
        }
    }

    /// Reads what we need from an event; `None` drops it.
    fn keep(&mut self, event: Bytes) -> Option<Bytes> {
        let Some(data) = sse::data(&event) else {
            return Some(event); // comments, retry hints, blank lines
        };
        if sse::ends_stream(&data) {
            self.completed = true;
        }
        if &*data == b"[DONE]" {
            return Some(event);
        }
        let facts = sse::chunk_facts(&data);
        if let Some(usage) = facts.usage {
            self.usage = Some(usage);
            self.captured = Vec::new();
            if self.opts.strip_usage_chunk && facts.empty_choices {
                return None;
            }
        } else {
            self.streamed += 1;
            if self.capture
                && self.usage.is_none()
                && self.captured_bytes + data.len() <= MAX_CAPTURE
            {
                self.captured_bytes += data.len();
                self.captured.push(Bytes::copy_from_slice(&data));
            }
        }
        Some(event)
    }

    async fn encode(&mut self, bytes: &[u8]) -> Bytes {
        match &mut self.encoder {
            None => Bytes::copy_from_slice(bytes),
            Some(enc) => enc.encode(bytes).await.unwrap_or_default(),
        }
    }

    /// Ends the client's stream with the error event, as `outcome`.
    async fn interrupt(&mut self, outcome: Outcome) -> Bytes {
        self.phase = Phase::Ending;
        self.end(outcome);
        self.encode(INTERRUPTED_EVENT).await
    }

    fn end(&mut self, outcome: Outcome) {
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End {
                usage: self.usage,
                streamed: self.streamed,
                outcome,
                captured: std::mem::take(&mut self.captured),
            });
        }
    }
}

impl<S> Drop for Relay<S> {
    fn drop(&mut self) {
        // The client went away: settle what was produced so far. After the
        // stream's last event it has lost nothing.
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End {
                usage: self.usage,
                streamed: self.streamed,
                outcome: if self.completed {
                    Outcome::Ok
                } else {
                    Outcome::ClientDisconnected
                },
                captured: std::mem::take(&mut self.captured),
            });
        }
    }
}

#[cfg(test)]
mod tests;
