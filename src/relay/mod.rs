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
mod events;
pub mod sse;

pub use events::{Formats, INTERRUPTED_EVENT, SHUTDOWN_EVENT};

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accounting::{End, Exchange, Outcome};
use crate::cache::{Fill, Kind};
use crate::metrics::InFlight;
use compress::{Encoding, EventEncoder};
use events::Events;
use sse::EventSplitter;

/// Most event data kept per stream for usage estimates.
const MAX_CAPTURE: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The client's and the provider's wire formats.
    pub formats: Formats,
    /// The provider's model name, for events a translation writes.
    pub model: std::sync::Arc<str>,
    /// An OpenAI client asked for the usage chunk itself.
    pub include_usage: bool,
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
    events: Events,
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
    /// Keeps the events for the cache, when the group caches.
    fill: Option<Fill>,
    /// Held for the stream's life: the in-flight and open-stream gauges.
    _gauges: (InFlight, InFlight),
}

/// Wraps an upstream byte stream into the client's event stream.
pub fn relay<S, E>(
    upstream: S,
    exchange: Exchange,
    opts: RelayOptions,
    gauges: (InFlight, InFlight),
    fill: Option<Fill>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send,
{
    let state = Relay {
        upstream,
        splitter: EventSplitter::default(),
        encoder: opts.encoding.map(EventEncoder::new),
        events: Events::new(
            opts.formats,
            &opts.model,
            opts.include_usage,
            opts.strip_usage_chunk,
        ),
        opts,
        streamed: 0,
        captured: Vec::new(),
        captured_bytes: 0,
        capture: exchange.wants_capture(),
        completed: false,
        phase: Phase::Streaming,
        exchange: Some(exchange),
        fill,
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
            let ready = if self.opts.stop.is_cancelled() {
                None
            } else {
                body::ready_now(&mut self.upstream)
            };
            let next = match ready {
                Some(item) => Ok(item),
                None => {
                    let wait_until = (Instant::now() + self.opts.idle).min(self.opts.deadline);
                    tokio::select! {
                        next = tokio::time::timeout_at(wait_until, self.upstream.next()) => next,
                        () = self.opts.stop.cancelled() => {
                            self.phase = Phase::Ending;
                            self.end(Outcome::Shutdown);
                            return Some(self.encode(events::shutdown(self.opts.formats.client)).await);
                        }
                    }
                }
            };
            match next {
                Ok(Some(Ok(bytes))) => self.splitter.push(&bytes),
                Ok(None) => {
                    self.phase = Phase::Ending;
                    let mut out = BytesMut::new();
                    if let Some(rest) = self.splitter.take_rest()
                        && let Some(kept) = self.keep(rest)
                    {
                        out.extend_from_slice(&kept);
                    }
                    if let Some(owed) = self.events.finish() {
                        self.note_sent(&owed);
                        out.extend_from_slice(&owed);
                    }
                    self.end(Outcome::Ok);
                    if !out.is_empty() {
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

    /// The client's bytes for an upstream event (`None`: nothing to send),
    /// keeping its data (bounded) for an estimate while no usage is known.
    fn keep(&mut self, event: Bytes) -> Option<Bytes> {
        if self.capture
            && self.events.usage().is_none()
            && let Some(data) = sse::data(&event)
            && self.captured_bytes + data.len() <= MAX_CAPTURE
        {
            self.captured_bytes += data.len();
            self.captured.push(Bytes::copy_from_slice(&data));
        }
        if let Some(exchange) = &mut self.exchange
            && exchange.keeps_output()
            && let Some(data) = sse::data(&event)
        {
            exchange.note_output(&data);
        }
        let out = self.events.convert(event, &mut self.streamed)?;
        if self.events.usage().is_some() {
            self.captured = Vec::new();
        }
        self.note_sent(&out);
        Some(out)
    }

    /// Notes whether `out` holds the event that ends the stream, and keeps
    /// it for the cache.
    fn note_sent(&mut self, out: &Bytes) {
        if let Some(fill) = &mut self.fill {
            fill.push(out);
        }
        if !self.completed && out_ends_stream(out) {
            self.completed = true;
        }
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
        self.encode(events::interrupted(self.opts.formats.client))
            .await
    }

    fn end(&mut self, outcome: Outcome) {
        if let Some(fill) = self.fill.take()
            && outcome == Outcome::Ok
        {
            fill.finish(Kind::Stream, "text/event-stream", self.events.usage());
        }
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End {
                usage: self.events.usage(),
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
        // stream's last event it has lost nothing (and the stream is whole).
        if let Some(fill) = self.fill.take()
            && self.completed
        {
            fill.finish(Kind::Stream, "text/event-stream", self.events.usage());
        }
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End {
                usage: self.events.usage(),
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

/// Whether the client's bytes hold the stream's last event (`[DONE]`,
/// `message_stop`, `response.completed`). A translation may send several
/// events at once: each is looked at.
fn out_ends_stream(out: &[u8]) -> bool {
    let might = [&b"[DONE]"[..], b"message_stop", b"response.completed"]
        .iter()
        .any(|needle| memchr::memmem::find(out, needle).is_some());
    if !might {
        return false;
    }
    let mut splitter = EventSplitter::default();
    splitter.push(out);
    let mut events: Vec<Bytes> = std::iter::from_fn(|| splitter.next_event()).collect();
    events.extend(splitter.take_rest());
    events
        .iter()
        .any(|e| sse::data(e).is_some_and(|d| sse::ends_stream(&d)))
}

#[cfg(test)]
mod tests;
