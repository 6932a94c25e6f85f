//! One answer of the mock's Messages API, as data: `anthropic` builds it
//! and sends it as JSON ([`Answer::message`]); `messages_stream` sends the
//! same answer as events.

use serde_json::{Value, json};

/// A tool call in the answer.
pub(super) struct ToolCall {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) input: Value,
}

/// One answer, for its JSON and its events.
pub(super) struct Answer {
    pub(super) id: String,
    pub(super) model: String,
    /// The text block's pieces; no text block if empty.
    pub(super) words: Vec<String>,
    pub(super) tool: Option<ToolCall>,
    pub(super) stop_reason: &'static str,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
}

impl Answer {
    pub(super) fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        })
    }

    pub(super) fn message(&self) -> Value {
        let mut content = Vec::new();
        if !self.words.is_empty() {
            content.push(json!({"type": "text", "text": self.words.concat()}));
        }
        if let Some(tool) = &self.tool {
            let block =
                json!({"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.input});
            content.push(block);
        }
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": self.stop_reason, "stop_sequence": null,
            "usage": self.usage(),
        })
    }
}
