//! OpenAI chat completions request → Anthropic Messages request, for an
//! OpenAI client routed to an Anthropic provider.
//!
//! Anthropic is stricter about a conversation's shape, and each rule here
//! avoids one of its 400s:
//! - the system prompt is a member: leading system/developer messages are
//!   gathered into it, and later ones (which only the newest models accept
//!   as messages) become user text in `<system-reminder>` tags, the way
//!   Claude Code injects its own;
//! - tool results are `tool_result` blocks of ONE user message right after
//!   the assistant's tool calls, before any text of that message;
//! - consecutive messages of one role are merged, which keeps that
//!   adjacency explicit;
//! - empty text blocks and empty messages are refused, so they are left
//!   out, and a final assistant text (a prefill) may not end in whitespace;
//! - tool-use ids must match `^[a-zA-Z0-9_-]+$`, so ids are sanitized, the
//!   same way on both sides so calls and results still pair.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::wire::anthropic::TranslateError;
use crate::wire::anthropic::common::{invalid, parse, read_object, starts_with, typed};

mod turns;

use turns::{Block, Message, Turn, finish, message};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stop: Option<&'a RawValue>,
    #[serde(borrow, default)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parallel_tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    n: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    audio: Option<&'a RawValue>,
    #[serde(borrow, default)]
    modalities: Option<&'a RawValue>,
    #[serde(borrow, default)]
    web_search_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    functions: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a RawValue>,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System>,
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum System {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Serialize)]
struct Tool<'a> {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: &'a RawValue,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    function: Option<FunctionIn<'a>>,
}

/// An OpenAI chat request as an Anthropic Messages request. `provider`
/// names the provider in refusals; `default_max_tokens` fills Anthropic's
/// required `max_tokens` when the client set none.
pub fn chat_to_messages(
    body: &[u8],
    default_max_tokens: u64,
    provider: &str,
) -> Result<Vec<u8>, TranslateError> {
    let req: Request = read_object(body)?;
    refuse_what_changes_meaning(&req, provider)?;
    let raw_messages: Vec<&RawValue> = match req.messages {
        Some(raw) if starts_with(raw, '[') => parse(raw, "messages")?,
        _ => return Err(invalid("messages", "must be an array of messages")),
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, raw) in raw_messages.into_iter().enumerate() {
        message(raw, i, &mut system, &mut turns)?;
    }
    let tools = tools(req.tools, provider)?;
    let tool_choice = match &tools {
        Some(_) => tool_choice(req.tool_choice, req.parallel_tool_calls, provider)?,
        None => None,
    };
    let max_tokens = typed::<u64>(req.max_completion_tokens, "max_completion_tokens")?
        .or(typed::<u64>(req.max_tokens, "max_tokens")?)
        .unwrap_or(default_max_tokens);
    let user = typed::<String>(req.user, "user")?.filter(|u| !u.is_empty());
    let out = MessagesRequest {
        model: req.model,
        max_tokens,
        system: match system.len() {
            0 => None,
            1 => system.pop().map(System::Text),
            _ => Some(System::Blocks(
                system
                    .into_iter()
                    .map(|text| Block::Text { text })
                    .collect(),
            )),
        },
        messages: finish(turns),
        stop_sequences: stop(req.stop)?,
        temperature: typed::<f64>(req.temperature, "temperature")?.map(|t| t.clamp(0.0, 1.0)),
        top_p: typed(req.top_p, "top_p")?,
        metadata: user.map(|u| json!({ "user_id": u })),
        tools,
        tool_choice,
        stream: typed(req.stream, "stream")?,
    };
    Ok(serde_json::to_vec(&out).expect("serializable"))
}

fn unsupported(param: &str, what: &str, provider: &str, why: &str) -> TranslateError {
    TranslateError {
        param: param.to_owned(),
        message: format!(
            "`{param}`{what} is not supported by provider {provider} (type anthropic): {why}"
        ),
    }
}

