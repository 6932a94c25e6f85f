//! The conversation of an Anthropic request as OpenAI messages: the
//! system prompt, then each turn's blocks. Tool results become `role:
//! tool` messages ahead of their turn's other content; images and PDFs
//! become (data:) URLs; thinking is dropped.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::wire::anthropic::TranslateError;
use crate::wire::anthropic::common::{invalid, parse, starts_with};

#[derive(Serialize)]
pub(super) struct Message {
    role: &'static str,
    /// `None` is `null`: an assistant turn of tool calls only.
    content: Option<Content>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: Url },
    File { file: File },
}

#[derive(Serialize)]
struct Url {
    url: String,
}

#[derive(Serialize)]
struct File {
    file_data: String,
    filename: &'static str,
}

#[derive(Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Call,
}

#[derive(Serialize)]
struct Call {
    name: String,
    arguments: String,
}

/// One content block of a request, read.
enum Block<'a> {
    Text(String),
    /// An image or document, already in OpenAI's shape.
    Part(Part),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    /// `thinking` and `redacted_thinking`: signed replays only Anthropic reads.
    Dropped,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct TextBlock {
    text: String,
}

#[derive(Deserialize)]
struct SourceBlock<'a> {
    #[serde(borrow)]
    source: Source<'a>,
}

#[derive(Deserialize)]
struct Source<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolUse<'a> {
    id: String,
    name: String,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolResult<'a> {
    tool_use_id: String,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    is_error: Option<bool>,
}

#[derive(Deserialize)]
struct Turn<'a> {
    role: String,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// `system` (a string or text blocks) as a leading system message; blocks
/// are joined by blank lines, the most widely accepted shape.
pub(super) fn system(raw: Option<&RawValue>) -> Result<Vec<Message>, TranslateError> {
    let text = texts_only(blocks(raw, "system")?, "system")?.join("\n\n");
    Ok(if text.is_empty() {
        Vec::new()
    } else {
        vec![text_message("system", text)]
    })
}

/// The texts of blocks that may only be text.
fn texts_only(blocks: Vec<Block>, param: &str) -> Result<Vec<String>, TranslateError> {
    let mut texts = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            Block::Text(t) => texts.push(t),
            Block::Dropped => {}
            _ => {
                return Err(invalid(
                    &format!("{param}.{j}"),
                    "only text blocks are allowed here",
                ));
            }
        }
    }
    Ok(texts)
}

fn text_message(role: &'static str, text: String) -> Message {
    Message {
        role,
        content: Some(Content::Text(text)),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// One turn of `messages`, appended to `out` as OpenAI messages.
pub(super) fn turn(
    raw: &RawValue,
    param: &str,
    out: &mut Vec<Message>,
) -> Result<(), TranslateError> {
    let turn: Turn = parse(raw, param)?;
    let blocks = blocks(turn.content, &format!("{param}.content"))?;
    match turn.role.as_str() {
        "user" => user_turn(blocks, param, out),
        "assistant" => assistant_turn(blocks, param, out),
        "system" => {
            let text = texts_only(blocks, &format!("{param}.content"))?.join("\n\n");
            out.push(text_message("system", text));
            Ok(())
        }
        other => Err(invalid(
            &format!("{param}.role"),
            &format!("unknown role `{other}`"),
        )),
    }
}

/// Tool results first, as `role: tool` messages, then the rest as one user
/// message (a plain string when it is a single text).
fn user_turn(
    blocks: Vec<Block>,
    param: &str,
    out: &mut Vec<Message>,
) -> Result<(), TranslateError> {
    let mut moved = Vec::new();
    let mut parts = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text(text) => parts.push(Part::Text { text }),
            Block::Part(p) => parts.push(p),
            Block::ToolResult(r) => {
                let param = format!("{param}.content.{j}");
                out.push(tool_message(r, &param, &mut moved)?);
            }
            Block::ToolUse(_) => return Err(in_wrong_turn("tool_use", param, j, "a user")),
            Block::Dropped => {}
        }
    }
    moved.append(&mut parts);
    if !moved.is_empty() {
        out.push(Message {
            role: "user",
            content: Some(parts_content(moved)),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
    }
    Ok(())
}

fn parts_content(mut parts: Vec<Part>) -> Content {
    if let [Part::Text { text }] = parts.as_mut_slice() {
        return Content::Text(std::mem::take(text));
    }
    Content::Parts(parts)
}

/// A tool result's text (its images and documents go to `moved`), with
/// "Error: " before it when the tool failed, since OpenAI has no flag.
fn tool_message(
    r: ToolResult,
    param: &str,
    moved: &mut Vec<Part>,
) -> Result<Message, TranslateError> {
    let mut texts = Vec::new();
    for b in blocks(r.content, &format!("{param}.content"))? {
        match b {
            Block::Text(t) => texts.push(t),
            Block::Part(p) => moved.push(p),
            Block::Dropped => {}
            Block::ToolUse(_) | Block::ToolResult(_) => {
                return Err(invalid(
                    param,
                    "a tool result holds text, images and documents only",
                ));
            }
        }
    }
    let mut text = texts.join("\n");
    if r.is_error == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(Message {
        role: "tool",
        content: Some(Content::Text(text)),
        tool_calls: Vec::new(),
        tool_call_id: Some(r.tool_use_id),
    })
}

/// Text (joined, as the blocks of one answer are) and tool calls; nothing
/// when the turn held only thinking.
fn assistant_turn(
    blocks: Vec<Block>,
    param: &str,
    out: &mut Vec<Message>,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text(t) => text.push_str(&t),
            Block::ToolUse(u) => calls.push(ToolCall {
                id: u.id,
                kind: "function",
                function: Call {
                    name: u.name,
                    arguments: u.input.map_or("{}", RawValue::get).to_owned(),
                },
            }),
            Block::Part(_) => {
                return Err(in_wrong_turn("image or document", param, j, "an assistant"));
            }
            Block::ToolResult(_) => {
                return Err(in_wrong_turn("tool_result", param, j, "an assistant"));
            }
            Block::Dropped => {}
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    out.push(Message {
        role: "assistant",
        content: (!text.is_empty()).then_some(Content::Text(text)),
        tool_calls: calls,
        tool_call_id: None,
    });
    Ok(())
}

fn in_wrong_turn(what: &str, param: &str, j: usize, turn: &str) -> TranslateError {
    invalid(
        &format!("{param}.content.{j}"),
        &format!("a {what} block cannot be in {turn} turn"),
    )
}

/// A `content` (a string, blocks, or absent) read block by block.
fn blocks<'a>(raw: Option<&'a RawValue>, param: &str) -> Result<Vec<Block<'a>>, TranslateError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(Vec::new());
    };
    if starts_with(raw, '"') {
        return Ok(vec![Block::Text(parse(raw, param)?)]);
    }
    if !starts_with(raw, '[') {
        return Err(invalid(
            param,
            "must be a string or an array of content blocks",
        ));
    }
    let items: Vec<&RawValue> = parse(raw, param)?;
    items
        .into_iter()
        .enumerate()
        .map(|(j, item)| block(item, &format!("{param}.{j}")))
        .collect()
}

