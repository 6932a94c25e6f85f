//! Streams (SSE): OpenAI chunks as Anthropic events and the reverse, and
//! the usage of an Anthropic stream relayed unchanged.
//!
//! Each direction is a state machine fed one upstream event at a time
//! (`push`), told when the upstream ends (`finish`), and answering whole
//! client events as [`Bytes`]. They are strict about order because the
//! SDKs are: Anthropic's `MessageStream` throws unless `message_start`
//! comes first, every delta follows its block's `content_block_start`, and
//! `message_stop` ends the message; openai-node's `finalChatCompletion()`
//! throws without a `role`, a `finish_reason`, or a tool call's `type` and
//! `arguments`. Terminal events are owed exactly once, whether the upstream
//! ends properly, early, or with an error.
//!
//! Framing: Anthropic events are `event: <name>\ndata: <json>\n\n` (the
//! TypeScript SDK ignores events without the `event:` line); OpenAI chunks
//! are `data: <json>\n\n`, ending with `data: [DONE]\n\n`.

mod to_chat;
mod to_messages;
mod usage;

#[cfg(test)]
mod to_chat_tests;
#[cfg(test)]
mod to_messages_edge_tests;
#[cfg(test)]
mod to_messages_tests;

use bytes::Bytes;
use serde::Serialize;

pub use to_chat::MessagesToChat;
pub use to_messages::ChatToMessages;
pub use usage::MessageUsage;

/// `event: <name>\ndata: <json>\n\n` (serde's compact JSON never holds a
/// newline, so one `data:` line carries it).
fn event(name: &str, json: &impl Serialize) -> Bytes {
    let json = serde_json::to_vec(json).unwrap_or_default();
    event_raw(name, &json)
}

fn event_raw(name: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(name.len() + json.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `data: <json>\n\n`.
fn data_raw(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An Anthropic event's name: the `event:` line's, else the data's `type`
/// (some relays drop the `event:` line).
fn event_name<'a>(event: &'a str, data: &'a [u8]) -> &'a str {
    if !event.is_empty() {
        return event;
    }
    crate::payload::scan::top_level_value(data, "type")
        .and_then(|raw| raw.strip_prefix(b"\"")?.strip_suffix(b"\""))
        .and_then(|name| std::str::from_utf8(name).ok())
        .unwrap_or_default()
}