/// Members whose loss would change what the answer means.
fn refuse_what_changes_meaning(req: &Request, provider: &str) -> Result<(), TranslateError> {
    if typed::<u64>(req.n, "n")?.is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            " > 1",
            provider,
            "it answers with one choice",
        ));
    }
    if let Some(format) = typed::<Head>(req.response_format, "response_format")? {
        let kind = format.kind.unwrap_or_default();
        if kind != "text" {
            let what = format!(" of type {kind}");
            let why = "ignoring it would change the answer's meaning";
            return Err(unsupported("response_format", &what, provider, why));
        }
    }
    if req.audio.is_some_and(|a| a.get() != "null") {
        return Err(unsupported(
            "audio",
            "",
            provider,
            "it answers with text only",
        ));
    }
    let modalities: Vec<String> = typed(req.modalities, "modalities")?.unwrap_or_default();
    if modalities.iter().any(|m| m == "audio") {
        return Err(unsupported(
            "modalities",
            " with audio",
            provider,
            "it answers with text only",
        ));
    }
    if req.web_search_options.is_some_and(|w| w.get() != "null") {
        let why = "it would answer without searching the web";
        return Err(unsupported("web_search_options", "", provider, why));
    }
    if req.functions.is_some_and(|f| f.get() != "null") {
        return Err(unsupported(
            "functions",
            " (legacy)",
            provider,
            "send `tools` instead",
        ));
    }
    Ok(())
}

/// `stop` (a string or strings) without blank entries, which Anthropic refuses.
fn stop(raw: Option<&RawValue>) -> Result<Option<Vec<String>>, TranslateError> {
    let list: Vec<String> = match raw {
        Some(r) if starts_with(r, '"') => vec![parse(r, "stop")?],
        _ => typed(raw, "stop")?.unwrap_or_default(),
    };
    let list: Vec<String> = list.into_iter().filter(|s| !s.trim().is_empty()).collect();
    Ok((!list.is_empty()).then_some(list))
}

fn tools<'a>(
    raw: Option<&'a RawValue>,
    provider: &str,
) -> Result<Option<Vec<Tool<'a>>>, TranslateError> {
    let list: Vec<ToolIn> = typed(raw, "tools")?.unwrap_or_default();
    let object: &RawValue = serde_json::from_str(r#"{"type":"object"}"#).expect("valid JSON");
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        let param = format!("tools[{i}]");
        let kind = t.kind.as_deref().unwrap_or("function");
        if kind != "function" {
            let why = "only function tools translate";
            return Err(unsupported(
                &param,
                &format!(" of type {kind}"),
                provider,
                why,
            ));
        }
        let f = t
            .function
            .ok_or_else(|| invalid(&param, "needs `function`"))?;
        out.push(Tool {
            name: f
                .name
                .ok_or_else(|| invalid(&param, "needs `function.name`"))?,
            description: f.description,
            input_schema: f.parameters.filter(|p| p.get() != "null").unwrap_or(object),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `tool_choice`, with `parallel_tool_calls: false` folded in as
/// `disable_parallel_tool_use` (Anthropic keeps it inside `tool_choice`).
fn tool_choice(
    raw: Option<&RawValue>,
    parallel: Option<&RawValue>,
    provider: &str,
) -> Result<Option<Value>, TranslateError> {
    let choice: Option<Value> = typed(raw, "tool_choice")?;
    let mut out = match &choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({ "type": "auto" }),
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            other => return Err(invalid("tool_choice", &format!("unknown value `{other}`"))),
        }),
        Some(v) => match v["type"].as_str() {
            Some("function") => match v["function"]["name"].as_str() {
                Some(name) => Some(json!({ "type": "tool", "name": name })),
                None => return Err(invalid("tool_choice", "needs `function.name`")),
            },
            kind => {
                let what = format!(" of type {}", kind.unwrap_or("(none)"));
                return Err(unsupported(
                    "tool_choice",
                    &what,
                    provider,
                    "it has no equivalent",
                ));
            }
        },
    };
    if typed::<bool>(parallel, "parallel_tool_calls")? == Some(false) {
        let c = out.get_or_insert_with(|| json!({ "type": "auto" }));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(out)
}
