//! The built-in mock provider: an HTTP server that answers every endpoint the
//! router serves, in both wire formats (OpenAI and Anthropic), with
//! deterministic text, streams and usage, so `llm-router demo`,
//! `llm-router mock` and the benchmark run without any API key or network.
//!
//! Every answer is plainly labelled as mock: the text says so, `model` is
//! echoed, and `system_fingerprint` is `llm-router-mock` where the format has
//! one. The demo starts one of these on a loopback port and routes to it
//! through the ordinary upstream path, so the demo exercises exactly the code
//! production traffic does.
//!
//! This file holds the options, the route table and what the endpoints share:
//! the reply text, its words, the rough token count and input parsing. Each
//! endpoint lives in its own file; `sse` sends their streams.

mod anthropic;
mod chat;
mod completions;
mod embeddings;
mod message;
mod messages_stream;
mod models;
mod responses;
mod sse;
#[cfg(test)]
mod testing;
mod tools;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How the mock shapes its answers.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Name shown in answers, e.g. `mock-a`.
    pub name: String,
    /// Delay before the response headers.
    pub first_byte_delay: Duration,
    /// Gap between stream events.
    pub chunk_gap: Duration,
    /// Number of content events per stream; `None` means one per word.
    pub chunks: Option<usize>,
    /// Put each event's send time (`x_sent_us`, Unix microseconds) in it,
    /// so a benchmark can measure the delay a proxy adds per event.
    pub stamp: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            name: "mock".into(),
            first_byte_delay: Duration::ZERO,
            chunk_gap: Duration::from_millis(40),
            chunks: None,
            stamp: false,
        }
    }
}

struct MockState {
    options: MockOptions,
    counter: AtomicU64,
}

type Shared = Arc<MockState>;

/// The mock's HTTP service.
pub fn router(options: MockOptions) -> Router {
    let state = Arc::new(MockState {
        options,
        counter: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/models", get(models::models))
        // An OTLP/HTTP trace sink: a router pointed here exports spans into
        // the void (the benchmark's "tracing on" rows use it).
        .route("/v1/traces", post(traces_sink))
        .with_state(state)
}

/// Accepts an OTLP export: an empty `ExportTraceServiceResponse` is an
/// empty protobuf message.
async fn traces_sink() -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/x-protobuf")], "")
}

impl MockState {
    /// The next number for ids (`chatcmpl-mock-N`, `msg_mock_N`, ...).
    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits `first_byte_delay`, as a slow provider would.
    async fn first_byte(&self) {
        if !self.options.first_byte_delay.is_zero() {
            tokio::time::sleep(self.options.first_byte_delay).await;
        }
    }

    /// The answer's text: says it is a mock and echoes the model and the
    /// start of what the caller said.
    fn reply(&self, model: &str, said: &str) -> String {
        format!(
            "This is a mock response from llm-router's built-in demo provider {} (model {}). You said: {}",
            self.options.name,
            model,
            said.chars().take(200).collect::<String>()
        )
    }

    /// The reply as stream pieces, one token each: its words, or `chunks`
    /// numbered tokens; at most `max` of them. Also says whether `max` cut it.
    fn words(&self, reply: &str, max: Option<usize>) -> (Vec<String>, bool) {
        let mut words: Vec<String> = match self.options.chunks {
            None => reply.split_inclusive(' ').map(str::to_string).collect(),
            Some(n) => (0..n).map(|i| format!("tok{i} ")).collect(),
        };
        let truncated = max.is_some_and(|max| words.len() > max);
        if let Some(max) = max {
            words.truncate(max);
        }
        (words, truncated)
    }
}

/// `stream_options` of OpenAI streaming requests.
#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// A refused OpenAI request, answered in OpenAI's error shape.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": "invalid_request_error", "param": null, "code": null}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// OpenAI paths need an `Authorization` header (any value).
fn require_key(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get(header::AUTHORIZATION) {
        Some(_) => Ok(()),
        None => Err(Refusal::new(StatusCode::UNAUTHORIZED, "missing API key")),
    }
}

/// Parses an OpenAI request body, answering 400 if it does not fit.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::bad_request(format!("invalid body: {e}")))
}

/// A rough token count: about four bytes a token.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The rough count of a JSON value: a string's text, else its JSON.
fn value_tokens(value: &Value) -> u64 {
    match value {
        Value::String(s) => tokens(s),
        Value::Null => 0,
        other => tokens(&other.to_string()),
    }
}

/// The text in a message's content: a string, or the `text` of its parts
/// (and, for parts without text such as `tool_result`, their `content`),
/// joined by spaces.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("text") {
                Some(Value::String(t)) => Some(t.clone()),
                _ => p.get("content").map(content_text),
            })
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// One input of `/v1/embeddings` or prompt of `/v1/completions`.
struct Input {
    /// The text, or a token array's numbers joined by spaces.
    text: String,
    tokens: u64,
}

/// Reads a string, an array of strings, a token array or an array of token
/// arrays; `None` if it is none of these, or empty.
fn inputs(value: &Value) -> Option<Vec<Input>> {
    let items = match value {
        Value::String(_) => return Some(vec![input(value)?]),
        Value::Array(items) if !items.is_empty() => items,
        _ => return None,
    };
    if items.iter().all(Value::is_u64) {
        return Some(vec![input(value)?]);
    }
    items.iter().map(input).collect()
}

fn input(value: &Value) -> Option<Input> {
    match value {
        Value::String(s) => Some(Input {
            text: s.clone(),
            tokens: tokens(s),
        }),
        Value::Array(ids) if ids.iter().all(Value::is_u64) => Some(Input {
            text: ids
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            tokens: ids.len() as u64,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_strings_and_token_arrays() {
        let one = inputs(&json!("abcdefgh")).unwrap();
        assert_eq!((one.len(), one[0].tokens), (1, 2));
        let tokens = inputs(&json!([1, 2, 3])).unwrap();
        assert_eq!((tokens.len(), tokens[0].text.as_str()), (1, "1 2 3"));
        assert_eq!(tokens[0].tokens, 3);
        let many = inputs(&json!(["a", [4, 5]])).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].tokens, 2);
        for bad in [json!([]), json!(null), json!(3), json!([{"x": 1}])] {
            assert!(inputs(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn content_text_reads_strings_parts_and_tool_results() {
        assert_eq!(content_text(&json!("hi")), "hi");
        let parts = json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]);
        assert_eq!(content_text(&parts), "a b");
        let result = json!([{"type": "tool_result", "tool_use_id": "t", "content": "15 degrees"}]);
        assert_eq!(content_text(&result), "15 degrees");
    }

    #[test]
    fn words_follow_chunks_and_max() {
        let state = MockState {
            options: MockOptions {
                chunks: Some(3),
                ..MockOptions::default()
            },
            counter: AtomicU64::new(0),
        };
        assert_eq!(
            state.words("x", None),
            (vec!["tok0 ".into(), "tok1 ".into(), "tok2 ".into()], false)
        );
        assert!(!state.words("x", Some(3)).1);
        assert_eq!(state.words("x", Some(1)), (vec!["tok0 ".into()], true));
    }
}
