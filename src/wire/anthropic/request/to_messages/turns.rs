//! The conversation of an OpenAI request as Anthropic turns: leading
//! system messages gathered, later ones as reminders, tool messages as one
//! user turn of `tool_result` blocks, consecutive roles merged, blank text
//! left out, content parts as blocks.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::FunctionIn;
use crate::wire::anthropic::TranslateError;
use crate::wire::anthropic::common::{
    arguments_to_input, invalid, parse, sanitize_id, starts_with, typed,
};

#[derive(Serialize)]
pub(super) struct Message {
    role: &'static str,
    content: Vec<Block>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ToolContent>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Source {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum ToolContent {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    role: String,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct PartIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    image_url: Option<ImageUrl>,
    #[serde(default)]
    file: Option<FileIn>,
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct FileIn {
    #[serde(default)]
    file_data: Option<String>,
}

#[derive(Deserialize)]
struct ToolCallIn<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    function: Option<FunctionIn<'a>>,
}

/// A conversation being built: tool results are kept apart so they lead
/// their user message whatever order the parts arrived in.
pub(super) struct Turn {
    role: &'static str,
    results: Vec<Block>,
    blocks: Vec<Block>,
}

/// One OpenAI message, into the system prompt or the conversation.
pub(super) fn message(
    raw: &RawValue,
    i: usize,
    system: &mut Vec<String>,
    turns: &mut Vec<Turn>,
) -> Result<(), TranslateError> {
    let param = format!("messages[{i}]");
    let m: ChatMessage = parse(raw, &param)?;
    let content_param = format!("{param}.content");
    match m.role.as_str() {
        "system" | "developer" => {
            let text = texts(parts(m.content, &content_param)?).join("\n\n");
            if text.trim().is_empty() {
                return Ok(());
            }
            if turns.is_empty() {
                system.push(text);
            } else {
                let text = format!("<system-reminder>\n{text}\n</system-reminder>");
                push(turns, "user", Vec::new(), vec![Block::Text { text }]);
            }
        }
        "user" => push(turns, "user", Vec::new(), parts(m.content, &content_param)?),
        "assistant" => {
            let mut blocks = parts(m.content, &content_param)?;
            blocks.extend(tool_uses(m.tool_calls, i)?);
            push(turns, "assistant", Vec::new(), blocks);
        }
        "tool" => {
            let id = m
                .tool_call_id
                .ok_or_else(|| invalid(&param, "a tool message needs `tool_call_id`"))?;
            let result = Block::ToolResult {
                tool_use_id: sanitize_id(&id, "toolu_missing"),
                content: tool_content(m.content, &content_param)?,
            };
            push(turns, "user", vec![result], Vec::new());
        }
        other => {
            return Err(invalid(
                &format!("{param}.role"),
                &format!("role `{other}` cannot be translated"),
            ));
        }
    }
    Ok(())
}

fn push(turns: &mut Vec<Turn>, role: &'static str, results: Vec<Block>, blocks: Vec<Block>) {
    if results.is_empty() && blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => {
            last.results.extend(results);
            last.blocks.extend(blocks);
        }
        _ => turns.push(Turn {
            role,
            results,
            blocks,
        }),
    }
}

/// The built conversation; a final assistant text loses its trailing
/// whitespace, which Anthropic refuses in a prefill.
pub(super) fn finish(turns: Vec<Turn>) -> Vec<Message> {
    let mut out: Vec<Message> = turns
        .into_iter()
        .map(|mut t| {
            t.results.append(&mut t.blocks);
            Message {
                role: t.role,
                content: t.results,
            }
        })
        .collect();
    if let Some(last) = out.last_mut().filter(|m| m.role == "assistant")
        && let Some(Block::Text { text }) = last.content.last_mut()
    {
        text.truncate(text.trim_end().len());
        if text.is_empty() {
            last.content.pop();
        }
        if last.content.is_empty() {
            out.pop();
        }
    }
    out
}

fn texts(blocks: Vec<Block>) -> Vec<String> {
    blocks
        .into_iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text),
            _ => None,
        })
        .collect()
}

