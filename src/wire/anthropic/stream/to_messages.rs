//! OpenAI chat completion chunks in, Anthropic stream events out: an
//! Anthropic client served by an OpenAI-style provider.
//!
//! OpenAI streams one flat `delta` per chunk; Anthropic streams numbered
//! content blocks, each opened, filled and closed in turn. So blocks are
//! opened lazily, on the first delta of a new kind (thinking, text, or a
//! new tool call), and the open one is closed first. A chunk may carry
//! several kinds at once (providers that fake streaming send text, tool
//! calls and `finish_reason` together); each part is handled in order.
//!
//! Usage arrives after `finish_reason`, in a chunk of its own (`choices:
//! []`), so the closing `message_delta` is held until that chunk, `[DONE]`
//! or the end of the stream, whichever comes first. `message_start` says
//! zero tokens; the real counts go in `message_delta`, whose values the
//! SDK takes over `message_start`'s.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::event;
use crate::usage::TokenUsage;
use crate::wire::anthropic::common::{
    OpenAiUsage, anthropic_usage_json, sanitize_id, stop_reason, with_tools,
};
use crate::wire::anthropic::error::stream_error_from_openai;

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The content block being filled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call: OpenAI's index for it, and its id as the provider sent
    /// it (empty if it sent none).
    Tool(u64, String),
}

/// One OpenAI stream being rewritten as an Anthropic stream.
#[derive(Debug)]
pub struct ChatToMessages {
    model: String,
    id: String,
    started: bool,
    open: Option<Open>,
    /// The next block's `index`: blocks opened so far.
    blocks: u64,
    last_tool: Option<u64>,
    saw_tool: bool,
    /// `finish_reason` seen (mapped); the closing events are held.
    stop: Option<&'static str>,
    usage: Option<TokenUsage>,
    done: bool,
    content_events: u64,
}

