//! `messages_to_chat`: every mapping, drop and refusal, pinned.

use serde_json::{Value, json};

use super::messages_to_chat;
use crate::wire::anthropic::TranslateError;

fn chat(request: Value) -> Value {
    let out = messages_to_chat(&serde_json::to_vec(&request).unwrap()).expect("translates");
    serde_json::from_slice(&out).unwrap()
}

fn refused(request: Value) -> TranslateError {
    messages_to_chat(&serde_json::to_vec(&request).unwrap()).expect_err("refused")
}

fn hello() -> Value {
    json!([{ "role": "user", "content": "hello" }])
}

#[test]
fn parameters_map_to_their_openai_names() {
    let out = chat(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": hello(),
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["\n\nHuman:", "END"],
        "metadata": { "user_id": "user-42" },
        "stream": true,
    }));
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "hello" },
            ],
            "max_completion_tokens": 1024,
            "temperature": 0.7,
            "top_p": 0.9,
            "stop": ["\n\nHuman:", "END"],
            "user": "user-42",
            "stream": true,
            "stream_options": { "include_usage": true },
        })
    );
}

#[test]
fn members_without_an_openai_equivalent_are_dropped() {
    let out = chat(json!({
        "model": "m",
        "max_tokens": 10,
        "messages": hello(),
        "thinking": { "type": "enabled", "budget_tokens": 2048 },
        "context_management": { "edits": [{ "type": "clear_tool_uses_20250919" }] },
        "output_config": { "effort": "high" },
        "cache_control": { "type": "ephemeral" },
        "top_k": 5,
        "service_tier": "auto",
        "container": "c_1",
        "inference_geo": "us",
        "mcp_servers": [{ "type": "url", "url": "https://mcp.example", "name": "x" }],
        "stream": false,
        "stop_sequences": [],
    }));
    assert_eq!(
        out,
        json!({ "model": "m", "messages": [{ "role": "user", "content": "hello" }], "max_completion_tokens": 10 })
    );
}

#[test]
fn a_model_is_copied_byte_for_byte_and_may_be_absent() {
    let out = messages_to_chat(br#"{"model":"caf\u00e9","messages":[]}"#).unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with(r#"{"model":"caf\u00e9","#)
    );
    assert_eq!(chat(json!({ "messages": [] })), json!({ "messages": [] }));
}

#[test]
fn system_blocks_become_one_system_message() {
    let out = chat(json!({
        "messages": hello(),
        "system": [
            { "type": "text", "text": "One.", "cache_control": { "type": "ephemeral" } },
            { "type": "text", "text": "Two." },
        ],
    }));
    assert_eq!(
        out["messages"][0],
        json!({ "role": "system", "content": "One.\n\nTwo." })
    );
    assert_eq!(
        chat(json!({ "messages": hello(), "system": "" }))["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        chat(json!({ "messages": hello(), "system": [] }))["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let e = refused(
        json!({ "messages": hello(), "system": [{ "type": "image", "source": { "type": "url", "url": "u" } }] }),
    );
    assert_eq!(e.param, "system.0");
}

#[test]
fn user_blocks_become_content_parts() {
    let out = chat(json!({ "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "Look:", "cache_control": { "type": "ephemeral" } },
        { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBOR" } },
        { "type": "image", "source": { "type": "url", "url": "https://example.com/a.png" } },
        { "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" }, "title": "x" },
        { "type": "document", "source": { "type": "text", "media_type": "text/plain", "data": "plain" } },
    ]}]}));
    assert_eq!(
        out["messages"][0],
        json!({ "role": "user", "content": [
            { "type": "text", "text": "Look:" },
            { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBOR" } },
            { "type": "image_url", "image_url": { "url": "https://example.com/a.png" } },
            { "type": "file", "file": { "file_data": "data:application/pdf;base64,JVBER", "filename": "document.pdf" } },
            { "type": "text", "text": "plain" },
        ]})
    );
    // A single text block is a plain string.
    let out = chat(
        json!({ "messages": [{ "role": "user", "content": [{ "type": "text", "text": "hi" }] }] }),
    );
    assert_eq!(
        out["messages"][0],
        json!({ "role": "user", "content": "hi" })
    );
}

