//! Whole (non-streaming) answers: an OpenAI chat completion as an Anthropic
//! Message and the reverse, and the usage of an Anthropic Message.
//!
//! Why each detail: the Anthropic SDKs type every member of a Message
//! (`stop_sequence` must be present, a tool input must be an object, a
//! tool-use id must match `^[a-zA-Z0-9_-]+$`), and Anthropic counts cached
//! prompt tokens apart from `input_tokens` where OpenAI counts them inside
//! `prompt_tokens`; the usage conversions keep the totals equal.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::common::{
    AnthropicUsage, OpenAiUsage, anthropic_usage_json, arguments_to_input, finish_reason, now_secs,
    openai_usage_json, sanitize_id, stop_reason, with_tools,
};
use crate::usage::TokenUsage;

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<ChatMessage<'a>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TextPart {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Serialize)]
struct Message<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a RawValue,
    content: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Value,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Box<RawValue>,
    },
}

#[derive(Deserialize)]
struct AnthropicMessage<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Vec<AnthropicBlock<'a>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicBlock<'a> {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// An OpenAI chat completion as an Anthropic Message; `None` when `body`
/// is not a chat completion.
pub fn chat_to_message(body: &[u8]) -> Option<Vec<u8>> {
    let c: Completion = serde_json::from_slice(body).ok()?;
    let id = sanitize_id(c.id.as_deref().unwrap_or_default(), &fallback_id());
    let choice = c.choices.into_iter().next();
    let finish = choice.as_ref().and_then(|c| c.finish_reason.clone());
    let message = choice.and_then(|c| c.message);
    let content = message.map(|m| blocks(m, &id)).unwrap_or_default();
    let has_tools = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
    let usage = c.usage.map(TokenUsage::from).unwrap_or_default();
    let empty: &RawValue = serde_json::from_str("\"\"").expect("valid JSON");
    let out = Message {
        id: format!("msg_{id}"),
        kind: "message",
        role: "assistant",
        model: c.model.unwrap_or(empty),
        content,
        stop_reason: with_tools(stop_reason(finish.as_deref()), has_tools),
        stop_sequence: None,
        usage: anthropic_usage_json(&usage),
    };
    serde_json::to_vec(&out).ok()
}

/// Thinking first, then text (if any), then one `tool_use` per call.
fn blocks(m: ChatMessage, message_id: &str) -> Vec<Block> {
    let mut out = Vec::new();
    if let Some(thinking) = m
        .reasoning_content
        .or(m.reasoning)
        .filter(|t| !t.is_empty())
    {
        out.push(Block::Thinking {
            thinking,
            signature: String::new(),
        });
    }
    let text = m.content.map(content_text).unwrap_or_default();
    if let Some(text) = Some(text).filter(|t| !t.is_empty()).or(m.refusal) {
        out.push(Block::Text { text });
    }
    for (k, call) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
        let f = call.function;
        let arguments = f.as_ref().and_then(|f| f.arguments);
        let input = match arguments {
            Some(a) if a.get().starts_with('"') => {
                arguments_to_input(&serde_json::from_str::<String>(a.get()).unwrap_or_default())
            }
            Some(a) => arguments_to_input(a.get()),
            None => arguments_to_input(""),
        };
        let fallback = format!("toolu_{message_id}_{k}");
        out.push(Block::ToolUse {
            id: sanitize_id(call.id.as_deref().unwrap_or_default(), &fallback),
            name: f.and_then(|f| f.name).unwrap_or_default(),
            input,
        });
    }
    out
}

/// A message's `content`: a string, or text parts joined.
fn content_text(raw: &RawValue) -> String {
    if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
        return text;
    }
    let parts: Vec<TextPart> = serde_json::from_str(raw.get()).unwrap_or_default();
    parts.into_iter().filter_map(|p| p.text).collect()
}

/// An id for an answer that came without one.
fn fallback_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("router{nanos:x}")
}

/// An Anthropic Message as an OpenAI chat completion; `None` when `body`
/// is not a Message.
pub fn message_to_chat(body: &[u8]) -> Option<Vec<u8>> {
    let m: AnthropicMessage = serde_json::from_slice(body).ok()?;
    if m.kind.as_deref().is_some_and(|k| k != "message") {
        return None;
    }
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for b in m.content {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or_default()),
            "thinking" => thinking.push_str(b.thinking.as_deref().unwrap_or_default()),
            "tool_use" => calls.push(json!({
                "id": b.id.unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": b.name.unwrap_or_default(),
                    "arguments": b.input.map_or("{}", RawValue::get),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = Value::String(thinking);
    }
    let model: Value = m
        .model
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(json!(""));
    let out = json!({
        "id": format!("chatcmpl-{}", m.id.unwrap_or_default()),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(m.stop_reason.as_deref().unwrap_or("end_turn")),
            "logprobs": null,
        }],
        "usage": openai_usage_json(&m.usage.unwrap_or_default().tokens()),
    });
    serde_json::to_vec(&out).ok()
}

/// The usage of an Anthropic Message (prompt = input + cache reads + cache
/// writes; cached = cache reads).
pub fn message_usage(body: &[u8]) -> Option<TokenUsage> {
    usage_value(crate::payload::scan::top_level_value(body, "usage")?)
}

/// An Anthropic `usage` member's raw value in OpenAI's terms; `None` for
/// `null` or an object without Anthropic's counts.
pub fn usage_value(raw: &[u8]) -> Option<TokenUsage> {
    let u: AnthropicUsage = serde_json::from_slice::<Option<AnthropicUsage>>(raw).ok()??;
    (u.input_tokens.is_some() || u.output_tokens.is_some()).then(|| u.tokens())
}

#[cfg(test)]
mod tests;
