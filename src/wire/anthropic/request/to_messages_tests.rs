//! `chat_to_messages`: every mapping, drop and refusal, pinned.

use serde_json::{Value, json};

use super::chat_to_messages;
use crate::wire::anthropic::TranslateError;

fn messages(request: Value) -> Value {
    let out = chat_to_messages(&serde_json::to_vec(&request).unwrap(), 4096, "claude")
        .expect("translates");
    serde_json::from_slice(&out).unwrap()
}

fn refused(request: Value) -> TranslateError {
    chat_to_messages(&serde_json::to_vec(&request).unwrap(), 4096, "claude").expect_err("refused")
}

fn hello() -> Value {
    json!([{ "role": "user", "content": "hello" }])
}

fn text(t: &str) -> Value {
    json!({ "type": "text", "text": t })
}

#[test]
fn parameters_map_to_their_anthropic_names() {
    let out = messages(json!({
        "model": "gpt-4o",
        "messages": hello(),
        "max_completion_tokens": 100,
        "max_tokens": 50,
        "stop": ["END", "  ", "", "\n\nQ:"],
        "temperature": 1.5,
        "top_p": 0.5,
        "user": "user-42",
        "stream": true,
        "stream_options": { "include_usage": true },
    }));
    assert_eq!(
        out,
        json!({
            "model": "gpt-4o",
            "max_tokens": 100,
            "messages": [{ "role": "user", "content": [text("hello")] }],
            "stop_sequences": ["END", "\n\nQ:"],
            "temperature": 1.0,
            "top_p": 0.5,
            "metadata": { "user_id": "user-42" },
            "stream": true,
        })
    );
}

#[test]
fn max_tokens_falls_back_and_stop_may_be_a_string() {
    let out = messages(
        json!({ "messages": hello(), "max_tokens": 50, "stop": "END", "temperature": -0.5 }),
    );
    assert_eq!(
        (out["max_tokens"].clone(), out["stop_sequences"].clone()),
        (json!(50), json!(["END"]))
    );
    assert_eq!(out["temperature"], 0.0);
    let out = messages(json!({ "messages": hello(), "stop": " ", "stream": false }));
    assert_eq!(out["max_tokens"], 4096);
    assert!(out.get("stop_sequences").is_none());
    assert_eq!(out["stream"], false);
}

#[test]
fn members_that_change_nothing_essential_are_dropped() {
    let out = messages(json!({
        "messages": hello(),
        "logprobs": true, "top_logprobs": 3, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "logit_bias": { "50256": -100 }, "service_tier": "flex", "store": true, "metadata": { "k": "v" },
        "stream_options": { "include_usage": true }, "reasoning_effort": "high",
        "prediction": { "type": "content", "content": "x" }, "prompt_cache_key": "k", "safety_identifier": "s",
        "parallel_tool_calls": true, "n": 1, "response_format": { "type": "text" }, "audio": null,
        "modalities": ["text"], "web_search_options": null,
    }));
    assert_eq!(
        out,
        json!({ "max_tokens": 4096, "messages": [{ "role": "user", "content": [text("hello")] }] })
    );
}

#[test]
fn leading_system_messages_become_system_and_later_ones_reminders() {
    let out = messages(json!({ "messages": [
        { "role": "system", "content": "You are terse." },
        { "role": "developer", "content": [{ "type": "text", "text": "Use tools." }] },
        { "role": "user", "content": "a" },
        { "role": "assistant", "content": "b" },
        { "role": "system", "content": "Now be formal." },
        { "role": "user", "content": "c" },
        { "role": "developer", "content": "Last rule." },
    ]}));
    assert_eq!(
        out["system"],
        json!([text("You are terse."), text("Use tools.")])
    );
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [text("a")] },
            { "role": "assistant", "content": [text("b")] },
            { "role": "user", "content": [
                text("<system-reminder>\nNow be formal.\n</system-reminder>"),
                text("c"),
                text("<system-reminder>\nLast rule.\n</system-reminder>"),
            ]},
        ])
    );
    let one = messages(
        json!({ "messages": [{ "role": "system", "content": "Only." }, { "role": "user", "content": "x" }] }),
    );
    assert_eq!(one["system"], "Only.");
}

