//! The `/v1/messages` answer as Anthropic's event stream, each event named
//! by an `event:` line: `message_start` (empty content, the input tokens,
//! `output_tokens: 1`), a `ping`, then per content block
//! `content_block_start`, its `content_block_delta`s (`text_delta` per word,
//! or `input_json_delta` fragments of the tool input) and
//! `content_block_stop`, then `message_delta` (stop reason and the final,
//! cumulative usage) and `message_stop`.

use serde_json::{Value, json};

use super::message::{Answer, ToolCall};
use super::sse::Frame;

/// Characters per `partial_json` fragment of a tool input.
const FRAGMENT: usize = 10;

pub(super) fn frames(answer: &Answer) -> Vec<Frame> {
    let start = json!({
        "id": answer.id, "type": "message", "role": "assistant", "model": answer.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    });
    let mut events = vec![
        json!({"type": "message_start", "message": start}),
        json!({"type": "ping"}),
    ];
    let mut index = 0;
    if !answer.words.is_empty() {
        let deltas = answer
            .words
            .iter()
            .map(|w| json!({"type": "text_delta", "text": w}));
        events.extend(block(index, json!({"type": "text", "text": ""}), deltas));
        index += 1;
    }
    if let Some(tool) = &answer.tool {
        let start = json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}});
        let deltas =
            fragments(tool).map(|f| json!({"type": "input_json_delta", "partial_json": f}));
        events.extend(block(index, start, deltas));
    }
    events.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": answer.stop_reason, "stop_sequence": null},
        "usage": answer.usage(),
    }));
    events.push(json!({"type": "message_stop"}));
    events.into_iter().map(Frame::Typed).collect()
}

/// One content block's events: start, deltas, stop.
fn block(index: usize, start: Value, deltas: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut events =
        vec![json!({"type": "content_block_start", "index": index, "content_block": start})];
    events
        .extend(deltas.map(|d| json!({"type": "content_block_delta", "index": index, "delta": d})));
    events.push(json!({"type": "content_block_stop", "index": index}));
    events
}

/// The tool input's JSON in pieces, after an empty first one as Anthropic
/// sends.
fn fragments(tool: &ToolCall) -> impl Iterator<Item = String> {
    let chars: Vec<char> = tool.input.to_string().chars().collect();
    let pieces: Vec<String> = chars.chunks(FRAGMENT).map(String::from_iter).collect();
    std::iter::once(String::new()).chain(pieces)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ANTHROPIC, app, post, typed_events};
    use serde_json::{Value, json};

    async fn stream(body: Value) -> Vec<Value> {
        let (status, bytes) = post(app(), "/v1/messages", ANTHROPIC, body).await;
        assert_eq!(status, 200);
        typed_events(&bytes)
    }

    fn kinds(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[tokio::test]
    async fn text_stream_in_order() {
        let body = json!({"model": "claude-x", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": "Hello"}]});
        let events = stream(body).await;
        let kinds = kinds(&events);
        let deltas = kinds.len() - 6;
        let mut expected = vec!["message_start", "ping", "content_block_start"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(kinds, expected);
        let message = &events[0]["message"];
        assert_eq!(message["content"], json!([]));
        assert_eq!(message["model"], "claude-x");
        assert_eq!(message["usage"]["input_tokens"], 2);
        assert_eq!(message["usage"]["output_tokens"], 1);
        assert_eq!(
            events[2]["content_block"],
            json!({"type": "text", "text": ""})
        );
        let text: String = events[3..3 + deltas]
            .iter()
            .map(|e| {
                assert_eq!(
                    (e["index"].clone(), e["delta"]["type"].clone()),
                    (json!(0), json!("text_delta"))
                );
                e["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(
            text.contains("mock") && text.ends_with("You said: Hello"),
            "{text}"
        );
        let end = &events[kinds.len() - 2];
        assert_eq!(
            end["delta"],
            json!({"stop_reason": "end_turn", "stop_sequence": null})
        );
        assert_eq!(end["usage"]["output_tokens"], deltas);
    }

    #[tokio::test]
    async fn max_tokens_cuts_the_stream() {
        let body = json!({"model": "m", "max_tokens": 2, "stream": true,
            "messages": [{"role": "user", "content": "Hello"}]});
        let events = stream(body).await;
        assert_eq!(events.len(), 8);
        let end = &events[6];
        assert_eq!(end["delta"]["stop_reason"], "max_tokens");
        assert_eq!(end["usage"]["output_tokens"], 2);
    }

    #[tokio::test]
    async fn tool_use_streams_its_input_as_partial_json() {
        let body = json!({"model": "m", "max_tokens": 500, "stream": true,
            "tool_choice": {"type": "tool", "name": "lookup"},
            "tools": [{"name": "get_weather", "input_schema": {}},
                {"name": "lookup", "input_schema": {"type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}, "exact": {"type": "boolean"}},
                "required": ["query", "limit", "exact"]}}],
            "messages": [{"role": "user", "content": "Find it"}]});
        let events = stream(body).await;
        let start = events
            .iter()
            .position(|e| e["content_block"]["type"] == "tool_use")
            .unwrap();
        let block = &events[start]["content_block"];
        assert_eq!(events[start]["index"], 1);
        assert_eq!(block["name"], "lookup");
        assert!(block["id"].as_str().unwrap().starts_with("toolu_mock_"));
        assert_eq!(block["input"], json!({}));
        let deltas: Vec<&Value> = events[start + 1..]
            .iter()
            .take_while(|e| e["type"] == "content_block_delta")
            .collect();
        assert!(deltas.len() > 2);
        let json: String = deltas
            .iter()
            .map(|e| {
                assert_eq!(e["index"], 1);
                assert_eq!(e["delta"]["type"], "input_json_delta");
                e["delta"]["partial_json"].as_str().unwrap()
            })
            .collect();
        let input: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(input, json!({"query": "mock", "limit": 1, "exact": true}));
        let rest = kinds(&events[start + 1 + deltas.len()..]);
        assert_eq!(
            rest,
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let end = &events[events.len() - 2];
        assert_eq!(end["delta"]["stop_reason"], "tool_use");
        let text_words = events
            .iter()
            .filter(|e| e["delta"]["type"] == "text_delta")
            .count();
        let tool_tokens = json.len().div_ceil(4);
        assert_eq!(end["usage"]["output_tokens"], text_words + tool_tokens);
    }
}
