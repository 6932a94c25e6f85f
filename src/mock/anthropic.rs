//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's
//! Messages API, so the router's Anthropic surface can be exercised without
//! Anthropic. Requests need a key (`x-api-key`, or `Authorization: Bearer`)
//! and `anthropic-version`; messages need `max_tokens`. Errors are in
//! Anthropic's shape, `{"type":"error","error":{"type","message"}}`.
//!
//! The answer is a text block saying it is a mock, then a `tool_use` block
//! when the request asks for a tool (see `tools`), with `stop_reason`
//! `end_turn`, `tool_use`, or `max_tokens` when `max_tokens` cuts it (the
//! tool call is dropped then). `messages_stream` sends the same answer as
//! Anthropic's event stream.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::message::{Answer, ToolCall};
use super::{MockState, Shared, content_text, messages_stream, sse, tokens, tools, value_tokens};

#[derive(Deserialize)]
struct MessagesRequest {
    #[serde(default)]
    model: String,
    #[serde(flatten)]
    prompt: Prompt,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
}

/// What the input tokens are counted from; all of `count_tokens`' body.
#[derive(Deserialize)]
struct Prompt {
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    system: Value,
    #[serde(default)]
    tools: Vec<Value>,
}

impl Prompt {
    fn input_tokens(&self) -> u64 {
        let messages: u64 = self
            .messages
            .iter()
            .map(|m| value_tokens(&m["content"]))
            .sum();
        let tools = match self.tools.is_empty() {
            true => 0,
            false => tokens(&serde_json::to_string(&self.tools).unwrap_or_default()),
        };
        messages + value_tokens(&self.system) + tools
    }
}

pub(super) async fn messages(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let request: MessagesRequest = admit(&headers, &body)?;
    let max_tokens = request
        .max_tokens
        .ok_or_else(|| Refusal::bad_request("max_tokens: Field required"))?;
    state.first_byte().await;
    let stream = request.stream;
    let answer = answer(&state, request, max_tokens);
    if stream {
        return Ok(sse::respond(
            messages_stream::frames(&answer),
            &state.options,
        ));
    }
    Ok(axum::Json(answer.message()).into_response())
}

/// The reply, the tool call if one is asked for and fits in `max_tokens`,
/// and why it stopped.
fn answer(state: &MockState, request: MessagesRequest, max_tokens: usize) -> Answer {
    let n = state.next_id();
    let prompt = &request.prompt;
    let said = prompt
        .messages
        .last()
        .map_or_else(String::new, |m| content_text(&m["content"]));
    let reply = state.reply(&request.model, &said);
    let (words, cut) = state.words(&reply, Some(max_tokens));
    let chosen = tools::chosen(
        &prompt.tools,
        request.tool_choice.as_ref(),
        &prompt.messages,
    );
    let tool = chosen.map(|t| ToolCall {
        id: format!("toolu_mock_{n}"),
        name: t["name"].as_str().unwrap_or_default().to_string(),
        input: tools::input(t),
    });
    let tool_tokens = tool.as_ref().map_or(0, |t| tokens(&t.input.to_string()));
    let fits = !cut && words.len() as u64 + tool_tokens <= max_tokens as u64;
    let (tool, stop_reason) = match (tool, fits) {
        (_, false) => (None, "max_tokens"),
        (Some(tool), true) => (Some(tool), "tool_use"),
        (None, true) => (None, "end_turn"),
    };
    Answer {
        id: format!("msg_mock_{n}"),
        input_tokens: prompt.input_tokens(),
        output_tokens: words.len() as u64 + tool.as_ref().map_or(0, |_| tool_tokens),
        model: request.model,
        words,
        tool,
        stop_reason,
    }
}

pub(super) async fn count_tokens(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let prompt: Prompt = admit(&headers, &body)?;
    state.first_byte().await;
    Ok(axum::Json(json!({"input_tokens": prompt.input_tokens()})).into_response())
}

/// Checks the key and `anthropic-version`, then parses the body.
fn admit<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if !bearer && !headers.contains_key("x-api-key") {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: "x-api-key header is required".into(),
        });
    }
    if !headers.contains_key("anthropic-version") {
        return Err(Refusal::bad_request(
            "anthropic-version: header is required",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("invalid request body: {e}")))
}

/// A refused request, answered in Anthropic's error shape.
pub(super) struct Refusal {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"type": "error", "error": {"type": self.kind, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ANTHROPIC, app, post_json};
    use serde_json::{Value, json};

    async fn ask(headers: &[(&str, &str)], body: Value) -> (u16, Value) {
        let (status, v) = post_json(app(), "/v1/messages", headers, body).await;
        (status.as_u16(), v)
    }

