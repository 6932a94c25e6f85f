//! What each upstream event becomes on its way to the client.
//!
//! When the client and the provider speak the same API, an event passes as
//! the exact bytes received (OpenAI's usage-only chunk is dropped when the
//! router, not the client, asked for it), and usage is read on the way.
//! When they differ, a state machine from `wire::anthropic::stream` turns
//! the provider's events into the client's: OpenAI chunks into Anthropic's
//! `message_start` … `message_stop`, or the reverse.

use bytes::{Bytes, BytesMut};

use super::sse;
use crate::payload::Api;
use crate::usage::TokenUsage;
use crate::wire::anthropic::stream::{ChatToMessages, MessageUsage, MessagesToChat};

/// The wire formats on either side of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub client: Api,
    pub provider: Api,
}

impl Formats {
    /// Whether the answer is translated (else it passes through).
    pub fn translated(self) -> bool {
        self.client != self.provider
    }
}

/// The event that ends a stream the upstream broke or stalled, for OpenAI
/// clients.
pub const INTERRUPTED_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The upstream stream was interrupted before it completed.\",\"type\":\"server_error\",\"param\":null,\"code\":\"stream_interrupted\"}}\n\n";

/// The event that ends a stream still open when the shutdown drain
/// expires, for OpenAI clients.
pub const SHUTDOWN_EVENT: &[u8] = b"data: {\"error\":{\"message\":\"The router is shutting down; the stream was ended before it completed.\",\"type\":\"server_error\",\"param\":null,\"code\":\"shutting_down\"}}\n\n";

/// The same two, as Anthropic's clients expect an error mid-stream.
const ANTHROPIC_INTERRUPTED_EVENT: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"The upstream stream was interrupted before it completed.\"}}\n\n";
const ANTHROPIC_SHUTDOWN_EVENT: &[u8] = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"The router is shutting down; the stream was ended before it completed.\"}}\n\n";

/// The error event that ends a broken stream, in the client's format.
pub fn interrupted(client: Api) -> &'static [u8] {
    match client {
        Api::OpenAi => INTERRUPTED_EVENT,
        Api::Anthropic => ANTHROPIC_INTERRUPTED_EVENT,
    }
}

/// The error event that ends a stream at shutdown, in the client's format.
pub fn shutdown(client: Api) -> &'static [u8] {
    match client {
        Api::OpenAi => SHUTDOWN_EVENT,
        Api::Anthropic => ANTHROPIC_SHUTDOWN_EVENT,
    }
}

/// One stream's event conversion, and what it has learnt of usage.
pub(super) enum Events {
    /// OpenAI both sides: events pass as received.
    OpenAi {
        strip_usage_chunk: bool,
        usage: Option<TokenUsage>,
    },
    /// Anthropic both sides: events pass as received.
    Anthropic(MessageUsage),
    /// OpenAI's chunks in, Anthropic's events out.
    ToAnthropic(Box<ChatToMessages>),
    /// Anthropic's events in, OpenAI's chunks out.
    ToOpenAi(Box<MessagesToChat>),
}

impl Events {
    /// `model`: the provider's, for the events a translation writes;
    /// `include_usage`: whether an OpenAI client asked for the usage chunk.
    pub fn new(
        formats: Formats,
        model: &str,
        include_usage: bool,
        strip_usage_chunk: bool,
    ) -> Self {
        match (formats.provider, formats.client) {
            (Api::OpenAi, Api::OpenAi) => Self::OpenAi {
                strip_usage_chunk,
                usage: None,
            },
            (Api::Anthropic, Api::Anthropic) => Self::Anthropic(MessageUsage::default()),
            (Api::OpenAi, Api::Anthropic) => {
                Self::ToAnthropic(Box::new(ChatToMessages::new(model)))
            }
            (Api::Anthropic, Api::OpenAi) => {
                Self::ToOpenAi(Box::new(MessagesToChat::new(include_usage)))
            }
        }
    }

    /// The client's bytes for one whole upstream event, or `None` when it
    /// sends nothing. `content` counts events that carried content (for an
    /// estimate if no usage is reported).
    pub fn convert(&mut self, event: Bytes, content: &mut u64) -> Option<Bytes> {
        let data = sse::data(&event);
        match self {
            Self::OpenAi {
                strip_usage_chunk,
                usage,
            } => {
                let Some(data) = data else {
                    return Some(event); // comments, retry hints, blank lines
                };
                if &*data == b"[DONE]" {
                    return Some(event);
                }
                let facts = sse::chunk_facts(&data);
                if let Some(u) = facts.usage {
                    *usage = Some(u);
                    if *strip_usage_chunk && facts.empty_choices {
                        return None;
                    }
                } else {
                    *content += 1;
                }
                Some(event)
            }
            Self::Anthropic(usage) => {
                if let Some(data) = &data {
                    let name = sse::event_name(&event);
                    if usage.push(name.unwrap_or_default(), data) {
                        *content += 1;
                    }
                }
                Some(event)
            }
            Self::ToAnthropic(t) => {
                let out = t.push(&data?);
                *content = t.content_events();
                join(out)
            }
            Self::ToOpenAi(t) => {
                let data = data?;
                let name = sse::event_name(&event).unwrap_or_default();
                let out = t.push(name, &data);
                *content = t.content_events();
                join(out)
            }
        }
    }

    /// What a translation still owes the client when the upstream ends
    /// (its closing events); nothing for a stream passed through.
    pub fn finish(&mut self) -> Option<Bytes> {
        match self {
            Self::ToAnthropic(t) => join(t.finish()),
            Self::ToOpenAi(t) => join(t.finish()),
            _ => None,
        }
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Option<TokenUsage> {
        match self {
            Self::OpenAi { usage, .. } => *usage,
            Self::Anthropic(u) => u.usage(),
            Self::ToAnthropic(t) => t.usage(),
            Self::ToOpenAi(t) => t.usage(),
        }
    }
}

/// Several events as one block for the client (they answer one upstream
/// event, so they leave together).
fn join(events: Vec<Bytes>) -> Option<Bytes> {
    match events.len() {
        0 => None,
        1 => events.into_iter().next(),
        _ => {
            let mut out = BytesMut::with_capacity(events.iter().map(Bytes::len).sum());
            for e in &events {
                out.extend_from_slice(e);
            }
            Some(out.freeze())
        }
    }
}
