//! Wire formats: how each API a provider or a client speaks shapes its
//! requests, answers, streams and errors, and how one translates to
//! another. Pure functions over bytes; no I/O.

pub mod anthropic;
pub mod openai;

use crate::payload::Endpoint;

pub use anthropic::TranslateError;

/// Who a request is translated for: the provider's name (for errors that
/// name it) and its defaults.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub provider: &'a str,
    /// Anthropic requires `max_tokens`; this fills it when the client set none.
    pub default_max_tokens: u64,
}

/// A request to `endpoint` as its counterpart `to` (chat completions ↔
/// messages) expects it. `model` is copied as it is: the router splices each
/// candidate's own into the result, as it does into a client's body.
pub fn translate_request(
    endpoint: Endpoint,
    to: Endpoint,
    body: &[u8],
    target: Target<'_>,
) -> Result<Vec<u8>, TranslateError> {
    match (endpoint, to) {
        (Endpoint::ChatCompletions, Endpoint::Messages) => {
            anthropic::request::chat_to_messages(body, target.default_max_tokens, target.provider)
        }
        (Endpoint::Messages, Endpoint::ChatCompletions) => {
            anthropic::request::messages_to_chat(body)
        }
        _ => Err(TranslateError {
            param: "model".into(),
            message: format!(
                "/v1{} cannot be served by provider {}, which speaks another API",
                endpoint.path(),
                target.provider
            ),
        }),
    }
}
