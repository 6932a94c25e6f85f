//! Request bodies: Anthropic Messages ⇄ OpenAI chat completions.
//!
//! Both directions keep the conversation's order and its tool calls, and
//! copy what only passes through (the model name, tool schemas, tool
//! inputs) byte for byte. A member with no counterpart is dropped when it
//! only tunes the answer (caching hints, `thinking`, `seed`, penalties) and
//! refused when dropping it would change what the answer means (`n > 1`, a
//! JSON response format, server tools).

mod to_chat;
mod to_messages;

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod to_chat_tests;
#[cfg(test)]
mod to_messages_tests;

pub use to_chat::messages_to_chat;
pub use to_messages::chat_to_messages;