#[test]
fn tool_use_and_tool_result_become_tool_calls_and_tool_messages() {
    let out = chat(json!({ "messages": [
        { "role": "user", "content": "Weather in Paris and Rome?" },
        { "role": "assistant", "content": [
            { "type": "thinking", "thinking": "two calls", "signature": "EqQB" },
            { "type": "redacted_thinking", "data": "EmwK" },
            { "type": "text", "text": "Checking." },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
            { "type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": { "city": "Rome" } },
        ]},
        { "role": "user", "content": [
            { "type": "text", "text": "Also, be quick." },
            { "type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees" },
            { "type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
              "content": [{ "type": "text", "text": "timeout" }, { "type": "text", "text": "retry later" }] },
        ]},
    ]}));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": "Weather in Paris and Rome?" },
            { "role": "assistant", "content": "Checking.", "tool_calls": [
                { "id": "toolu_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                { "id": "toolu_2", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Rome\"}" } },
            ]},
            { "role": "tool", "content": "15 degrees", "tool_call_id": "toolu_1" },
            { "role": "tool", "content": "Error: timeout\nretry later", "tool_call_id": "toolu_2" },
            { "role": "user", "content": "Also, be quick." },
        ])
    );
}

#[test]
fn an_assistant_turn_of_tool_calls_only_has_null_content() {
    let out = chat(json!({ "messages": [
        { "role": "user", "content": "go" },
        { "role": "assistant", "content": [{ "type": "tool_use", "id": "t", "name": "run", "input": {} }] },
        { "role": "assistant", "content": [{ "type": "thinking", "thinking": "x", "signature": "s" }] },
        { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "t" }] },
    ]}));
    assert_eq!(
        out["messages"][1],
        json!({ "role": "assistant", "content": null, "tool_calls": [
            { "id": "t", "type": "function", "function": { "name": "run", "arguments": "{}" } }
        ]})
    );
    // The thinking-only turn is gone; an empty result is an empty string.
    assert_eq!(
        out["messages"][2],
        json!({ "role": "tool", "content": "", "tool_call_id": "t" })
    );
    assert_eq!(out["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn tool_inputs_keep_their_bytes_as_arguments() {
    let body = br#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"z":1,"a":[true,null]}}]}]}"#;
    let out: Value = serde_json::from_slice(&messages_to_chat(body).unwrap()).unwrap();
    assert_eq!(
        out["messages"][0]["tool_calls"][0]["function"]["arguments"],
        r#"{"z":1,"a":[true,null]}"#
    );
}

#[test]
fn images_inside_tool_results_move_to_the_user_message_after_them() {
    let out = chat(json!({ "messages": [
        { "role": "assistant", "content": [{ "type": "tool_use", "id": "t", "name": "screenshot", "input": {} }] },
        { "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": "t", "content": [
                { "type": "text", "text": "captured" },
                { "type": "image", "source": { "type": "base64", "media_type": "image/jpeg", "data": "AAA" } },
            ]},
            { "type": "text", "text": "what do you see?" },
        ]},
    ]}));
    assert_eq!(
        out["messages"][1],
        json!({ "role": "tool", "content": "captured", "tool_call_id": "t" })
    );
    assert_eq!(
        out["messages"][2],
        json!({ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "data:image/jpeg;base64,AAA" } },
            { "type": "text", "text": "what do you see?" },
        ]})
    );
}

