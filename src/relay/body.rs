//! Relaying a non-streaming answer: whole when it is small, as it arrives
//! when it is not.
//!
//! [`read_head`] reads up to a window (1 MiB) of the body. Most answers end
//! inside it: they are answered whole, as before, so a body that breaks is
//! still a clean 502 and the usage is known before the response headers.
//! A body that goes on is relayed chunk by chunk instead ([`relay_body`]):
//! its bytes pass through (compressed on the fly if the client asked),
//! [`MemberScanner`] reads the top-level `usage` on the way with bounded
//! state, and the exchange settles when the body ends. Whatever size a
//! provider answers with, a request holds at most the window plus one
//! chunk. Past `limits.max_response_bytes` the answer is refused before
//! its first byte, or cut off after.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::time::Instant;

use super::compress::{Encoding, EventEncoder};
use crate::accounting::{End, Exchange, Outcome};
use crate::metrics::InFlight;
use crate::payload::member::MemberScanner;
use crate::usage::TokenUsage;

/// A body that ends within this many bytes is answered whole.
pub const WHOLE_BODY_WINDOW: usize = 1024 * 1024;

/// Most body text kept for a usage estimate (when a provider reports none).
const MAX_CAPTURE: usize = 256 * 1024;

/// Largest `usage` value read.
const MAX_USAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct BodyOptions {
    /// Longest gap between two chunks.
    pub idle: Duration,
    pub deadline: Instant,
    /// `limits.max_response_bytes`.
    pub max_bytes: Option<u64>,
}

/// The start of a body.
#[derive(Debug, Default)]
pub struct Head {
    pub chunks: Vec<Bytes>,
    pub len: u64,
    /// The body ended within the window: `chunks` is all of it.
    pub ended: bool,
}

impl Head {
    /// The whole body, for one that ended within the window.
    pub fn concat(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => Bytes::from(chunks.concat()),
        }
    }
}

/// The stream's next item if it is there already. Taking it so, rather
/// than under a timeout, saves a clock read and a timer's insertion into the
/// runtime's wheel and removal from it; a chunk that is there cannot time
/// out (tokio's `Timeout` too looks at its future before its timer).
pub(super) fn ready_now<S: Stream + Unpin>(upstream: &mut S) -> Option<Option<S::Item>> {
    upstream.next().now_or_never()
}

/// The next chunk of `upstream`, within the idle timeout and the deadline.
async fn next_chunk<S, E>(upstream: &mut S, opts: &BodyOptions) -> Result<Option<Bytes>, Outcome>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let next = match ready_now(upstream) {
        Some(item) => Ok(item),
        None => {
            let wait = (Instant::now() + opts.idle).min(opts.deadline);
            tokio::time::timeout_at(wait, upstream.next()).await
        }
    };
    match next {
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(None) => Ok(None),
        Ok(Some(Err(_))) => Err(Outcome::UpstreamBodyFailed),
        Err(_) => Err(Outcome::UpstreamTimeout),
    }
}

/// Reads the body until it ends or `window` bytes have come.
pub async fn read_head<S, E>(
    upstream: &mut S,
    window: usize,
    opts: &BodyOptions,
) -> Result<Head, Outcome>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut head = Head::default();
    while head.len < window as u64 {
        let Some(chunk) = next_chunk(upstream, opts).await? else {
            head.ended = true;
            break;
        };
        head.len += chunk.len() as u64;
        if opts.max_bytes.is_some_and(|max| head.len > max) {
            return Err(Outcome::ResponseTooLarge);
        }
        head.chunks.push(chunk);
    }
    Ok(head)
}

struct BodyRelay<S> {
    head: std::vec::IntoIter<Bytes>,
    upstream: S,
    opts: BodyOptions,
    scanner: MemberScanner,
    usage: fn(&[u8]) -> Option<TokenUsage>,
    seen: u64,
    encoder: Option<EventEncoder>,
    /// Body text kept (bounded) for a usage estimate.
    captured: Vec<Bytes>,
    captured_bytes: usize,
    capture: bool,
    exchange: Option<Exchange>,
    finished: bool,
    _in_flight: InFlight,
}

/// How the client's body is written: its encoding, and how the provider's
/// `usage` member reads (OpenAI's and Anthropic's name their counts apart).
pub struct Output {
    pub encoding: Option<Encoding>,
    pub usage: fn(&[u8]) -> Option<TokenUsage>,
}

/// The client's body for an answer that did not end within the window:
/// `head`'s chunks, then the rest of `upstream`, as they arrive. An error
/// item ends the body early (the client sees it cut off); the exchange
/// settles either way.
pub fn relay_body<S, E>(
    head: Head,
    upstream: S,
    exchange: Exchange,
    opts: BodyOptions,
    output: Output,
    in_flight: InFlight,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Send,
{
    let relay = BodyRelay {
        seen: head.len,
        head: head.chunks.into_iter(),
        upstream,
        scanner: MemberScanner::new("usage", MAX_USAGE_BYTES),
        encoder: output.encoding.map(EventEncoder::new),
        usage: output.usage,
        captured: Vec::new(),
        captured_bytes: 0,
        capture: exchange.wants_capture(),
        exchange: Some(exchange),
        finished: false,
        opts,
        _in_flight: in_flight,
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        relay.next_block().await.map(|item| (item, relay))
    })
}

impl<S, E> BodyRelay<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    async fn next_block(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if self.finished {
                return None;
            }
            let chunk = match self.head.next() {
                Some(chunk) => chunk,
                None => match next_chunk(&mut self.upstream, &self.opts).await {
                    Ok(Some(chunk)) => {
                        self.seen += chunk.len() as u64;
                        if self.opts.max_bytes.is_some_and(|max| self.seen > max) {
                            return Some(Err(self.fail(Outcome::ResponseTooLarge)));
                        }
                        chunk
                    }
                    Ok(None) => return self.end().await,
                    Err(outcome) => return Some(Err(self.fail(outcome))),
                },
            };
            self.scanner.feed(&chunk);
            if self.capture && self.captured_bytes + chunk.len() <= MAX_CAPTURE {
                self.captured_bytes += chunk.len();
                self.captured.push(chunk.clone());
            }
            match &mut self.encoder {
                None => return Some(Ok(chunk)),
                Some(enc) => match enc.write_out(&chunk).await {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Some(Ok(out)),
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }

    /// The body ended: settle with the usage read, and send what the
    /// encoder still holds.
    async fn end(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        self.finished = true;
        let usage = self.scanner.value().and_then(self.usage);
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End {
                captured: if usage.is_none() {
                    std::mem::take(&mut self.captured)
                } else {
                    Vec::new()
                },
                ..End::ok(usage)
            });
        }
        match &mut self.encoder {
            Some(enc) => match enc.finish().await {
                Ok(tail) if tail.is_empty() => None,
                Ok(tail) => Some(Ok(tail)),
                Err(e) => Some(Err(e)),
            },
            None => None,
        }
    }

    fn fail(&mut self, outcome: Outcome) -> std::io::Error {
        self.finished = true;
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(End::with(outcome));
        }
        tracing::warn!(
            outcome = outcome.as_str(),
            "upstream answer cut off mid-body"
        );
        std::io::Error::other(outcome.as_str())
    }
}