#[test]
fn tool_messages_become_one_user_message_of_results_first() {
    let out = messages(json!({ "messages": [
        { "role": "user", "content": "Weather in Paris and Rome?" },
        { "role": "assistant", "content": null, "reasoning_content": "two calls", "tool_calls": [
            { "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
            { "id": "functions.get_weather:1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":" } },
        ]},
        { "role": "tool", "tool_call_id": "call_1", "content": "15 degrees" },
        { "role": "tool", "tool_call_id": "functions.get_weather:1", "content": [{ "type": "text", "text": "20 degrees" }] },
        { "role": "user", "content": "Thanks. Which is warmer?" },
        { "role": "user", "content": "Answer briefly." },
    ]}));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [text("Weather in Paris and Rome?")] },
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "functions_get_weather_1", "name": "get_weather", "input": { "_raw_arguments": "{\"city\":" } },
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "call_1", "content": "15 degrees" },
                { "type": "tool_result", "tool_use_id": "functions_get_weather_1", "content": [text("20 degrees")] },
                text("Thanks. Which is warmer?"),
                text("Answer briefly."),
            ]},
        ])
    );
}

#[test]
fn assistant_text_and_arguments_are_kept_exactly() {
    let body = br#"{"messages":[{"role":"user","content":"go"},{"role":"assistant","content":"Running.","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"z\": 1, \"a\": 2}"}},{"id":"d","type":"function","function":{"name":"g","arguments":""}}]},{"role":"tool","tool_call_id":"c","content":""},{"role":"tool","tool_call_id":"d","content":"ok"}]}"#;
    let out = String::from_utf8(chat_to_messages(body, 1, "p").unwrap()).unwrap();
    assert!(out.contains(r#""input":{"z": 1, "a": 2}"#), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["messages"][1]["content"][0], text("Running."));
    assert_eq!(v["messages"][1]["content"][2]["input"], json!({}));
    // An empty tool result has no content (Anthropic refuses empty text).
    assert_eq!(
        v["messages"][2]["content"][0],
        json!({ "type": "tool_result", "tool_use_id": "c" })
    );
}

#[test]
fn empty_content_is_left_out_and_a_prefill_is_trimmed() {
    let out = messages(json!({ "messages": [
        { "role": "user", "content": [text("a"), text(""), text("  ")] },
        { "role": "assistant", "content": "" },
        { "role": "user", "content": "b" },
        { "role": "assistant", "content": "The answer is   \n" },
    ]}));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [text("a"), text("b")] },
            { "role": "assistant", "content": [text("The answer is")] },
        ])
    );
    let out = messages(
        json!({ "messages": [{ "role": "user", "content": "a" }, { "role": "assistant", "content": " \n" }] }),
    );
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn content_parts_become_blocks() {
    let out = messages(json!({ "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "Look:" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBOR", "detail": "high" } },
        { "type": "image_url", "image_url": { "url": "https://example.com/a.png" } },
        { "type": "file", "file": { "file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf" } },
        { "type": "file", "file": { "file_data": "JVBER" } },
    ]}]}));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            text("Look:"),
            { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBOR" } },
            { "type": "image", "source": { "type": "url", "url": "https://example.com/a.png" } },
            { "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" } },
            { "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" } },
        ])
    );
    let svg = refused(json!({ "messages": [{ "role": "user", "content": [
        { "type": "image_url", "image_url": { "url": "data:image/svg+xml,<svg/>" } }] }] }));
    assert_eq!(svg.param, "messages[0].content[0]");
    let by_id = refused(
        json!({ "messages": [{ "role": "user", "content": [{ "type": "file", "file": { "file_id": "file-1" } }] }] }),
    );
    assert_eq!(by_id.param, "messages[0].content[0]");
    let audio = refused(
        json!({ "messages": [{ "role": "user", "content": [{ "type": "input_audio", "input_audio": {} }] }] }),
    );
    assert!(audio.message.contains("input_audio"));
}