impl ChatToMessages {
    /// `model`: the name `message_start` reports.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            id: String::new(),
            started: false,
            open: None,
            blocks: 0,
            last_tool: None,
            saw_tool: false,
            stop: None,
            usage: None,
            done: false,
            content_events: 0,
        }
    }

    /// One upstream event's `data` (a chunk's JSON, or `[DONE]`).
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        if self.done {
            return Vec::new();
        }
        if data.trim_ascii() == b"[DONE]" {
            return self.finish();
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            return Vec::new(); // not a chunk: nothing to say
        };
        if chunk.error.is_some() {
            self.done = true;
            return vec![super::event_raw("error", &stream_error_from_openai(data))];
        }
        let mut out = Vec::new();
        self.start(chunk.id.as_deref(), &mut out);
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        let choices = chunk.choices.unwrap_or_default();
        let first = choices.iter().position(|c| c.index.unwrap_or(0) == 0);
        if let Some(choice) = first.map(|i| &choices[i])
            && self.stop.is_none()
        {
            if let Some(delta) = &choice.delta {
                self.delta(delta, &mut out);
            }
            if let Some(reason) = &choice.finish_reason {
                self.close(&mut out);
                self.stop = Some(stop_reason(Some(reason)));
            }
        }
        if self.stop.is_some() && choices.is_empty() && chunk.usage.is_some() {
            self.terminate(&mut out);
        }
        out
    }

    /// The upstream ended: the terminal events still owed, exactly once.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if !self.done {
            self.start(None, &mut out);
            self.terminate(&mut out);
        }
        out
    }

    /// The usage the upstream reported, if it did.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// Content deltas written so far (for an estimate without usage).
    pub fn content_events(&self) -> u64 {
        self.content_events
    }

    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let fallback = format!("router{}", crate::wire::anthropic::common::now_secs());
        self.id = format!(
            "msg_{}",
            sanitize_id(upstream_id.unwrap_or_default(), &fallback)
        );
        let message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        });
        out.push(event(
            "message_start",
            &json!({ "type": "message_start", "message": message }),
        ));
    }

    /// One delta's parts, in the order Anthropic puts blocks: thinking,
    /// text, tool calls.
    fn delta(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        let reasoning = d.reasoning_content.as_deref().or(d.reasoning.as_deref());
        self.text(Open::Thinking, reasoning.unwrap_or_default(), out);
        self.text(Open::Text, d.content.as_deref().unwrap_or_default(), out);
        for call in d.tool_calls.iter().flatten() {
            self.tool(call, out);
        }
    }

    fn text(&mut self, kind: Open, text: &str, out: &mut Vec<Bytes>) {
        if text.is_empty() {
            return;
        }
        let (block, delta) = match kind {
            Open::Thinking => (
                json!({ "type": "thinking", "thinking": "", "signature": "" }),
                json!({ "type": "thinking_delta", "thinking": text }),
            ),
            _ => (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": text }),
            ),
        };
        if self.open.as_ref() != Some(&kind) {
            self.open_block(kind, block, out);
        }
        self.emit_delta(delta, out);
    }

    /// A tool-call fragment: a new index (or a new id at the same index, as
    /// some providers send every call at index 0) opens a `tool_use` block;
    /// its arguments, even those in the first fragment, go out as
    /// `input_json_delta`s, never in the block's `input`.
    fn tool(&mut self, call: &ToolDelta, out: &mut Vec<Bytes>) {
        let name = call.function.as_ref().and_then(|f| f.name.as_deref());
        let id = call.id.as_deref().filter(|id| !id.is_empty());
        let starts = id.is_some() || name.is_some_and(|n| !n.is_empty());
        let index = call.index.unwrap_or(match self.last_tool {
            Some(last) if starts => last + 1,
            last => last.unwrap_or(0),
        });
        let same = match &self.open {
            Some(Open::Tool(i, open_id)) => {
                *i == index && (open_id.is_empty() || id.is_none_or(|id| id == open_id))
            }
            _ => false,
        };
        if !same {
            let fallback = format!(
                "toolu_{}_{}",
                self.id.trim_start_matches("msg_"),
                self.blocks
            );
            let block = json!({
                "type": "tool_use",
                "id": sanitize_id(id.unwrap_or_default(), &fallback),
                "name": name.unwrap_or_default(),
                "input": {},
            });
            let upstream_id = id.unwrap_or_default().to_owned();
            self.open_block(Open::Tool(index, upstream_id), block, out);
            self.last_tool = Some(index);
            self.saw_tool = true;
        }
        let arguments = call.function.as_ref().and_then(|f| f.arguments.as_deref());
        if let Some(partial) = arguments.filter(|a| !a.is_empty()) {
            self.emit_delta(
                json!({ "type": "input_json_delta", "partial_json": partial }),
                out,
            );
        }
    }

    fn open_block(&mut self, kind: Open, block: serde_json::Value, out: &mut Vec<Bytes>) {
        self.close(out);
        let start =
            json!({ "type": "content_block_start", "index": self.blocks, "content_block": block });
        out.push(event("content_block_start", &start));
        self.open = Some(kind);
        self.blocks += 1;
    }

    fn emit_delta(&mut self, delta: serde_json::Value, out: &mut Vec<Bytes>) {
        let index = self.blocks - 1;
        let e = json!({ "type": "content_block_delta", "index": index, "delta": delta });
        out.push(event("content_block_delta", &e));
        self.content_events += 1;
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.open.take().is_some() {
            let index = self.blocks - 1;
            out.push(event(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": index }),
            ));
        }
    }

    /// The closing events: any open block closed (an empty text block if
    /// there was none, which `finalText()` needs), `message_delta` with the
    /// stop reason and usage, `message_stop`.
    fn terminate(&mut self, out: &mut Vec<Bytes>) {
        self.close(out);
        if self.blocks == 0 {
            self.open_block(Open::Text, json!({ "type": "text", "text": "" }), out);
            self.close(out);
        }
        let reason = with_tools(self.stop.unwrap_or("end_turn"), self.saw_tool);
        let delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": reason, "stop_sequence": null },
            "usage": anthropic_usage_json(&self.usage.unwrap_or_default()),
        });
        out.push(event("message_delta", &delta));
        out.push(event("message_stop", &json!({ "type": "message_stop" })));
        self.done = true;
    }
}
