//! `POST /v1/chat/completions`: OpenAI chat completions, as JSON or as a
//! stream of `chat.completion.chunk`s ending in `data: [DONE]`, with the
//! usage chunk when `stream_options.include_usage` asks for it.
//!
//! The benchmark depends on this exact output (`chunks`, `chunk_gap`,
//! `stamp`, `max_tokens` capping), so change it with care.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::{self, Frame};
use super::{Refusal, Shared, StreamOptions, content_text, parse, require_key, tokens};

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
    content: Value,
}

pub(super) async fn chat(
    State(state): State<Shared>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    require_key(&headers)?;
    let request: ChatRequest = parse(&body)?;
    state.first_byte().await;
    let id = format!("chatcmpl-mock-{}", state.next_id());
    let said = request
        .messages
        .last()
        .map(|m| content_text(&m.content))
        .unwrap_or_default();
    let reply = state.reply(&request.model, &said);
    let prompt_tokens = request
        .messages
        .iter()
        .map(|m| tokens(&m.content.to_string()))
        .sum::<u64>()
        + 3;
    let (words, _) = state.words(&reply, request.max_tokens);
    let completion_tokens = words.len() as u64;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    if !request.stream {
        return Ok(axum::Json(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": request.model,
            "system_fingerprint": "llm-router-mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response());
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let usage = include_usage.then_some(usage);
    let frames = stream(&id, &request.model, words, usage);
    Ok(sse::respond(frames, &state.options))
}

/// The stream's chunks: the role, one per word, the finish, the usage
/// chunk if given, then `[DONE]`.
fn stream(id: &str, model: &str, words: Vec<String>, usage: Option<Value>) -> Vec<Frame> {
    let mut bodies = vec![
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    ];
    bodies.extend(words.into_iter().map(
        |w| json!({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]}),
    ));
    bodies.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    if let Some(usage) = usage {
        bodies.push(json!({"choices": [], "usage": usage}));
    }
    let mut frames: Vec<Frame> = bodies
        .into_iter()
        .map(|body| Frame::Data(chunk(body, id, model)))
        .collect();
    frames.push(Frame::Done);
    frames
}

/// Completes a chunk's body with the fields every chunk carries.
fn chunk(mut v: Value, id: &str, model: &str) -> Value {
    v["id"] = json!(id);
    v["object"] = json!("chat.completion.chunk");
    v["created"] = json!(0);
    v["model"] = json!(model);
    v["system_fingerprint"] = json!("llm-router-mock");
    v
}

#[cfg(test)]
mod tests {
    use super::super::MockOptions;
    use super::super::testing::{OPENAI, app_with, events, post, post_json};
    use serde_json::json;

    async fn completion(body: serde_json::Value) -> serde_json::Value {
        let app = app_with(MockOptions {
            chunks: Some(100),
            ..MockOptions::default()
        });
        post_json(app, "/v1/chat/completions", OPENAI, body).await.1
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

    #[tokio::test]
    async fn json_answer_is_labelled_and_counted() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "Hello"}]});
        let (status, v) = post_json(
            super::super::testing::app(),
            "/v1/chat/completions",
            OPENAI,
            body,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["system_fingerprint"], "llm-router-mock");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            text.contains("mock") && text.ends_with("You said: Hello"),
            "{text}"
        );
        // `"Hello"` with its quotes is 7 bytes, 2 tokens, plus 3.
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["total_tokens"], 5 + text.split(' ').count());
    }

    #[tokio::test]
    async fn stream_is_byte_for_byte_as_before() {
        let app = app_with(MockOptions {
            chunks: Some(2),
            chunk_gap: std::time::Duration::ZERO,
            ..MockOptions::default()
        });
        let body = json!({"model": "m", "messages": [], "stream": true, "stream_options": {"include_usage": true}});
        let (status, bytes) = post(app, "/v1/chat/completions", OPENAI, body).await;
        assert_eq!(status, 200);
        let text = std::str::from_utf8(&bytes).unwrap();
        let id = "\"id\":\"chatcmpl-mock-0\"";
        let tail = "\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"llm-router-mock\"";
        let expected = [
            format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"\",\"role\":\"assistant\"}},\"finish_reason\":null,\"index\":0}}],\"created\":0,{id},{tail}}}\n\n"),
            format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"tok0 \"}},\"finish_reason\":null,\"index\":0}}],\"created\":0,{id},{tail}}}\n\n"),
            format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"tok1 \"}},\"finish_reason\":null,\"index\":0}}],\"created\":0,{id},{tail}}}\n\n"),
            format!("data: {{\"choices\":[{{\"delta\":{{}},\"finish_reason\":\"stop\",\"index\":0}}],\"created\":0,{id},{tail}}}\n\n"),
            format!("data: {{\"choices\":[],\"created\":0,{id},{tail},\"usage\":{{\"completion_tokens\":2,\"prompt_tokens\":3,\"total_tokens\":5}}}}\n\n"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn usage_chunk_only_when_asked() {
        let body = json!({"model": "m", "messages": [], "stream": true});
        let (_, bytes) = post(
            super::super::testing::app(),
            "/v1/chat/completions",
            OPENAI,
            body,
        )
        .await;
        let frames = events(&bytes);
        assert_eq!(frames.last().unwrap().1, "[DONE]");
        assert!(frames.iter().all(|(_, data)| !data.contains("usage")));
    }

    #[tokio::test]
    async fn stamp_puts_the_send_time_in_each_chunk() {
        let app = app_with(MockOptions {
            stamp: true,
            chunks: Some(1),
            chunk_gap: std::time::Duration::ZERO,
            ..MockOptions::default()
        });
        let body = json!({"model": "m", "messages": [], "stream": true});
        let (_, bytes) = post(app, "/v1/chat/completions", OPENAI, body).await;
        let frames = events(&bytes);
        assert_eq!(frames.len(), 4);
        for (_, data) in &frames[..3] {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            assert!(v["x_sent_us"].as_u64().unwrap() > 0);
        }
    }

    #[tokio::test]
    async fn a_key_is_required() {
        let (status, v) = post_json(
            super::super::testing::app(),
            "/v1/chat/completions",
            &[],
            json!({}),
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(v["error"]["message"], "missing API key");
    }
}
