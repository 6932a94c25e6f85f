//! Small pieces both directions share: reading JSON a field at a time,
//! the stop-reason table, ids Anthropic accepts, and the two usage shapes.
//!
//! Requests are read one member at a time (as borrowed [`RawValue`]s) so a
//! wrong type is reported with the member's name, and so the values the
//! router only carries (tool schemas, tool inputs, the model name) are
//! copied byte for byte: `serde_json::Value` would sort their keys.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::TranslateError;
use crate::usage::TokenUsage;

/// The raw JSON of an empty object, for tool inputs and schemas.
pub(super) fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// Whether the first non-blank byte opens an object.
pub(super) fn is_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// `raw` as a `T`, `None` when absent or `null`; a wrong type is a
/// [`TranslateError`] naming `param`.
pub(super) fn typed<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    param: &str,
) -> Result<Option<T>, TranslateError> {
    match raw {
        None => Ok(None),
        Some(r) if r.get() == "null" => Ok(None),
        Some(r) => serde_json::from_str(r.get())
            .map(Some)
            .map_err(|e| wrong_json(param, &e)),
    }
}

/// A request member of the wrong shape.
pub(super) fn invalid(param: &str, why: &str) -> TranslateError {
    TranslateError {
        param: param.to_owned(),
        message: format!("`{param}`: {why}"),
    }
}

/// A serde error on a member, without serde's position (which would count
/// from the member's start, not the body's).
pub(super) fn wrong_json(param: &str, e: &serde_json::Error) -> TranslateError {
    let text = e.to_string();
    let why = text.split(" at line ").next().unwrap_or(&text);
    invalid(param, why)
}

/// `raw` as a `T`; a wrong shape is a [`TranslateError`] naming `param`.
pub(super) fn parse<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    param: &str,
) -> Result<T, TranslateError> {
    serde_json::from_str(raw.get()).map_err(|e| wrong_json(param, &e))
}

/// Reads the whole body as a `T` (a struct of borrowed members).
pub(super) fn read_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, TranslateError> {
    if !is_object(body) {
        return Err(invalid("body", "the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| invalid("body", &format!("not valid JSON: {e}")))
}

/// Whether a JSON value's raw text is a string, an array or an object.
pub(super) fn starts_with(raw: &RawValue, c: char) -> bool {
    raw.get().starts_with(c)
}

/// An id Anthropic accepts (`^[a-zA-Z0-9_-]+$`): other characters become
/// `_`; an empty id becomes `fallback`. OpenAI-compatible providers send
/// ids such as `functions.Bash:0`, which Anthropic refuses.
pub(super) fn sanitize_id(id: &str, fallback: &str) -> String {
    if id.is_empty() {
        return fallback.to_owned();
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Tool-call arguments (a JSON text) as a tool input, which must be an
/// object: empty arguments are `{}`, anything that is not an object is
/// kept as text in `{"_raw_arguments": …}` so the model can see it.
pub(super) fn arguments_to_input(arguments: &str) -> Box<RawValue> {
    let text = arguments.trim();
    if text.is_empty() {
        return empty_object();
    }
    if text.starts_with('{')
        && let Ok(raw) = serde_json::from_str::<Box<RawValue>>(text)
    {
        return raw;
    }
    let wrapped = serde_json::json!({ "_raw_arguments": arguments });
    serde_json::value::to_raw_value(&wrapped).unwrap_or_else(|_| empty_object())
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`.
pub(super) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// A stop reason for an answer that made tool calls: `tool_use`, even when
/// the provider said `stop` (some do), but a cut (`max_tokens`) or a
/// refusal stays what it is.
pub(super) fn with_tools(stop_reason: &'static str, has_tools: bool) -> &'static str {
    if has_tools && stop_reason == "end_turn" {
        "tool_use"
    } else {
        stop_reason
    }
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
pub(super) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Seconds since the Unix epoch, for OpenAI's `created`.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's `usage` object (prompt counts include cached ones).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct OpenAiUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

impl From<OpenAiUsage> for TokenUsage {
    fn from(u: OpenAiUsage) -> Self {
        let prompt = u.prompt_tokens.unwrap_or(0);
        let completion = u.completion_tokens.unwrap_or(0);
        let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: u.total_tokens.unwrap_or(prompt + completion),
            cached_prompt_tokens: cached.unwrap_or(0).min(prompt),
        }
    }
}

/// Anthropic's `usage` object; every count may be absent or `null`.
/// `input_tokens` excludes cache reads and writes.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(super) struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Cumulative counts: a later report's non-null values replace ours.
    pub fn update(&mut self, later: AnthropicUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    /// In OpenAI's terms: the prompt counts every input token.
    pub fn tokens(&self) -> TokenUsage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let prompt =
            self.input_tokens.unwrap_or(0) + read + self.cache_creation_input_tokens.unwrap_or(0);
        let completion = self.output_tokens.unwrap_or(0);
        TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_prompt_tokens: read,
        }
    }
}

/// OpenAI's `usage` member for a [`TokenUsage`].
pub(super) fn openai_usage_json(u: &TokenUsage) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_prompt_tokens },
    })
}

/// Anthropic's `usage` member for a [`TokenUsage`] (cache writes are not
/// reported by OpenAI-style providers, so they count as plain input).
pub(super) fn anthropic_usage_json(u: &TokenUsage) -> serde_json::Value {
    let cached = u.cached_prompt_tokens.min(u.prompt_tokens);
    serde_json::json!({
        "input_tokens": u.prompt_tokens - cached,
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_acceptable_to_anthropic() {
        assert_eq!(sanitize_id("functions.Bash:0", "x"), "functions_Bash_0");
        assert_eq!(sanitize_id("call_AbC-09", "x"), "call_AbC-09");
        assert_eq!(sanitize_id("", "toolu_1"), "toolu_1");
        assert_eq!(sanitize_id("é", "x"), "_");
    }

    #[test]
    fn arguments_become_an_object_input() {
        assert_eq!(
            arguments_to_input(r#" {"a": [1, 2]} "#).get(),
            r#"{"a": [1, 2]}"#
        );
        assert_eq!(arguments_to_input("").get(), "{}");
        assert_eq!(arguments_to_input("  ").get(), "{}");
        let v: serde_json::Value =
            serde_json::from_str(arguments_to_input("{\"a\":").get()).unwrap();
        assert_eq!(v, serde_json::json!({"_raw_arguments": "{\"a\":"}));
        let v: serde_json::Value = serde_json::from_str(arguments_to_input("[1]").get()).unwrap();
        assert_eq!(v, serde_json::json!({"_raw_arguments": "[1]"}));
    }

    #[test]
    fn stop_and_finish_reasons_map_both_ways() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("function_call")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish, "{stop}");
        }
    }

    #[test]
    fn anthropic_usage_is_cumulative_and_counts_every_input_token() {
        let mut u = AnthropicUsage {
            input_tokens: Some(10),
            output_tokens: Some(1),
            cache_read_input_tokens: Some(100),
            cache_creation_input_tokens: Some(5),
        };
        u.update(AnthropicUsage {
            output_tokens: Some(40),
            ..Default::default()
        });
        let t = u.tokens();
        assert_eq!(
            (
                t.prompt_tokens,
                t.completion_tokens,
                t.total_tokens,
                t.cached_prompt_tokens
            ),
            (115, 40, 155, 100)
        );
    }
}