#[test]
fn tools_and_tool_choice_map() {
    let tools = json!([{ "type": "function", "function": { "name": "f", "description": "does f", "strict": true,
        "parameters": { "type": "object", "properties": { "x": { "type": "integer" } } } } },
        { "type": "function", "function": { "name": "g" } }]);
    let out = messages(json!({ "messages": hello(), "tools": tools }));
    assert_eq!(
        out["tools"],
        json!([
            { "name": "f", "description": "does f", "input_schema": { "type": "object", "properties": { "x": { "type": "integer" } } } },
            { "name": "g", "input_schema": { "type": "object" } },
        ])
    );
    assert!(out.get("tool_choice").is_none());
    for (choice, parallel, expected) in [
        (json!("auto"), json!(null), json!({ "type": "auto" })),
        (json!("required"), json!(null), json!({ "type": "any" })),
        (json!("none"), json!(false), json!({ "type": "none" })),
        (
            json!({ "type": "function", "function": { "name": "f" } }),
            json!(true),
            json!({ "type": "tool", "name": "f" }),
        ),
        (
            json!("required"),
            json!(false),
            json!({ "type": "any", "disable_parallel_tool_use": true }),
        ),
        (
            json!(null),
            json!(false),
            json!({ "type": "auto", "disable_parallel_tool_use": true }),
        ),
    ] {
        let out = messages(
            json!({ "messages": hello(), "tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel }),
        );
        assert_eq!(out["tool_choice"], expected, "{choice} {parallel}");
    }
    // Without tools, a choice means nothing (Anthropic would refuse it).
    let out = messages(
        json!({ "messages": hello(), "tool_choice": "required", "parallel_tool_calls": false }),
    );
    assert!(out.get("tool_choice").is_none());
}

#[test]
fn what_changes_the_answer_is_refused_naming_parameter_and_provider() {
    let n = refused(json!({ "messages": hello(), "n": 2 }));
    assert_eq!(
        n,
        TranslateError {
            param: "n".into(),
            message: "`n` > 1 is not supported by provider claude (type anthropic): it answers with one choice".into(),
        }
    );
    for kind in ["json_schema", "json_object"] {
        let e = refused(
            json!({ "messages": hello(), "response_format": { "type": kind, "json_schema": { "name": "x", "schema": {} } } }),
        );
        assert_eq!(e.param, "response_format");
        assert!(
            e.message.contains(kind)
                && e.message.contains("provider claude")
                && e.message.contains("meaning"),
            "{}",
            e.message
        );
    }
    assert_eq!(
        refused(json!({ "messages": hello(), "audio": { "voice": "alloy", "format": "wav" } }))
            .param,
        "audio"
    );
    assert_eq!(
        refused(json!({ "messages": hello(), "modalities": ["text", "audio"] })).param,
        "modalities"
    );
    assert_eq!(
        refused(json!({ "messages": hello(), "web_search_options": {} })).param,
        "web_search_options"
    );
    assert_eq!(
        refused(json!({ "messages": hello(), "functions": [{ "name": "f" }] })).param,
        "functions"
    );
    let tools = json!([{ "type": "function", "function": { "name": "f" } }]);
    for choice in [
        json!({ "type": "allowed_tools", "allowed_tools": { "mode": "auto", "tools": [] } }),
        json!({ "type": "custom", "custom": { "name": "f" } }),
    ] {
        let e = refused(json!({ "messages": hello(), "tools": tools, "tool_choice": choice }));
        assert_eq!(e.param, "tool_choice");
        assert!(
            e.message.contains("provider claude (type anthropic)"),
            "{}",
            e.message
        );
    }
    let custom = refused(
        json!({ "messages": hello(), "tools": [tools[0].clone(), { "type": "custom", "custom": { "name": "grammar" } }] }),
    );
    assert_eq!(custom.param, "tools[1]");
    assert!(
        custom
            .message
            .contains("of type custom is not supported by provider claude"),
        "{}",
        custom.message
    );
}

#[test]
fn malformed_requests_are_refused_with_their_place() {
    assert_eq!(chat_to_messages(b"[]", 1, "p").unwrap_err().param, "body");
    assert_eq!(chat_to_messages(b"{", 1, "p").unwrap_err().param, "body");
    assert_eq!(refused(json!({ "model": "m" })).param, "messages");
    assert_eq!(refused(json!({ "messages": "hi" })).param, "messages");
    assert_eq!(
        refused(json!({ "messages": [{ "content": "no role" }] })).param,
        "messages[0]"
    );
    assert_eq!(
        refused(json!({ "messages": [{ "role": "function", "name": "f", "content": "x" }] })).param,
        "messages[0].role"
    );
    assert_eq!(
        refused(json!({ "messages": [{ "role": "tool", "content": "x" }] })).param,
        "messages[0]"
    );
    assert_eq!(
        refused(json!({ "messages": [{ "role": "user", "content": 3 }] })).param,
        "messages[0].content"
    );
    let call = json!({ "role": "assistant", "tool_calls": [{ "id": "c", "type": "custom", "custom": { "name": "x", "input": "y" } }] });
    assert_eq!(
        refused(json!({ "messages": [call] })).param,
        "messages[0].tool_calls[0]"
    );
    assert_eq!(
        refused(json!({ "messages": [], "max_tokens": -1 })).param,
        "max_tokens"
    );
    assert_eq!(refused(json!({ "messages": [], "stop": 5 })).param, "stop");
    assert_eq!(
        refused(json!({ "messages": [], "tools": [{ "type": "function" }] })).param,
        "tools[0]"
    );
    assert_eq!(refused(json!({ "messages": [], "tools": [{ "type": "function", "function": { "name": "f" } }], "tool_choice": "sometimes" })).param, "tool_choice");
}
