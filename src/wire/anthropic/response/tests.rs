//! Whole answers, both directions, and their usage.

use serde_json::{Value, json};

use super::*;

fn to_message(completion: Value) -> Value {
    serde_json::from_slice(
        &chat_to_message(&serde_json::to_vec(&completion).unwrap()).expect("a completion"),
    )
    .unwrap()
}

fn to_chat(message: Value) -> Value {
    serde_json::from_slice(
        &message_to_chat(&serde_json::to_vec(&message).unwrap()).expect("a message"),
    )
    .unwrap()
}

fn completion(message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish, "logprobs": null }],
        "usage": { "prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
                   "prompt_tokens_details": { "cached_tokens": 1024 } },
    })
}

#[test]
fn a_completion_becomes_a_message() {
    let out = to_message(completion(
        json!({ "role": "assistant", "content": "I'll check.", "reasoning_content": "Let me think.", "tool_calls": [
            { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
            { "id": "functions.get_time:1", "type": "function", "function": { "name": "get_time", "arguments": "not json" } },
        ]}),
        "tool_calls",
    ));
    assert_eq!(
        out,
        json!({
            "id": "msg_chatcmpl-abc123",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4o-2024-08-06",
            "content": [
                { "type": "thinking", "thinking": "Let me think.", "signature": "" },
                { "type": "text", "text": "I'll check." },
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "functions_get_time_1", "name": "get_time", "input": { "_raw_arguments": "not json" } },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": { "input_tokens": 176, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024 },
        })
    );
}

#[test]
fn finish_reasons_become_stop_reasons() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let out = to_message(completion(
            json!({ "role": "assistant", "content": "x" }),
            finish,
        ));
        assert_eq!(out["stop_reason"], stop, "{finish}");
    }
    // Tool calls with `stop` (some providers): still tool_use.
    let calls = json!({ "role": "assistant", "content": null, "tool_calls": [
        { "id": "c", "type": "function", "function": { "name": "f", "arguments": "{}" } }] });
    let out = to_message(completion(calls, "stop"));
    assert_eq!(out["stop_reason"], "tool_use");
    assert_eq!(
        out["content"],
        json!([{ "type": "tool_use", "id": "c", "name": "f", "input": {} }])
    );
}

#[test]
fn empty_and_odd_completions_still_make_valid_messages() {
    // Empty text makes no block; `reasoning` (OpenRouter) is thinking; a refusal is text.
    let out = to_message(completion(
        json!({ "role": "assistant", "content": "", "reasoning": "hmm" }),
        "stop",
    ));
    assert_eq!(
        out["content"],
        json!([{ "type": "thinking", "thinking": "hmm", "signature": "" }])
    );
    let out = to_message(completion(
        json!({ "role": "assistant", "content": null, "refusal": "I can't." }),
        "stop",
    ));
    assert_eq!(
        out["content"],
        json!([{ "type": "text", "text": "I can't." }])
    );
    let out = to_message(json!({ "id": "", "choices": [] }));
    assert!(out["id"].as_str().unwrap().starts_with("msg_router"));
    assert_eq!(
        (out["content"].clone(), out["model"].clone()),
        (json!([]), json!(""))
    );
    assert_eq!(
        out["usage"],
        json!({ "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 })
    );
    let out = to_message(
        json!({ "id": "a b/c", "model": "m", "choices": [{ "message": { "content": [{ "type": "text", "text": "x" }, { "type": "text", "text": "y" }] } }] }),
    );
    assert_eq!(
        (out["id"].clone(), out["content"][0]["text"].clone()),
        (json!("msg_a_b_c"), json!("xy"))
    );
    assert_eq!(chat_to_message(b"{\"error\":{\"message\":\"x\"}}"), None);
    assert_eq!(chat_to_message(b"not json"), None);
}

#[test]
fn a_message_becomes_a_completion() {
    let out = to_chat(json!({
        "id": "msg_01XF", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            { "type": "thinking", "thinking": "Let me", "signature": "EqQB" },
            { "type": "redacted_thinking", "data": "Emw" },
            { "type": "thinking", "thinking": " think.", "signature": "EqQB" },
            { "type": "text", "text": "I'll check ", "citations": null },
            { "type": "text", "text": "both." },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" }, "caller": { "type": "direct" } },
            { "type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {} },
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": { "input_tokens": 377, "output_tokens": 65, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 1000 },
    }));
    let created = out["created"].as_u64().unwrap();
    assert!(created > 1_700_000_000);
    assert_eq!(
        out,
        json!({
            "id": "chatcmpl-msg_01XF",
            "object": "chat.completion",
            "created": created,
            "model": "claude-sonnet-4-5",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check both.",
                    "reasoning_content": "Let me think.",
                    "tool_calls": [
                        { "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                        { "id": "toolu_2", "type": "function", "function": { "name": "get_time", "arguments": "{}" } },
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": null,
            }],
            "usage": { "prompt_tokens": 1387, "completion_tokens": 65, "total_tokens": 1452,
                       "prompt_tokens_details": { "cached_tokens": 1000 } },
        })
    );
}

#[test]
fn stop_reasons_become_finish_reasons_and_empty_text_is_null() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let out =
            to_chat(json!({ "id": "m", "type": "message", "content": [], "stop_reason": stop }));
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert!(message.get("tool_calls").is_none() && message.get("reasoning_content").is_none());
    }
    assert_eq!(
        message_to_chat(br#"{"type":"error","error":{"type":"x"}}"#),
        None
    );
    assert_eq!(
        message_to_chat(br#"{"type":"message_start","content":[]}"#),
        None
    );
    assert_eq!(message_to_chat(b"[]"), None);
}

#[test]
fn message_usage_counts_every_prompt_token() {
    let body = br#"{"id":"m","type":"message","content":[],"usage":{"input_tokens":377,"output_tokens":65,"cache_creation_input_tokens":10,"cache_read_input_tokens":1000,"service_tier":"standard"}}"#;
    let u = message_usage(body).unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_prompt_tokens
        ),
        (1387, 65, 1452, 1000)
    );
    let u = message_usage(
        br#"{"usage":{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":null}}"#,
    )
    .unwrap();
    assert_eq!((u.prompt_tokens, u.cached_prompt_tokens), (5, 0));
    assert_eq!(message_usage(br#"{"usage":null}"#), None);
    assert_eq!(message_usage(br#"{"usage":{"prompt_tokens":5}}"#), None);
    assert_eq!(message_usage(b"{}"), None);
    assert_eq!(
        usage_value(br#"{"input_tokens":1,"output_tokens":2}"#).map(|u| u.total_tokens),
        Some(3)
    );
}
