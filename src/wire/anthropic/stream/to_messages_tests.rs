//! `ChatToMessages`: chunk sequences as providers split them, and the
//! exact Anthropic events they become.

use bytes::Bytes;

use serde_json::{Value, json};

use super::ChatToMessages;

/// Each output event as (name, data), checking the framing on the way.
pub(super) fn events(out: &[Bytes]) -> Vec<(String, Value)> {
    out.iter()
        .map(|e| {
            let text = std::str::from_utf8(e).unwrap();
            let body = text.strip_suffix("\n\n").expect("ends with a blank line");
            let (name, data) = body.split_once('\n').expect("two lines");
            let name = name.strip_prefix("event: ").expect("event line");
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").expect("data line")).unwrap();
            assert_eq!(data["type"], name, "type matches event name");
            (name.to_owned(), data)
        })
        .collect()
}

pub(super) fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

pub(super) fn run(chunks: &[Value], done: bool) -> (ChatToMessages, Vec<(String, Value)>) {
    let mut t = ChatToMessages::new("gpt-4o");
    let mut out = Vec::new();
    for c in chunks {
        out.extend(t.push(&serde_json::to_vec(c).unwrap()));
    }
    if done {
        out.extend(t.push(b"[DONE]"));
    }
    out.extend(t.finish());
    (t, events(&out))
}

pub(super) fn chunk(delta: Value, finish: Value) -> Value {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }], "usage": null })
}

pub(super) fn usage_chunk() -> Value {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
            "usage": { "prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
                       "prompt_tokens_details": { "cached_tokens": 1024 } } })
}

pub(super) fn tool(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = json!({ "index": index, "function": { "arguments": arguments } });
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    chunk(json!({ "tool_calls": [call] }), Value::Null)
}

/// The concatenated `partial_json` of block `index`.
pub(super) fn arguments(events: &[(String, Value)], index: u64) -> String {
    events
        .iter()
        .filter(|(n, e)| n == "content_block_delta" && e["index"] == index)
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_text_stream_becomes_the_exact_event_sequence() {
    let (t, ev) = run(
        &[
            chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
            chunk(json!({ "content": "Hel" }), Value::Null),
            chunk(json!({ "content": "lo" }), Value::Null),
            chunk(json!({}), json!("stop")),
            usage_chunk(),
        ],
        true,
    );
    let expected = [
        (
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o", "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 } } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Hel" } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "lo" } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "input_tokens": 176, "output_tokens": 80, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ];
    let expected: Vec<(String, Value)> = expected
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
    assert_eq!(ev, expected);
    let u = t.usage().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens),
        (1200, 80, 1024)
    );
    assert_eq!(t.content_events(), 2);
}

#[test]
fn text_then_two_parallel_tool_calls_in_fragments() {
    let (_, ev) = run(
        &[
            chunk(json!({ "role": "assistant", "content": null }), Value::Null),
            chunk(json!({ "content": "I'll check both." }), Value::Null),
            tool(0, Some("call_abc"), Some("get_weather"), ""),
            tool(0, None, None, "{\"city\":"),
            tool(0, None, None, "\"Paris\"}"),
            tool(1, Some("call_def"), Some("get_time"), ""),
            tool(1, None, None, "{\"tz\":\"Europe/"),
            tool(1, None, None, "Rome\"}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(),
        ],
        true,
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        ev[4].1["content_block"],
        json!({ "type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {} })
    );
    assert_eq!(ev[4].1["index"], 1);
    assert_eq!(
        ev[8].1["content_block"],
        json!({ "type": "tool_use", "id": "call_def", "name": "get_time", "input": {} })
    );
    assert_eq!(ev[8].1["index"], 2);
    assert_eq!(arguments(&ev, 1), r#"{"city":"Paris"}"#);
    assert_eq!(arguments(&ev, 2), r#"{"tz":"Europe/Rome"}"#);
    assert_eq!(ev[12].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn a_combined_chunk_is_split_and_first_arguments_are_kept() {
    // Fake streaming (xAI, Gemini): text, a whole tool call and the finish
    // reason in one chunk; no usage chunk.
    let mut both = chunk(
        json!({ "role": "assistant", "content": "Sure.", "tool_calls": [
            { "index": 0, "id": "functions.Bash:0", "type": "function", "function": { "name": "Bash", "arguments": "{\"command\":\"ls\"}" } },
        ]}),
        json!("tool_calls"),
    );
    both["usage"] = json!({ "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 });
    let (t, ev) = run(&[both], true);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        ev[2].1["delta"],
        json!({ "type": "text_delta", "text": "Sure." })
    );
    assert_eq!(ev[4].1["content_block"]["id"], "functions_Bash_0");
    assert_eq!(ev[4].1["content_block"]["input"], json!({}));
    assert_eq!(arguments(&ev, 1), r#"{"command":"ls"}"#);
    assert_eq!(
        ev[7].1["usage"],
        json!({ "input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0 })
    );
    assert_eq!(t.usage().unwrap().total_tokens, 15);
}

#[test]
fn content_and_finish_reason_in_one_chunk_then_done_without_usage() {
    let (t, ev) = run(
        &[chunk(
            json!({ "role": "assistant", "content": "All of it." }),
            json!("length"),
        )],
        true,
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[4].1["delta"]["stop_reason"], "max_tokens");
    assert_eq!(ev[4].1["usage"]["output_tokens"], 0);
    assert_eq!(t.usage(), None);
}

#[test]
fn reasoning_opens_a_thinking_block_before_the_text() {
    let (_, ev) = run(
        &[
            chunk(
                json!({ "role": "assistant", "reasoning_content": "Simple " }),
                Value::Null,
            ),
            chunk(json!({ "reasoning": "math." }), Value::Null),
            chunk(json!({ "content": "4" }), Value::Null),
            chunk(json!({}), json!("stop")),
        ],
        true,
    );
    assert_eq!(
        ev[1].1["content_block"],
        json!({ "type": "thinking", "thinking": "", "signature": "" })
    );
    assert_eq!(
        ev[2].1["delta"],
        json!({ "type": "thinking_delta", "thinking": "Simple " })
    );
    assert_eq!(
        ev[3].1["delta"],
        json!({ "type": "thinking_delta", "thinking": "math." })
    );
    assert_eq!(ev[4].1, json!({ "type": "content_block_stop", "index": 0 }));
    assert_eq!(
        ev[5].1["content_block"],
        json!({ "type": "text", "text": "" })
    );
    assert_eq!(ev[6].1["index"], 1);
}

#[test]
fn an_empty_completion_still_has_a_text_block() {
    let (_, ev) = run(
        &[
            chunk(json!({ "role": "assistant", "content": "" }), Value::Null),
            chunk(json!({}), json!("stop")),
        ],
        true,
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        ev[1].1["content_block"],
        json!({ "type": "text", "text": "" })
    );
    // Nothing at all from upstream: still a whole, valid message.
    let (_, ev) = run(&[], false);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}
