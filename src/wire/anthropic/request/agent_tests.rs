//! A coding agent's request (shaped like Claude Code's: cached system
//! blocks, two dozen tools with nested schemas, adaptive thinking, context
//! management) through both translations.

use serde_json::{Value, json};

use super::{chat_to_messages, messages_to_chat};

const TOOL_NAMES: [&str; 24] = [
    "Task",
    "Bash",
    "Glob",
    "Grep",
    "ExitPlanMode",
    "Read",
    "Edit",
    "MultiEdit",
    "Write",
    "NotebookEdit",
    "WebFetch",
    "TodoWrite",
    "WebSearch",
    "BashOutput",
    "KillShell",
    "SlashCommand",
    "Skill",
    "LS",
    "AskUserQuestion",
    "ListMcpResources",
    "ReadMcpResource",
    "mcp__ide__getDiagnostics",
    "mcp__ide__executeCode",
    "EnterPlanMode",
];

/// A schema nested three levels deep, different for each tool.
fn schema(i: usize) -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": false,
        "required": ["path", "edits"],
        "properties": {
            "path": { "type": "string", "description": format!("The absolute path ({i})") },
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["old_string", "new_string"],
                    "properties": {
                        "old_string": { "type": "string" },
                        "new_string": { "type": "string" },
                        "replace_all": { "type": "boolean", "default": false },
                        "status": { "type": "string", "enum": ["pending", "in_progress", "completed"] },
                    },
                },
            },
            "limit": { "type": "number", "exclusiveMinimum": 0 },
        },
    })
}

fn agent_request(user_id: &str) -> Value {
    let tools: Vec<Value> = TOOL_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut tool = json!({ "name": name, "description": format!("Tool {name}."), "input_schema": schema(i) });
            if i == TOOL_NAMES.len() - 1 {
                tool["cache_control"] = json!({ "type": "ephemeral" });
            }
            tool
        })
        .collect();
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": true,
        "thinking": { "type": "adaptive" },
        "context_management": { "edits": [{ "type": "clear_thinking_20251015", "keep": "all" }] },
        "output_config": { "effort": "medium" },
        "metadata": { "user_id": user_id },
        "system": [
            { "type": "text", "text": "x-anthropic-billing-header: cc_version=2.0.14; cc_entrypoint=cli" },
            { "type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": { "type": "ephemeral" } },
            { "type": "text", "text": "You are an interactive CLI tool that helps users with software engineering tasks.", "cache_control": { "type": "ephemeral" } },
        ],
        "tools": tools,
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "<system-reminder>\nAs you answer, use the context below.\n</system-reminder>" },
                { "type": "text", "text": "Fix the typo in src/main.rs", "cache_control": { "type": "ephemeral" } },
            ]},
            { "role": "assistant", "content": [
                { "type": "thinking", "thinking": "I should read the file first.", "signature": "EqQBCgIYAhIM" },
                { "type": "text", "text": "Let me read the file." },
                { "type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Read", "input": { "file_path": "/repo/src/main.rs" } },
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                  "content": "     1\tfn mian() {}\n", "cache_control": { "type": "ephemeral" } },
                { "type": "text", "text": "Go ahead." },
            ]},
        ],
    })
}

fn to_chat(request: &Value) -> Value {
    serde_json::from_slice(&messages_to_chat(&serde_json::to_vec(request).unwrap()).unwrap())
        .unwrap()
}

#[test]
fn a_coding_agent_request_translates_to_chat() {
    let claude_code_id = format!(
        "user_{}_account_{}_session_{}",
        "a1".repeat(32),
        "0".repeat(36),
        "1".repeat(36)
    );
    let request = agent_request(&claude_code_id);
    let out = to_chat(&request);
    assert_eq!(out["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(out["max_completion_tokens"], 32000);
    assert_eq!(
        (out["stream"].clone(), out["stream_options"].clone()),
        (json!(true), json!({ "include_usage": true }))
    );
    for dropped in [
        "thinking",
        "context_management",
        "output_config",
        "metadata",
        "max_tokens",
        "system",
        "user",
    ] {
        assert!(out.get(dropped).is_none(), "{dropped} should be dropped");
    }
    assert_eq!(
        out["messages"],
        json!([
            { "role": "system", "content": "x-anthropic-billing-header: cc_version=2.0.14; cc_entrypoint=cli\n\nYou are Claude Code, Anthropic's official CLI for Claude.\n\nYou are an interactive CLI tool that helps users with software engineering tasks." },
            { "role": "user", "content": [
                { "type": "text", "text": "<system-reminder>\nAs you answer, use the context below.\n</system-reminder>" },
                { "type": "text", "text": "Fix the typo in src/main.rs" },
            ]},
            { "role": "assistant", "content": "Let me read the file.", "tool_calls": [
                { "id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                  "function": { "name": "Read", "arguments": "{\"file_path\":\"/repo/src/main.rs\"}" } },
            ]},
            { "role": "tool", "content": "     1\tfn mian() {}\n", "tool_call_id": "toolu_01A09q90qw90lq917835lq9" },
            { "role": "user", "content": "Go ahead." },
        ])
    );
    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 24);
    for (i, tool) in tools.iter().enumerate() {
        assert_eq!(
            tool,
            &json!({ "type": "function", "function": { "name": TOOL_NAMES[i], "description": format!("Tool {}.", TOOL_NAMES[i]), "parameters": schema(i) } })
        );
    }
    // A short user id is passed on.
    assert_eq!(to_chat(&agent_request("user-7"))["user"], "user-7");
}

#[test]
fn a_coding_agent_request_survives_the_round_trip() {
    let request = agent_request("user-7");
    let chat = messages_to_chat(&serde_json::to_vec(&request).unwrap()).unwrap();
    let back: Value =
        serde_json::from_slice(&chat_to_messages(&chat, 1024, "claude").unwrap()).unwrap();
    assert_eq!(back["max_tokens"], 32000);
    assert_eq!(back["metadata"], json!({ "user_id": "user-7" }));
    assert_eq!(back["stream"], true);
    let system = back["system"].as_str().unwrap();
    assert!(
        system.starts_with("x-anthropic-billing-header")
            && system.ends_with("software engineering tasks.")
    );
    let tools = back["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 24);
    for (tool, original) in tools.iter().zip(request["tools"].as_array().unwrap()) {
        assert_eq!(tool["name"], original["name"]);
        assert_eq!(tool["input_schema"], original["input_schema"]);
    }
    let text = |t: &str| json!({ "type": "text", "text": t });
    assert_eq!(
        back["messages"],
        json!([
            { "role": "user", "content": [
                text("<system-reminder>\nAs you answer, use the context below.\n</system-reminder>"),
                text("Fix the typo in src/main.rs"),
            ]},
            { "role": "assistant", "content": [
                text("Let me read the file."),
                { "type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Read", "input": { "file_path": "/repo/src/main.rs" } },
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "     1\tfn mian() {}\n" },
                text("Go ahead."),
            ]},
        ])
    );
}