fn block<'a>(raw: &'a RawValue, param: &str) -> Result<Block<'a>, TranslateError> {
    let head: Head = parse(raw, param)?;
    Ok(match head.kind.as_str() {
        "text" => Block::Text(parse::<TextBlock>(raw, param)?.text),
        "image" => Block::Part(image(parse::<SourceBlock>(raw, param)?.source, param)?),
        "document" => Block::Part(document(parse::<SourceBlock>(raw, param)?.source, param)?),
        "tool_use" => Block::ToolUse(parse(raw, param)?),
        "tool_result" => Block::ToolResult(parse(raw, param)?),
        "thinking" | "redacted_thinking" => Block::Dropped,
        other => {
            let why = format!("content blocks of type `{other}` have no OpenAI equivalent");
            return Err(invalid(param, &why));
        }
    })
}

/// An image as `image_url`: inline data becomes a `data:` URL.
fn image(s: Source, param: &str) -> Result<Part, TranslateError> {
    let url = match s.kind.as_str() {
        "base64" => data_url(&s, "image/png", param)?,
        "url" => s
            .url
            .ok_or_else(|| invalid(param, "an image `url` source needs `url`"))?,
        other => return Err(unsupported_source(other, param)),
    };
    Ok(Part::ImageUrl {
        image_url: Url { url },
    })
}

/// A PDF as OpenAI's `file` part; a text document as text.
fn document(s: Source, param: &str) -> Result<Part, TranslateError> {
    match s.kind.as_str() {
        "base64" => Ok(Part::File {
            file: File {
                file_data: data_url(&s, "application/pdf", param)?,
                filename: "document.pdf",
            },
        }),
        "text" => Ok(Part::Text {
            text: s.data.unwrap_or_default(),
        }),
        "content" => {
            let param = format!("{param}.source.content");
            let text = texts_only(blocks(s.content, &param)?, &param)?.join("\n");
            Ok(Part::Text { text })
        }
        other => Err(unsupported_source(other, param)),
    }
}

fn data_url(s: &Source, default_type: &str, param: &str) -> Result<String, TranslateError> {
    let data = s
        .data
        .as_deref()
        .ok_or_else(|| invalid(param, "a base64 source needs `data`"))?;
    let media_type = s.media_type.as_deref().unwrap_or(default_type);
    Ok(format!("data:{media_type};base64,{data}"))
}

fn unsupported_source(kind: &str, param: &str) -> TranslateError {
    let why = format!("a `{kind}` source has no OpenAI equivalent (send the data inline)");
    invalid(&format!("{param}.source"), &why)
}
