//! Anthropic stream events in, OpenAI chat completion chunks out: an
//! OpenAI client served by an Anthropic provider.
//!
//! Anthropic numbers content blocks; OpenAI numbers tool calls only, so a
//! `tool_use` block is the k-th tool call whatever its block index. The
//! stop reason arrives in `message_delta` and becomes the `finish_reason`
//! chunk; the usage (cumulative, see [`MessageUsage`]) goes in a last
//! `choices: []` chunk when the client asked for it
//! (`stream_options.include_usage`), just before `[DONE]`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{MessageUsage, data_raw, event_name};
use crate::usage::TokenUsage;
use crate::wire::anthropic::common::{AnthropicUsage, finish_reason, now_secs, openai_usage_json};
use crate::wire::anthropic::error::stream_error_to_openai;

#[derive(Deserialize)]
struct Start {
    message: StartMessage,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct BlockStart {
    index: u64,
    content_block: Block,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct BlockDelta {
    index: u64,
    delta: DeltaIn,
}

#[derive(Deserialize)]
struct DeltaIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: Option<StopDelta>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct StopDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    delta: Value,
    finish_reason: Option<&'static str>,
}

/// One Anthropic stream being rewritten as an OpenAI stream.
#[derive(Debug)]
pub struct MessagesToChat {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// Anthropic block index → OpenAI tool-call index, for `tool_use` blocks.
    tools: Vec<(u64, u64)>,
    finished: bool,
    usage: MessageUsage,
    done: bool,
    content_events: u64,
}

impl MessagesToChat {
    /// `include_usage`: whether the client asked for the usage chunk.
    pub fn new(include_usage: bool) -> Self {
        Self {
            include_usage,
            id: "chatcmpl-".to_owned(),
            model: String::new(),
            created: now_secs(),
            started: false,
            tools: Vec::new(),
            finished: false,
            usage: MessageUsage::default(),
            done: false,
            content_events: 0,
        }
    }

    /// One upstream event: its `event:` name (empty if it had none) and data.
    pub fn push(&mut self, event: &str, data: &[u8]) -> Vec<Bytes> {
        if self.done {
            return Vec::new();
        }
        let mut out = Vec::new();
        match event_name(event, data) {
            "message_start" => {
                if let Ok(s) = serde_json::from_slice::<Start>(data) {
                    self.message_start(s.message, &mut out);
                }
            }
            "content_block_start" => {
                if let Ok(s) = serde_json::from_slice::<BlockStart>(data) {
                    self.block_start(s, &mut out);
                }
            }
            "content_block_delta" => {
                if let Ok(d) = serde_json::from_slice::<BlockDelta>(data) {
                    self.block_delta(d, &mut out);
                }
            }
            "message_delta" => {
                if let Ok(d) = serde_json::from_slice::<MessageDelta>(data) {
                    self.message_delta(d, &mut out);
                }
            }
            "message_stop" => self.terminate(&mut out),
            "error" => {
                self.done = true;
                out.push(data_raw(&stream_error_to_openai(data)));
            }
            _ => {} // ping, content_block_stop, and events added later
        }
        out
    }

    /// The upstream ended: whatever is still owed (a `finish_reason`, the
    /// usage chunk, `[DONE]`), exactly once.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if !self.done {
            self.terminate(&mut out);
        }
        out
    }

    /// The usage the upstream reported, if it did.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage.usage()
    }

    /// Content deltas written so far (for an estimate without usage).
    pub fn content_events(&self) -> u64 {
        self.content_events
    }

    fn message_start(&mut self, m: StartMessage, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.id = format!("chatcmpl-{}", m.id.unwrap_or_default());
        self.model = m.model.unwrap_or_default();
        if let Some(u) = m.usage {
            self.usage.update(u);
        }
        self.start(out);
    }

    /// The first chunk: the role, which openai-node requires.
    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({ "role": "assistant", "content": "" }), None));
        }
    }

    fn block_start(&mut self, s: BlockStart, out: &mut Vec<Bytes>) {
        self.start(out);
        let b = s.content_block;
        match b.kind.as_str() {
            "tool_use" => {
                let k = self.tools.len() as u64;
                self.tools.push((s.index, k));
                let call = json!({
                    "index": k,
                    "id": b.id.unwrap_or_default(),
                    "type": "function",
                    "function": { "name": b.name.unwrap_or_default(), "arguments": "" },
                });
                out.push(self.chunk(json!({ "tool_calls": [call] }), None));
            }
            "text" => self.content("content", b.text, out),
            "thinking" => self.content("reasoning_content", b.thinking, out),
            _ => {}
        }
    }

    fn block_delta(&mut self, d: BlockDelta, out: &mut Vec<Bytes>) {
        self.start(out);
        let delta = d.delta;
        match delta.kind.as_str() {
            "text_delta" => self.content("content", delta.text, out),
            "thinking_delta" => self.content("reasoning_content", delta.thinking, out),
            "input_json_delta" => {
                let k = self
                    .tools
                    .iter()
                    .find(|(index, _)| *index == d.index)
                    .map(|(_, k)| *k);
                let partial = delta.partial_json.filter(|p| !p.is_empty());
                if let (Some(k), Some(partial)) = (k, partial) {
                    let call = json!({ "index": k, "function": { "arguments": partial } });
                    out.push(self.chunk(json!({ "tool_calls": [call] }), None));
                    self.content_events += 1;
                }
            }
            _ => {} // signature_delta, citations_delta
        }
    }

    fn content(&mut self, key: &str, text: Option<String>, out: &mut Vec<Bytes>) {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            out.push(self.chunk(json!({ key: text }), None));
            self.content_events += 1;
        }
    }

    fn message_delta(&mut self, d: MessageDelta, out: &mut Vec<Bytes>) {
        self.start(out);
        if let Some(u) = d.usage {
            self.usage.update(u);
        }
        let reason = d.delta.and_then(|d| d.stop_reason);
        if let Some(reason) = reason
            && !self.finished
        {
            self.finished = true;
            out.push(self.chunk(json!({}), Some(finish_reason(&reason))));
        }
    }

    /// `finish_reason` if none was sent yet, the usage chunk if asked for,
    /// then `[DONE]`.
    fn terminate(&mut self, out: &mut Vec<Bytes>) {
        self.start(out);
        if !self.finished {
            self.finished = true;
            out.push(self.chunk(json!({}), Some("stop")));
        }
        if self.include_usage {
            let usage = self.usage.usage().unwrap_or_default();
            let chunk = Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(openai_usage_json(&usage)),
            };
            out.push(data_raw(&serde_json::to_vec(&chunk).unwrap_or_default()));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }

    fn chunk(&self, delta: Value, finish: Option<&'static str>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChoiceOut {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
        };
        data_raw(&serde_json::to_vec(&chunk).unwrap_or_default())
    }
}
