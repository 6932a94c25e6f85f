//! `POST /v1/responses`: OpenAI's Responses API. The answer is one assistant
//! message with one `output_text` part, as a Response object or as its
//! named event stream: `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, one
//! `response.output_text.delta` per word, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, and
//! `response.completed` carrying the usage, each with a `sequence_number`.
//!
//! When `max_output_tokens` cuts the text, the Response is `incomplete` with
//! `incomplete_details.reason: "max_output_tokens"` and the stream ends with
//! `response.incomplete` instead, as OpenAI does. `output_text` is left out:
//! the SDKs compute it, it is not on the wire.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::{self, Frame};
use super::{Refusal, Shared, content_text, parse, require_key, tokens, value_tokens};

#[derive(Deserialize)]
struct ResponsesRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    max_output_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
}

/// Everything one answer needs, for its JSON and its events.
struct Answer {
    id: String,
    item_id: String,
    request: ResponsesRequest,
    words: Vec<String>,
    cut: bool,
    usage: Value,
}

pub(super) async fn responses(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    require_key(&headers)?;
    let request: ResponsesRequest = parse(&body)?;
    state.first_byte().await;
    let n = state.next_id();
    let reply = state.reply(&request.model, &said(&request.input));
    let (words, cut) = state.words(&reply, request.max_output_tokens);
    let input_tokens =
        value_tokens(&request.input) + request.instructions.as_deref().map_or(0, tokens);
    let output_tokens = words.len() as u64;
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let stream = request.stream;
    let answer = Answer {
        id: format!("resp_mock_{n}"),
        item_id: format!("msg_mock_{n}"),
        request,
        words,
        cut,
        usage,
    };
    if stream {
        return Ok(sse::respond(answer.events(), &state.options));
    }
    Ok(axum::Json(answer.response(true)).into_response())
}

/// What the caller said last: the input string, or the text of the last
/// input item.
fn said(input: &Value) -> String {
    match input {
        Value::Array(items) => items
            .last()
            .map_or_else(String::new, |item| content_text(&json!([item]))),
        other => content_text(other),
    }
}

