//! Anthropic's Messages API (`POST /v1/messages`) and its translation to and
//! from OpenAI's chat completions.
//!
//! Why: the router's providers speak one of two dialects, and so do its
//! clients. An Anthropic SDK client (Claude Code, say) routed to an
//! OpenAI-style provider needs its request rewritten and the answer and
//! stream rewritten back, and an OpenAI client routed to Anthropic needs the
//! reverse. Each direction is a pure function over bytes (or, for streams,
//! a state machine fed one event at a time), so they can be tested without
//! a network and kept out of the request path's I/O code.
//!
//! - [`request`]: request bodies, both directions. What has no counterpart is
//!   dropped when it changes nothing essential, and refused with a
//!   [`TranslateError`] (a 400 for the client) when dropping it would
//!   change the answer's meaning.
//! - [`response`]: whole (non-streaming) answers, both directions, and the
//!   usage of an Anthropic answer.
//! - [`stream`]: SSE streams, both directions, and the usage of an Anthropic
//!   stream relayed unchanged.
//! - [`error`]: error bodies, both directions.
//!
//! Facts about the official SDKs the code relies on (their strict event
//! order, cumulative stream usage, the id alphabet) are stated where used.

mod common;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;

#[cfg(test)]
mod fuzz;

pub use request::{chat_to_messages, messages_to_chat};
pub use response::{chat_to_message, message_to_chat, message_usage};
pub use stream::{ChatToMessages, MessageUsage, MessagesToChat};

/// Why a request cannot be translated for a provider: a 400 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The request member at fault, in the client's dialect
    /// (`messages.2.content.0`, `tools[3]`).
    pub param: String,
    pub message: String,
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}