#[test]
fn tools_become_function_tools_without_anthropic_only_keys() {
    let body = br#"{"messages":[],"tools":[
        {"name":"Read","description":"Read a file","input_schema":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]},"cache_control":{"type":"ephemeral"},"defer_loading":true,"strict":true},
        {"type":"custom","name":"Bare"}
    ],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}"#;
    let out: Value = serde_json::from_slice(&messages_to_chat(body).unwrap()).unwrap();
    assert_eq!(
        out["tools"],
        json!([
            { "type": "function", "function": { "name": "Read", "description": "Read a file",
              "parameters": { "type": "object", "properties": { "path": { "type": "string" } }, "required": ["path"] } } },
            { "type": "function", "function": { "name": "Bare", "parameters": { "type": "object", "properties": {} } } },
        ])
    );
    assert_eq!(out["tool_choice"], "required");
    assert_eq!(out["parallel_tool_calls"], false);
    // The schema's bytes pass as they are (key order included).
    let text = String::from_utf8(messages_to_chat(body).unwrap()).unwrap();
    assert!(text.contains(r#""parameters":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}"#));
}

#[test]
fn tool_choice_maps_and_needs_tools() {
    let tools = json!([{ "name": "f", "input_schema": { "type": "object" } }]);
    for (choice, expected) in [
        (json!({ "type": "auto" }), json!("auto")),
        (json!({ "type": "any" }), json!("required")),
        (json!({ "type": "none" }), json!("none")),
        (
            json!({ "type": "tool", "name": "f" }),
            json!({ "type": "function", "function": { "name": "f" } }),
        ),
    ] {
        let out = chat(json!({ "messages": [], "tools": tools, "tool_choice": choice }));
        assert_eq!(out["tool_choice"], expected);
        assert!(out.get("parallel_tool_calls").is_none());
    }
    let out = chat(
        json!({ "messages": [], "tools": tools, "tool_choice": { "type": "auto", "disable_parallel_tool_use": false } }),
    );
    assert!(out.get("parallel_tool_calls").is_none());
    // OpenAI refuses tool_choice without tools.
    let out = chat(
        json!({ "messages": [], "tool_choice": { "type": "any", "disable_parallel_tool_use": true } }),
    );
    assert!(out.get("tool_choice").is_none() && out.get("parallel_tool_calls").is_none());
    assert_eq!(
        refused(json!({ "messages": [], "tools": tools, "tool_choice": { "type": "tool" } })).param,
        "tool_choice"
    );
    assert_eq!(
        refused(json!({ "messages": [], "tools": tools, "tool_choice": { "type": "magic" } }))
            .param,
        "tool_choice"
    );
}

#[test]
fn a_user_id_longer_than_openai_accepts_is_dropped() {
    let long = format!("user_{}_account_x_session_y", "a".repeat(64));
    let out = chat(json!({ "messages": [], "metadata": { "user_id": long } }));
    assert!(out.get("user").is_none());
    let out = chat(json!({ "messages": [], "metadata": { "user_id": "a".repeat(64) } }));
    assert_eq!(out["user"], "a".repeat(64));
    assert!(
        chat(json!({ "messages": [], "metadata": {} }))
            .get("user")
            .is_none()
    );
}

#[test]
fn mid_conversation_system_messages_stay_system_messages() {
    let out = chat(json!({ "messages": [
        { "role": "user", "content": "a" },
        { "role": "system", "content": [{ "type": "text", "text": "Now be formal." }] },
    ]}));
    assert_eq!(
        out["messages"][1],
        json!({ "role": "system", "content": "Now be formal." })
    );
}

#[test]
fn what_cannot_be_translated_is_refused_with_its_place() {
    let server_tool = refused(json!({ "messages": [], "tools": [
        { "name": "ok", "input_schema": { "type": "object" } },
        { "type": "web_search_20250305", "name": "web_search", "max_uses": 5 },
    ]}));
    assert_eq!(server_tool.param, "tools.1");
    assert!(
        server_tool.message.contains("web_search_20250305"),
        "{}",
        server_tool.message
    );
    let unknown = refused(json!({ "messages": [
        { "role": "user", "content": "a" },
        { "role": "user", "content": [{ "type": "text", "text": "x" }, { "type": "search_result", "source": "s", "title": "t", "content": [] }] },
    ]}));
    assert_eq!(unknown.param, "messages.1.content.1");
    assert!(unknown.message.contains("search_result"));
    assert_eq!(refused(json!([1, 2])).param, "body");
    assert_eq!(messages_to_chat(b"  \"text\"").unwrap_err().param, "body");
    assert_eq!(
        messages_to_chat(b"{\"messages\":").unwrap_err().param,
        "body"
    );
    assert_eq!(
        refused(json!({ "messages": { "role": "user" } })).param,
        "messages"
    );
    assert_eq!(refused(json!({ "model": "m" })).param, "messages");
    assert_eq!(
        refused(json!({ "messages": [{ "role": "tool", "content": "x" }] })).param,
        "messages.0.role"
    );
    assert_eq!(
        refused(json!({ "messages": [{ "role": "user", "content": 5 }] })).param,
        "messages.0.content"
    );
    assert_eq!(
        refused(json!({ "messages": [{ "role": "user", "content": [{ "text": "no type" }] }] }))
            .param,
        "messages.0.content.0"
    );
    assert_eq!(
        refused(json!({ "messages": [], "max_tokens": "many" })).param,
        "max_tokens"
    );
    assert_eq!(
        refused(json!({ "messages": [], "temperature": "hot" })).param,
        "temperature"
    );
    let file = refused(json!({ "messages": [{ "role": "user", "content": [
        { "type": "image", "source": { "type": "file", "file_id": "file_1" } }] }] }));
    assert_eq!(file.param, "messages.0.content.0.source");
    let misplaced = refused(json!({ "messages": [{ "role": "assistant", "content": [
        { "type": "tool_result", "tool_use_id": "t" }] }] }));
    assert_eq!(misplaced.param, "messages.0.content.0");
    assert!(
        refused(json!({ "messages": [], "tools": [{ "description": "nameless" }] }))
            .message
            .contains("name")
    );
}