/// A `content` (a string, parts, or null) as blocks, without blank texts.
fn parts(raw: Option<&RawValue>, param: &str) -> Result<Vec<Block>, TranslateError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(Vec::new());
    };
    let list: Vec<PartIn> = if starts_with(raw, '"') {
        let text: String = parse(raw, param)?;
        vec![PartIn {
            kind: "text".into(),
            text: Some(text),
            refusal: None,
            image_url: None,
            file: None,
        }]
    } else {
        parse(raw, param)?
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, p) in list.into_iter().enumerate() {
        if let Some(b) = part(p, &format!("{param}[{j}]"))? {
            out.push(b);
        }
    }
    Ok(out)
}

fn part(p: PartIn, param: &str) -> Result<Option<Block>, TranslateError> {
    let block = match p.kind.as_str() {
        "text" | "refusal" => {
            let text = p.text.or(p.refusal).unwrap_or_default();
            return Ok((!text.trim().is_empty()).then_some(Block::Text { text }));
        }
        "image_url" => {
            let url = p
                .image_url
                .ok_or_else(|| invalid(param, "needs `image_url`"))?
                .url;
            Block::Image {
                source: image_source(url, param)?,
            }
        }
        "file" => {
            let data = p.file.and_then(|f| f.file_data);
            let data = data.ok_or_else(|| {
                invalid(
                    param,
                    "only inline `file_data` can be sent on (not `file_id`)",
                )
            })?;
            Block::Document {
                source: pdf_source(data, param)?,
            }
        }
        other => {
            return Err(invalid(
                param,
                &format!("content parts of type `{other}` cannot be translated"),
            ));
        }
    };
    Ok(Some(block))
}

/// A `data:` URL as inline base64 data; any other URL is fetched by Anthropic.
fn image_source(url: String, param: &str) -> Result<Source, TranslateError> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Ok(Source::Url { url });
    };
    let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
    let media_type = meta
        .strip_suffix(";base64")
        .ok_or_else(|| invalid(param, "a `data:` URL must be base64"))?;
    Ok(Source::Base64 {
        media_type: media_type.to_owned(),
        data: data.to_owned(),
    })
}

/// OpenAI's `file_data` (a `data:` URL or bare base64) as a PDF document.
fn pdf_source(file_data: String, param: &str) -> Result<Source, TranslateError> {
    let Some(rest) = file_data.strip_prefix("data:") else {
        return Ok(Source::Base64 {
            media_type: "application/pdf".into(),
            data: file_data,
        });
    };
    match rest.split_once(',') {
        Some(("application/pdf;base64", data)) => Ok(Source::Base64 {
            media_type: "application/pdf".into(),
            data: data.to_owned(),
        }),
        _ => Err(invalid(param, "only base64 PDF files can be sent on")),
    }
}

/// A tool message's content: a string stays a string, parts become blocks.
fn tool_content(
    raw: Option<&RawValue>,
    param: &str,
) -> Result<Option<ToolContent>, TranslateError> {
    match raw {
        Some(r) if starts_with(r, '"') => {
            let text: String = parse(r, param)?;
            Ok((!text.is_empty()).then_some(ToolContent::Text(text)))
        }
        _ => {
            let blocks = parts(raw, param)?;
            Ok((!blocks.is_empty()).then_some(ToolContent::Blocks(blocks)))
        }
    }
}

/// An assistant's `tool_calls` as `tool_use` blocks.
fn tool_uses(raw: Option<&RawValue>, i: usize) -> Result<Vec<Block>, TranslateError> {
    let param = format!("messages[{i}].tool_calls");
    let calls: Vec<ToolCallIn> = typed(raw, &param)?.unwrap_or_default();
    let mut out = Vec::with_capacity(calls.len());
    for (k, call) in calls.into_iter().enumerate() {
        let param = format!("{param}[{k}]");
        if call.kind.as_deref().is_some_and(|t| t != "function") {
            return Err(invalid(
                &param,
                "only function tool calls can be translated",
            ));
        }
        let f = call
            .function
            .ok_or_else(|| invalid(&param, "needs `function`"))?;
        let input = match f.arguments {
            Some(a) if starts_with(a, '"') => arguments_to_input(&parse::<String>(a, &param)?),
            Some(a) => arguments_to_input(a.get()),
            None => arguments_to_input(""),
        };
        out.push(Block::ToolUse {
            id: sanitize_id(
                call.id.as_deref().unwrap_or_default(),
                &format!("toolu_{i}_{k}"),
            ),
            name: f.name.unwrap_or_default(),
            input,
        });
    }
    Ok(out)
}
