//! `MessagesToChat`: Anthropic event sequences (from real recordings) and
//! the exact OpenAI chunks they become.

use bytes::Bytes;
use serde_json::{Value, json};

use super::MessagesToChat;

/// Each output event's data (`[DONE]` as a string), checking the framing.
fn chunks(out: &[Bytes]) -> Vec<Value> {
    out.iter()
        .map(|e| {
            let text = std::str::from_utf8(e).unwrap();
            let data = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .expect("data framing");
            assert!(!data.contains('\n'));
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

const TOOL_USE_RECORDING: &[(&str, &str)] = &[
    (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_019Q","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":377,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ),
    ("ping", r#"{"type": "ping"}"#),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I'll check the weather."}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01NR","name":"get_weather","caller":{"type":"direct"},"input":{}}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"locati"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\": \"Paris\"}"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    ),
    (
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":65}}"#,
    ),
    ("message_stop", r#"{"type":"message_stop"}"#),
];

fn run(events: &[(&str, &str)], include_usage: bool) -> (MessagesToChat, Vec<Value>) {
    let mut t = MessagesToChat::new(include_usage);
    let mut out = Vec::new();
    for (name, data) in events {
        out.extend(t.push(name, data.as_bytes()));
    }
    out.extend(t.finish());
    (t, chunks(&out))
}

fn delta_chunk(c: &Value) -> (&Value, &Value) {
    (&c["choices"][0]["delta"], &c["choices"][0]["finish_reason"])
}

#[test]
fn a_tool_use_recording_becomes_the_exact_chunk_sequence() {
    let (t, out) = run(TOOL_USE_RECORDING, true);
    let created = out[0]["created"].clone();
    for c in &out[..out.len() - 1] {
        assert_eq!(c["id"], "chatcmpl-msg_019Q");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "claude-sonnet-4-20250514");
        assert_eq!(c["created"], created);
    }
    let deltas: Vec<(Value, Value)> = out[..out.len() - 2]
        .iter()
        .map(|c| {
            (
                c["choices"][0]["delta"].clone(),
                c["choices"][0]["finish_reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        deltas,
        [
            (json!({ "role": "assistant", "content": "" }), Value::Null),
            (json!({ "content": "I'll check the weather." }), Value::Null),
            (
                json!({ "tool_calls": [{ "index": 0, "id": "toolu_01NR", "type": "function", "function": { "name": "get_weather", "arguments": "" } }] }),
                Value::Null
            ),
            (
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"locati" } }] }),
                Value::Null
            ),
            (
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "on\": \"Paris\"}" } }] }),
                Value::Null
            ),
            (json!({}), json!("tool_calls")),
        ]
    );
    assert_eq!(out[out.len() - 2]["choices"], json!([]));
    assert_eq!(
        out[out.len() - 2]["usage"],
        json!({ "prompt_tokens": 377, "completion_tokens": 65, "total_tokens": 442, "prompt_tokens_details": { "cached_tokens": 0 } })
    );
    assert_eq!(out[out.len() - 1], "[DONE]");
    assert_eq!(t.usage().unwrap().total_tokens, 442);
    assert_eq!(t.content_events(), 3);
}

#[test]
fn without_include_usage_there_is_no_usage_chunk() {
    let (t, out) = run(TOOL_USE_RECORDING, false);
    assert_eq!(out.len(), 7);
    assert_eq!(delta_chunk(&out[5]).1, "tool_calls");
    assert_eq!(out[6], "[DONE]");
    assert!(out.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(t.usage().unwrap().prompt_tokens, 377);
}

#[test]
fn tool_calls_are_numbered_among_tool_calls_and_thinking_is_reasoning() {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":10,"cache_read_input_tokens":1000,"cache_creation_input_tokens":50,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Two lookups."}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c3ln"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"a","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"b","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"x\":1}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"input_tokens":10,"cache_read_input_tokens":1000,"cache_creation_input_tokens":50,"output_tokens":30}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let (t, out) = run(&events, true);
    assert_eq!(
        delta_chunk(&out[1]).0,
        &json!({ "reasoning_content": "Two lookups." })
    );
    assert_eq!(out[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    assert_eq!(
        out[3]["choices"][0]["delta"]["tool_calls"][0],
        json!({ "index": 0, "function": { "arguments": "{}" } })
    );
    assert_eq!(out[4]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
    assert_eq!(
        out[4]["choices"][0]["delta"]["tool_calls"][0]["id"],
        "toolu_b"
    );
    assert_eq!(
        out[5]["choices"][0]["delta"]["tool_calls"][0],
        json!({ "index": 1, "function": { "arguments": "{\"x\":1}" } })
    );
    // Cumulative: the repeated input and cache counts are not added.
    assert_eq!(
        out[7]["usage"],
        json!({ "prompt_tokens": 1060, "completion_tokens": 30, "total_tokens": 1090, "prompt_tokens_details": { "cached_tokens": 1000 } })
    );
    assert_eq!(t.usage().unwrap().cached_prompt_tokens, 1000);
}

#[test]
fn stop_reasons_become_finish_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let delta = format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop}"}},"usage":{{"output_tokens":1}}}}"#
        );
        let (_, out) = run(
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"m"}}"#,
                ),
                ("message_delta", &delta),
            ],
            false,
        );
        assert_eq!(delta_chunk(&out[1]).1, finish, "{stop}");
        assert_eq!(out.len(), 3, "finish sends [DONE] only");
    }
}

#[test]
fn events_without_names_are_read_from_their_type() {
    let without_created = |out: Vec<Value>| -> Vec<Value> {
        out.into_iter()
            .map(|mut c| {
                if let Some(o) = c.as_object_mut() {
                    o.remove("created");
                }
                c
            })
            .collect()
    };
    let unnamed: Vec<(&str, &str)> = TOOL_USE_RECORDING.iter().map(|(_, d)| ("", *d)).collect();
    assert_eq!(
        without_created(run(&unnamed, true).1),
        without_created(run(TOOL_USE_RECORDING, true).1)
    );
}

#[test]
fn a_cut_stream_still_ends_with_a_finish_reason_and_done() {
    let (_, out) = run(&TOOL_USE_RECORDING[..4], true);
    let last = &out[out.len() - 3..];
    assert_eq!(delta_chunk(&last[0]), (&json!({}), &json!("stop")));
    assert_eq!(last[1]["usage"]["prompt_tokens"], 377);
    assert_eq!(last[2], "[DONE]");
    // Nothing at all: role, finish, [DONE].
    let (_, out) = run(&[], false);
    assert_eq!(out.len(), 3);
    assert_eq!(
        delta_chunk(&out[0]).0,
        &json!({ "role": "assistant", "content": "" })
    );
}

#[test]
fn done_comes_exactly_once() {
    let mut t = MessagesToChat::new(false);
    for (name, data) in TOOL_USE_RECORDING {
        t.push(name, data.as_bytes());
    }
    assert!(t.finish().is_empty());
    assert!(
        t.push("message_stop", br#"{"type":"message_stop"}"#)
            .is_empty()
    );
}

#[test]
fn an_error_event_is_the_last_chunk() {
    let mut t = MessagesToChat::new(true);
    let mut out = t.push("message_start", TOOL_USE_RECORDING[0].1.as_bytes());
    out.extend(t.push(
        "error",
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ));
    let out = chunks(&out);
    assert_eq!(
        out[1],
        json!({ "error": { "message": "Overloaded", "type": "overloaded_error", "param": null, "code": "overloaded_error" } })
    );
    assert!(t.push("message_stop", b"{}").is_empty() && t.finish().is_empty());
}