    fn hello() -> Value {
        json!({"model": "claude-x", "max_tokens": 100, "system": "Be brief",
            "messages": [{"role": "user", "content": "Hello"}]})
    }

    #[tokio::test]
    async fn json_shape_and_usage() {
        let (status, v) = ask(ANTHROPIC, hello()).await;
        assert_eq!(status, 200);
        assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
        assert_eq!(
            (v["type"].clone(), v["role"].clone()),
            (json!("message"), json!("assistant"))
        );
        assert_eq!(v["model"], "claude-x");
        assert_eq!(
            (v["stop_reason"].clone(), v["stop_sequence"].clone()),
            (json!("end_turn"), Value::Null)
        );
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 1);
        assert_eq!(content[0]["type"], "text");
        let text = content[0]["text"].as_str().unwrap();
        assert!(
            text.contains("mock") && text.ends_with("You said: Hello"),
            "{text}"
        );
        let words = text.split_inclusive(' ').count();
        let usage = json!({"input_tokens": 2 + 2, "output_tokens": words,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
        assert_eq!(v["usage"], usage);
    }

    #[tokio::test]
    async fn max_tokens_cuts_the_text() {
        let mut body = hello();
        body["max_tokens"] = json!(3);
        let (_, v) = ask(ANTHROPIC, body).await;
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["content"][0]["text"], "This is a ");
        assert_eq!(v["usage"]["output_tokens"], 3);
    }

    #[tokio::test]
    async fn bearer_auth_is_accepted_and_no_key_is_refused() {
        let bearer = [
            ("authorization", "Bearer k"),
            ("anthropic-version", "2023-06-01"),
        ];
        assert_eq!(ask(&bearer, hello()).await.0, 200);
        let (status, v) = ask(&[("anthropic-version", "2023-06-01")], hello()).await;
        assert_eq!(status, 401);
        assert_eq!(v["error"]["type"], "authentication_error");
    }

    #[tokio::test]
    async fn missing_version_or_max_tokens_is_a_400() {
        let (status, v) = ask(&[("x-api-key", "k")], hello()).await;
        assert_eq!(status, 400);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("anthropic-version")
        );
        let mut body = hello();
        body.as_object_mut().unwrap().remove("max_tokens");
        let (status, v) = ask(ANTHROPIC, body).await;
        assert_eq!(status, 400);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_tokens")
        );
    }

    fn weather(question: &str) -> Value {
        json!({"model": "claude-x", "max_tokens": 200,
            "tools": [{"name": "get_weather", "description": "Weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
            "messages": [{"role": "user", "content": question}]})
    }

    #[tokio::test]
    async fn tool_use_when_asked() {
        let (_, v) = ask(ANTHROPIC, weather("What is the weather in Paris?")).await;
        assert_eq!(v["stop_reason"], "tool_use");
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert!(content[0]["text"].as_str().unwrap().contains("mock"));
        let tool = &content[1];
        assert_eq!(tool["type"], "tool_use");
        assert!(tool["id"].as_str().unwrap().starts_with("toolu_mock_"));
        assert_eq!(tool["name"], "get_weather");
        assert_eq!(tool["input"], json!({"city": "mock"}));
        let text_tokens = content[0]["text"]
            .as_str()
            .unwrap()
            .split_inclusive(' ')
            .count();
        // `{"city":"mock"}` is 15 bytes, 4 tokens.
        assert_eq!(v["usage"]["output_tokens"], text_tokens + 4);

        let (_, v) = ask(ANTHROPIC, weather("Hello")).await;
        assert_eq!(v["stop_reason"], "end_turn");
        let mut forced = weather("Hello");
        forced["tool_choice"] = json!({"type": "any"});
        assert_eq!(ask(ANTHROPIC, forced).await.1["stop_reason"], "tool_use");
    }

    #[tokio::test]
    async fn count_tokens_matches_the_message_usage() {
        let (status, v) =
            post_json(app(), "/v1/messages/count_tokens", ANTHROPIC, weather("Hi")).await;
        assert_eq!(status, 200);
        let (_, answer) = ask(ANTHROPIC, weather("Hi")).await;
        assert_eq!(v, json!({"input_tokens": answer["usage"]["input_tokens"]}));
        assert!(v["input_tokens"].as_u64().unwrap() > 1);
        let (status, _) = post_json(
            app(),
            "/v1/messages/count_tokens",
            &[("x-api-key", "k")],
            weather("Hi"),
        )
        .await;
        assert_eq!(status, 400);
    }
}
