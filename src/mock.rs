//! The built-in mock provider: an OpenAI-compatible HTTP server with
//! deterministic completions, streams and usage, so `llm-router demo` (and
//! the benchmark) run without any API key or network.
//!
//! Every answer is plainly labelled as mock: the text says so, `model` is
//! echoed, and `system_fingerprint` is `llm-router-mock`. The demo starts one
//! of these on a loopback port and routes to it through the ordinary upstream
//! path, so the demo exercises exactly the code production traffic does.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

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

/// The mock's HTTP service.
pub fn router(options: MockOptions) -> Router {
    let state = Arc::new(MockState {
        options,
        counter: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .with_state(state)
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Caps the reply's tokens, as a real provider would.
    #[serde(default, alias = "max_completion_tokens")]
    max_tokens: Option<usize>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

async fn models(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": format!("{}-model", state.options.name), "object": "model", "created": 0, "owned_by": "llm-router-mock"}
    ]}))
    .into_response()
}

async fn chat(
    State(state): State<Arc<MockState>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get(header::AUTHORIZATION).is_none() {
        return error(StatusCode::UNAUTHORIZED, "missing API key");
    }
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    if !state.options.first_byte_delay.is_zero() {
        tokio::time::sleep(state.options.first_byte_delay).await;
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-mock-{n}");
    let said = last_text(&request.messages);
    let reply = format!(
        "This is a mock response from llm-router's built-in demo provider {} (model {}). You said: {}",
        state.options.name,
        request.model,
        said.chars().take(200).collect::<String>()
    );
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| tokens(&m.content.to_string()))
        .sum::<u64>()
        + 3;
    let mut words: Vec<String> = match state.options.chunks {
        None => reply.split_inclusive(' ').map(str::to_string).collect(),
        Some(n) => (0..n).map(|i| format!("tok{i} ")).collect(),
    };
    if let Some(max) = request.max_tokens {
        words.truncate(max);
    }
    let completion_tokens = words.len() as u64;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });

    if !request.stream {
        let text: String = words.concat();
        return axum::Json(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": request.model,
            "system_fingerprint": "llm-router-mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }

    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let mut events: Vec<Event> = vec![Event::Delta(json!({"role": "assistant", "content": ""}))];
    events.extend(
        words
            .into_iter()
            .map(|w| Event::Delta(json!({"content": w}))),
    );
    events.push(Event::Finish);
    if include_usage {
        events.push(Event::Usage(usage));
    }
    events.push(Event::Done);
    let shape = Arc::new(StreamShape {
        id,
        model: request.model,
        stamp: state.options.stamp,
    });
    let gap = state.options.chunk_gap;
    let stream =
        futures_util::stream::unfold((events.into_iter(), true), move |(mut it, first)| {
            let shape = shape.clone();
            async move {
                let event = it.next()?;
                if !first && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok::<_, Infallible>(shape.render(event)), (it, false)))
            }
        });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

enum Event {
    Delta(serde_json::Value),
    Finish,
    Usage(serde_json::Value),
    Done,
}

struct StreamShape {
    id: String,
    model: String,
    stamp: bool,
}

impl StreamShape {
    /// Renders an event at the moment it is sent.
    fn render(&self, event: Event) -> Bytes {
        let mut v = match event {
            Event::Done => return Bytes::from_static(b"data: [DONE]\n\n"),
            Event::Delta(delta) => {
                json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
            }
            Event::Finish => {
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            }
            Event::Usage(usage) => json!({"choices": [], "usage": usage}),
        };
        v["id"] = json!(self.id);
        v["object"] = json!("chat.completion.chunk");
        v["created"] = json!(0);
        v["model"] = json!(self.model);
        v["system_fingerprint"] = json!("llm-router-mock");
        if self.stamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            v["x_sent_us"] = json!(now);
        }
        Bytes::from(format!("data: {v}\n\n"))
    }
}

fn last_text(messages: &[Message]) -> String {
    match messages.last().map(|m| &m.content) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A rough token count: about four bytes a token.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn completion(body: serde_json::Value) -> serde_json::Value {
        let app = router(MockOptions {
            chunks: Some(100),
            ..MockOptions::default()
        });
        let request = http::Request::post("/v1/chat/completions")
            .header(header::AUTHORIZATION, "Bearer k")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn max_tokens_caps_the_reply() {
        let full = completion(json!({"model": "m", "messages": []})).await;
        assert_eq!(full["usage"]["completion_tokens"], 100);
        for key in ["max_tokens", "max_completion_tokens"] {
            let capped = completion(json!({"model": "m", "messages": [], key: 2})).await;
            assert_eq!(capped["usage"]["completion_tokens"], 2);
            assert_eq!(capped["choices"][0]["message"]["content"], "tok0 tok1 ");
        }
    }
}