impl Answer {
    /// `completed`, or `incomplete` when `max_output_tokens` cut the text.
    fn status(&self) -> &'static str {
        if self.cut { "incomplete" } else { "completed" }
    }

    fn text(&self) -> String {
        self.words.concat()
    }

    fn part(&self, text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": []})
    }

    /// The message item; empty and in progress until `done`.
    fn item(&self, done: bool) -> Value {
        let (status, content) = match done {
            true => (self.status(), json!([self.part(&self.text())])),
            false => ("in_progress", json!([])),
        };
        json!({
            "type": "message", "id": self.item_id, "status": status,
            "role": "assistant", "content": content,
        })
    }

    /// The Response object; in progress, without output or usage, until
    /// `done`.
    fn response(&self, done: bool) -> Value {
        let (status, output, usage) = match done {
            true => (self.status(), json!([self.item(true)]), self.usage.clone()),
            false => ("in_progress", json!([]), Value::Null),
        };
        let incomplete = match done && self.cut {
            true => json!({"reason": "max_output_tokens"}),
            false => Value::Null,
        };
        json!({
            "id": self.id, "object": "response", "created_at": 0, "status": status,
            "error": null, "incomplete_details": incomplete,
            "instructions": self.request.instructions, "max_output_tokens": self.request.max_output_tokens,
            "model": self.request.model, "output": output, "parallel_tool_calls": true,
            "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "store": false, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "metadata": {},
        })
    }

    /// The stream's events, numbered in order.
    fn events(&self) -> Vec<Frame> {
        let at = json!({"item_id": self.item_id, "output_index": 0, "content_index": 0});
        let with = |kind: &str, mut fields: Value| {
            fields["type"] = json!(kind);
            fields
        };
        let located = |kind: &str, extra: Value| {
            let mut v = with(kind, at.clone());
            for (key, value) in extra.as_object().into_iter().flatten() {
                v[key] = value.clone();
            }
            v
        };
        let text = self.text();
        let mut events = vec![
            with(
                "response.created",
                json!({"response": self.response(false)}),
            ),
            with(
                "response.in_progress",
                json!({"response": self.response(false)}),
            ),
            with(
                "response.output_item.added",
                json!({"output_index": 0, "item": self.item(false)}),
            ),
            located(
                "response.content_part.added",
                json!({"part": self.part("")}),
            ),
        ];
        events.extend(self.words.iter().map(|word| {
            located(
                "response.output_text.delta",
                json!({"delta": word, "logprobs": []}),
            )
        }));
        events.push(located(
            "response.output_text.done",
            json!({"text": text, "logprobs": []}),
        ));
        events.push(located(
            "response.content_part.done",
            json!({"part": self.part(&text)}),
        ));
        events.push(with(
            "response.output_item.done",
            json!({"output_index": 0, "item": self.item(true)}),
        ));
        let last = if self.cut {
            "response.incomplete"
        } else {
            "response.completed"
        };
        events.push(with(last, json!({"response": self.response(true)})));
        events
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                v["sequence_number"] = json!(i);
                Frame::Typed(v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{OPENAI, app, post, post_json, typed_events};
    use serde_json::{Value, json};

    #[tokio::test]
    async fn json_shape_and_usage() {
        let body = json!({"model": "r", "input": "Hello there", "instructions": "Be nice"});
        let (status, v) = post_json(app(), "/v1/responses", OPENAI, body).await;
        assert_eq!(status, 200);
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(
            (v["object"].clone(), v["status"].clone()),
            (json!("response"), json!("completed"))
        );
        assert_eq!(v["model"], "r");
        assert!(v.get("output_text").is_none());
        let item = &v["output"][0];
        assert_eq!(
            (item["type"].clone(), item["role"].clone()),
            (json!("message"), json!("assistant"))
        );
        assert_eq!(item["status"], "completed");
        assert!(item["id"].is_string());
        let part = &item["content"][0];
        assert_eq!(
            (part["type"].clone(), part["annotations"].clone()),
            (json!("output_text"), json!([]))
        );
        let text = part["text"].as_str().unwrap();
        assert!(
            text.contains("mock") && text.ends_with("You said: Hello there"),
            "{text}"
        );
        let words = text.split_inclusive(' ').count() as u64;
        let usage = &v["usage"];
        assert_eq!(usage["input_tokens"], 3 + 2);
        assert_eq!(usage["output_tokens"], words);
        assert_eq!(usage["total_tokens"], 5 + words);
    }

    #[tokio::test]
    async fn input_items_are_read() {
        let input = json!([
            {"role": "user", "content": "first"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ]);
        let (_, v) = post_json(
            app(),
            "/v1/responses",
            OPENAI,
            json!({"model": "r", "input": input}),
        )
        .await;
        let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.ends_with("You said: second"), "{text}");
    }

    #[tokio::test]
    async fn max_output_tokens_makes_it_incomplete() {
        let body = json!({"model": "r", "input": "x", "max_output_tokens": 2});
        let (_, v) = post_json(app(), "/v1/responses", OPENAI, body).await;
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["output"][0]["content"][0]["text"], "This is ");
        assert_eq!(v["usage"]["output_tokens"], 2);
    }

    async fn stream(body: Value) -> Vec<Value> {
        let (status, bytes) = post(app(), "/v1/responses", OPENAI, body).await;
        assert_eq!(status, 200);
        assert!(!std::str::from_utf8(&bytes).unwrap().contains("[DONE]"));
        let events = typed_events(&bytes);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], i);
        }
        events
    }

    #[tokio::test]
    async fn stream_events_in_order() {
        let events = stream(json!({"model": "r", "input": "hi", "stream": true})).await;
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let deltas = kinds
            .iter()
            .filter(|k| **k == "response.output_text.delta")
            .count();
        assert!(deltas > 3);
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.output_text.delta", deltas));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, expected);
        let text: String = events[4..4 + deltas]
            .iter()
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(events[4 + deltas]["text"], text);
        assert_eq!(events[0]["response"]["status"], "in_progress");
        assert_eq!(events[0]["response"]["usage"], Value::Null);
        let last = &events[kinds.len() - 1]["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["output"][0]["content"][0]["text"], text);
        assert_eq!(last["usage"]["output_tokens"], deltas);
        assert_eq!(last["usage"]["input_tokens"], 1);
        let item_id = &events[2]["item"]["id"];
        assert_eq!(&events[4]["item_id"], item_id);
        assert_eq!(&last["output"][0]["id"], item_id);
    }

    #[tokio::test]
    async fn stream_cut_short_ends_incomplete() {
        let body = json!({"model": "r", "input": "hi", "stream": true, "max_output_tokens": 1});
        let events = stream(body).await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["usage"]["output_tokens"], 1);
        assert_eq!(events.len(), 9);
    }
}
