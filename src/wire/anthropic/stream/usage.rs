//! The usage of an Anthropic stream relayed unchanged (client and provider
//! both speak Anthropic): read from `message_start` and `message_delta`
//! without touching the bytes.
//!
//! Anthropic's stream counts are cumulative totals, not increments, and a
//! `message_delta` may repeat the input and cache counts (or leave them
//! null): the latest non-null value of each count wins, and nothing is
//! added. That is what the official SDK's `MessageStream` does too.

use crate::usage::TokenUsage;
use crate::wire::anthropic::common::AnthropicUsage;

/// What an Anthropic stream has reported of its usage so far.
#[derive(Debug, Default, Clone)]
pub struct MessageUsage {
    counts: AnthropicUsage,
    seen: bool,
}

impl MessageUsage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one event (`event` is its `event:` name, or empty); returns
    /// whether it carried content (a `content_block_delta`), for estimates.
    /// Only the two usage-bearing events are parsed.
    pub fn push(&mut self, event: &str, data: &[u8]) -> bool {
        match super::event_name(event, data) {
            "content_block_delta" => return true,
            "message_start" => {
                let usage = crate::payload::scan::top_level_value(data, "message")
                    .and_then(|m| crate::payload::scan::top_level_value(m, "usage"));
                self.read(usage);
            }
            "message_delta" => self.read(crate::payload::scan::top_level_value(data, "usage")),
            _ => {}
        }
        false
    }

    fn read(&mut self, raw: Option<&[u8]>) {
        if let Some(u) = raw.and_then(|r| {
            serde_json::from_slice::<Option<AnthropicUsage>>(r)
                .ok()
                .flatten()
        }) {
            self.update(u);
        }
    }

    pub(super) fn update(&mut self, later: AnthropicUsage) {
        self.counts.update(later);
        self.seen = true;
    }

    /// The final usage in OpenAI's terms (prompt = input + cache reads +
    /// cache writes; cached = cache reads); `None` before any report.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.seen.then(|| self.counts.tokens())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_and_the_latest_wins() {
        let mut u = MessageUsage::new();
        assert_eq!(u.usage(), None);
        assert!(!u.push(
            "message_start",
            br#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":377,"cache_creation_input_tokens":10,"cache_read_input_tokens":1000,"output_tokens":1}}}"#
        ));
        assert!(u.push("content_block_delta", br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#));
        assert!(!u.push("ping", br#"{"type": "ping"}"#));
        // Repeats the input counts, as current responses do: never added.
        u.push(
            "message_delta",
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":377,"cache_creation_input_tokens":10,"cache_read_input_tokens":1000,"output_tokens":30}}"#,
        );
        // A null leaves the earlier value; a later total replaces.
        u.push("", br#"{"type":"message_delta","delta":{},"usage":{"input_tokens":null,"output_tokens":65}}"#);
        let t = u.usage().unwrap();
        assert_eq!(t.prompt_tokens, 377 + 10 + 1000);
        assert_eq!(t.completion_tokens, 65);
        assert_eq!(t.total_tokens, 1387 + 65);
        assert_eq!(t.cached_prompt_tokens, 1000);
    }

    #[test]
    fn an_event_without_its_name_is_read_from_its_type() {
        let mut u = MessageUsage::new();
        assert!(u.push(
            "",
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#
        ));
        u.push(
            "",
            br#"{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        );
        assert_eq!(u.usage().unwrap().prompt_tokens, 5);
        u.push("", b"not json");
        assert_eq!(u.usage().unwrap().completion_tokens, 1);
    }
}
