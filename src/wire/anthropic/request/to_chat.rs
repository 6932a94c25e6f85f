//! Anthropic Messages request → OpenAI chat completions request, for an
//! Anthropic client (Claude Code, the SDKs) routed to an OpenAI-style
//! provider.
//!
//! The shapes differ where it matters:
//! - the system prompt is a member, not a message;
//! - tool results are blocks of the next user turn, where OpenAI wants
//!   `role: tool` messages right after the assistant's tool calls, so they
//!   are emitted before that turn's own text;
//! - a tool's input is an object, where OpenAI's `arguments` is JSON text;
//! - images and PDFs are sources, where OpenAI wants (data:) URLs.
//!
//! Tool results cannot hold images in OpenAI's shape, so an image inside
//! one moves to the user message that follows the tool messages.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::wire::anthropic::TranslateError;
use crate::wire::anthropic::common::{invalid, parse, read_object, starts_with, typed};

mod turns;

use turns::{Message, system, turn};

/// OpenAI refuses a `user` longer than this; Claude Code's `user_id` is
/// about 150 characters, so a longer one is dropped rather than sent.
const MAX_USER_CHARS: usize = 64;

/// What a client sends to the schema-less tool definitions.
const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stop_sequences: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a RawValue>,
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
}

#[derive(Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    parameters: &'a RawValue,
}

#[derive(Deserialize)]
struct ToolDef<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// An Anthropic Messages request as an OpenAI chat completions request.
/// See the module docs; the README's table lists every member's fate.
pub fn messages_to_chat(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let req: Request = read_object(body)?;
    let mut messages = system(req.system)?;
    let turns: Vec<&RawValue> = match req.messages {
        Some(raw) if starts_with(raw, '[') => typed(Some(raw), "messages")?.unwrap_or_default(),
        _ => return Err(invalid("messages", "must be an array of messages")),
    };
    for (i, raw) in turns.into_iter().enumerate() {
        turn(raw, &format!("messages.{i}"), &mut messages)?;
    }
    let tools = tools(req.tools)?;
    let (tool_choice, parallel) = match &tools {
        Some(_) => tool_choice(req.tool_choice)?,
        None => (None, None),
    };
    let stream = typed::<bool>(req.stream, "stream")?.filter(|s| *s);
    let metadata: Option<Metadata> = typed(req.metadata, "metadata")?;
    let out = ChatRequest {
        model: req.model,
        messages,
        max_completion_tokens: typed(req.max_tokens, "max_tokens")?,
        temperature: typed(req.temperature, "temperature")?,
        top_p: typed(req.top_p, "top_p")?,
        stop: typed::<Vec<String>>(req.stop_sequences, "stop_sequences")?.filter(|s| !s.is_empty()),
        user: metadata
            .and_then(|m| m.user_id)
            .filter(|u| !u.is_empty() && u.chars().count() <= MAX_USER_CHARS),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        stream,
        stream_options: stream.map(|_| json!({ "include_usage": true })),
    };
    Ok(serde_json::to_vec(&out).expect("serializable"))
}

/// Client tools as function tools; a server tool (a `type` other than
/// `custom`) runs on Anthropic's side and cannot be offered elsewhere.
fn tools(raw: Option<&RawValue>) -> Result<Option<Vec<Tool<'_>>>, TranslateError> {
    let Some(list) = typed::<Vec<&RawValue>>(raw, "tools")? else {
        return Ok(None);
    };
    let empty: &RawValue = serde_json::from_str(EMPTY_SCHEMA).expect("valid JSON");
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let param = format!("tools.{i}");
        let def: ToolDef = parse(raw, &param)?;
        if let Some(kind) = def.kind.as_deref().filter(|k| *k != "custom") {
            let why = format!(
                "server tool type `{kind}` runs on Anthropic's side and has no OpenAI equivalent"
            );
            return Err(invalid(&param, &why));
        }
        let name = def
            .name
            .ok_or_else(|| invalid(&param, "a tool needs a `name`"))?;
        let parameters = def
            .input_schema
            .filter(|s| s.get() != "null")
            .unwrap_or(empty);
        out.push(Tool {
            kind: "function",
            function: Function {
                name,
                description: def.description,
                parameters,
            },
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `tool_choice`, and `parallel_tool_calls: false` when the client
/// disabled parallel tool use.
fn tool_choice(raw: Option<&RawValue>) -> Result<(Option<Value>, Option<bool>), TranslateError> {
    let Some(c) = typed::<ToolChoice>(raw, "tool_choice")? else {
        return Ok((None, None));
    };
    let choice = match c.kind.as_str() {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = c
                .name
                .ok_or_else(|| invalid("tool_choice", "type `tool` needs a `name`"))?;
            json!({ "type": "function", "function": { "name": name } })
        }
        other => return Err(invalid("tool_choice", &format!("unknown type `{other}`"))),
    };
    let parallel = (c.disable_parallel_tool_use == Some(true)).then_some(false);
    Ok((Some(choice), parallel))
}
