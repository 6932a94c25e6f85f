//! Token estimates for upstreams that report no usage.
//!
//! Some OpenAI-compatible servers send no `usage`, even when asked. Then
//! the router counts tokens itself with tiktoken's `o200k_base` encoding
//! (GPT-4o's): the prompt from the request's text fields, the completion
//! from the response's text. Only that path pays for it: the encoder loads
//! on first use, and requests with reported usage never touch it.

use serde_json::Value;

use super::TokenUsage;

fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// Text a client sent: message contents, `prompt`, or Responses `input`.
fn prompt_text(body: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    for key in ["messages", "prompt", "input", "instructions"] {
        collect_text(&v[key], out);
    }
}

/// Strings under content-like fields, recursively (parts, items). Prompt
/// parts are separate texts (joined by newlines); completion deltas are
/// pieces of one text (joined as they are).
fn collect_text(v: &Value, out: &mut String) {
    collect(v, out, Some('\n'));
}

fn collect(v: &Value, out: &mut String, sep: Option<char>) {
    let collect_text = |v: &Value, out: &mut String| collect(v, out, sep);
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.extend(sep);
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(map) => {
            for key in ["content", "text", "delta", "arguments"] {
                if let Some(inner) = map.get(key) {
                    collect_text(inner, out);
                }
            }
            if let Some(Value::Object(call)) =
                map.get("function_call").or_else(|| map.get("function"))
                && let Some(args) = call.get("arguments")
            {
                collect_text(args, out);
            }
            if let Some(calls) = map.get("tool_calls") {
                collect_text(calls, out);
            }
        }
        _ => {}
    }
}

/// Completion text in a response body or stream chunk, appended to `out`:
/// choices' messages, deltas and texts, the Responses API's output and
/// deltas, and Anthropic's content blocks and their deltas.
pub fn completion_text(data: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        for c in choices {
            for key in ["message", "delta", "text"] {
                collect(&c[key], out, None);
            }
        }
    }
    if v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with(".delta"))
    {
        collect(&v["delta"], out, None);
    }
    collect(&v["output"], out, None);
    match v.get("type").and_then(Value::as_str) {
        // Anthropic: a whole message, or a stream's deltas.
        Some("message") => collect(&v["content"], out, None),
        Some("content_block_delta") => {
            let delta = &v["delta"];
            for key in ["text", "partial_json", "thinking"] {
                if let Some(s) = delta[key].as_str() {
                    out.push_str(s);
                }
            }
        }
        _ => {}
    }
}

/// Estimates usage from the request body and the response's text, which is
/// either one JSON body or the data of each stream event.
pub fn estimate(request: &[u8], response_parts: &[bytes::Bytes]) -> TokenUsage {
    let mut prompt = String::new();
    prompt_text(request, &mut prompt);
    let mut completion = String::new();
    for part in response_parts {
        completion_text(part, &mut completion);
    }
    let (p, c) = (count(&prompt), count(&completion));
    TokenUsage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
        cached_prompt_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn counts_chat_prompts_and_streamed_deltas() {
        let request = br#"{"model":"m","messages":[{"role":"user","content":"Hello world"},{"role":"user","content":[{"type":"text","text":"Hello world"}]}]}"#;
        let parts = [
            Bytes::from_static(br#"{"choices":[{"delta":{"content":"Hello"}}]}"#),
            Bytes::from_static(br#"{"choices":[{"delta":{"content":" world"}}]}"#),
        ];
        let u = estimate(request, &parts);
        assert_eq!(u.completion_tokens, 2, "{u:?}");
        assert_eq!(u.prompt_tokens, 2 * count("Hello world\n"));
        assert_eq!(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    }

    #[test]
    fn counts_whole_bodies_and_responses_api_events() {
        let body = Bytes::from_static(
            br#"{"choices":[{"message":{"role":"assistant","content":"The answer is 42."}}]}"#,
        );
        assert!(estimate(b"{}", &[body]).completion_tokens >= 5);
        let ev = Bytes::from_static(br#"{"type":"response.output_text.delta","delta":"Hi there"}"#);
        assert_eq!(
            estimate(br#"{"input":"Say hi"}"#, &[ev]).completion_tokens,
            count("Hi there")
        );
    }

    #[test]
    fn reads_anthropic_messages_and_their_deltas() {
        let mut out = String::new();
        completion_text(
            br#"{"type":"message","role":"assistant","content":[{"type":"text","text":"Hi"},{"type":"tool_use","input":{}}]}"#,
            &mut out,
        );
        for data in [
            &br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#[..],
            br#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
        ] {
            completion_text(data, &mut out);
        }
        assert_eq!(out, "Hi there{\"a\":1}");
    }
}
