//! The stream state machines fed arbitrary events: whatever arrives, what
//! they write keeps the order the SDKs require.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

use super::{event_name, input};
use crate::wire::anthropic::{ChatToMessages, MessageUsage, MessagesToChat};

fn maybe<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.4, s)
}

/// An OpenAI chunk as providers shape them, with every part optional.
fn chat_chunk() -> impl Strategy<Value = Vec<u8>> {
    let call = (
        maybe(0u64..3),
        maybe("[a-z:.]{0,4}"),
        maybe("[a-z]{0,3}"),
        maybe("[{}\":a-z0-9]{0,6}"),
    );
    let call = call.prop_map(|(index, id, name, arguments)| {
        serde_json::json!({ "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
    });
    let delta = (
        maybe("[a-z ]{0,4}"),
        maybe("[a-z ]{0,4}"),
        maybe(prop::collection::vec(call, 0..3)),
    );
    let finish = maybe(prop::sample::select(
        &["stop", "length", "tool_calls", "content_filter", "x"][..],
    ));
    let choice = (delta, finish, maybe(0u64..2)).prop_map(|((content, reasoning, calls), finish, index)| {
        serde_json::json!({ "index": index, "delta": { "content": content, "reasoning_content": reasoning, "tool_calls": calls }, "finish_reason": finish })
    });
    let usage = maybe((0u64..100, 0u64..100, 0u64..100)).prop_map(|u| {
        u.map(|(p, c, cached)| serde_json::json!({ "prompt_tokens": p, "completion_tokens": c, "prompt_tokens_details": { "cached_tokens": cached } }))
    });
    prop_oneof![
        12 => (prop::collection::vec(choice, 0..2), usage).prop_map(|(choices, usage)| {
            serde_json::to_vec(&serde_json::json!({ "id": "c", "choices": choices, "usage": usage })).unwrap()
        }),
        1 => Just(b"[DONE]".to_vec()),
        1 => Just(br#"{"error":{"message":"boom","code":"rate_limit_exceeded"}}"#.to_vec()),
        1 => input(),
    ]
}

/// An Anthropic event as the API shapes them, with odd indices and types.
fn anthropic_event() -> impl Strategy<Value = (String, Vec<u8>)> {
    let index = 0u64..4;
    let block = prop::sample::select(
        &[
            "text",
            "thinking",
            "tool_use",
            "redacted_thinking",
            "server_tool_use",
        ][..],
    );
    let delta = prop::sample::select(
        &[
            "text_delta",
            "thinking_delta",
            "input_json_delta",
            "signature_delta",
            "citations_delta",
        ][..],
    );
    let stop = prop::sample::select(
        &[
            "end_turn",
            "max_tokens",
            "tool_use",
            "refusal",
            "pause_turn",
        ][..],
    );
    prop_oneof![
        1 => Just(("message_start".to_owned(), br#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}"#.to_vec())),
        3 => (index.clone(), block).prop_map(|(i, kind)| ("content_block_start".to_owned(), serde_json::to_vec(&serde_json::json!({
            "type": "content_block_start", "index": i, "content_block": { "type": kind, "id": "t", "name": "f", "input": {}, "text": "", "thinking": "" } })).unwrap())),
        4 => (index.clone(), delta, "[a-z{}\":]{0,5}").prop_map(|(i, kind, text)| ("content_block_delta".to_owned(), serde_json::to_vec(&serde_json::json!({
            "type": "content_block_delta", "index": i, "delta": { "type": kind, "text": text, "thinking": text, "partial_json": text } })).unwrap())),
        1 => index.prop_map(|i| ("content_block_stop".to_owned(), format!(r#"{{"type":"content_block_stop","index":{i}}}"#).into_bytes())),
        1 => (maybe(stop), maybe(0u64..50)).prop_map(|(stop, out)| ("message_delta".to_owned(), serde_json::to_vec(&serde_json::json!({
            "type": "message_delta", "delta": { "stop_reason": stop }, "usage": { "output_tokens": out } })).unwrap())),
        1 => Just(("message_stop".to_owned(), br#"{"type":"message_stop"}"#.to_vec())),
        1 => Just(("ping".to_owned(), br#"{"type":"ping"}"#.to_vec())),
        1 => Just(("error".to_owned(), br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_vec())),
        1 => (event_name(), input()),
    ]
}

/// Checks an Anthropic stream against the SDK's rules: `message_start`
/// first, blocks numbered 0, 1, … each started before its deltas and
/// stopped once, and `message_delta` + `message_stop` last, or an error
/// last.
fn check_anthropic(out: &[Bytes], finished: bool) -> Result<(), TestCaseError> {
    let mut events = Vec::new();
    for e in out {
        let text = std::str::from_utf8(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let body = text
            .strip_suffix("\n\n")
            .ok_or_else(|| TestCaseError::fail("framing"))?;
        let (name, data) = body
            .split_once("\ndata: ")
            .ok_or_else(|| TestCaseError::fail("framing"))?;
        let name = name
            .strip_prefix("event: ")
            .ok_or_else(|| TestCaseError::fail("framing"))?;
        prop_assert!(!data.contains('\n'));
        let data: Value =
            serde_json::from_str(data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&data["type"], name);
        events.push((name.to_owned(), data));
    }
    let errored = events.last().is_some_and(|(n, _)| n == "error");
    if errored {
        events.pop();
        prop_assert!(events.iter().all(|(n, _)| n != "message_stop"));
    } else if finished {
        let last = events.pop().map(|e| e.0);
        prop_assert_eq!(last.as_deref(), Some("message_stop"));
        let before = events.pop().map(|e| e.0);
        prop_assert_eq!(before.as_deref(), Some("message_delta"));
    }
    if events.is_empty() {
        return Ok(());
    }
    prop_assert_eq!(events[0].0.as_str(), "message_start");
    let (mut next, mut open) = (0u64, None);
    for (name, data) in &events[1..] {
        match name.as_str() {
            "content_block_start" => {
                prop_assert_eq!(open, None);
                prop_assert_eq!(data["index"].as_u64(), Some(next));
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => prop_assert_eq!(data["index"].as_u64(), open),
            "content_block_stop" => {
                prop_assert_eq!(data["index"].as_u64(), open);
                open = None;
            }
            other => prop_assert!(false, "unexpected {} mid-stream", other),
        }
    }
    if finished && !errored {
        prop_assert_eq!(open, None);
        prop_assert!(next > 0, "at least one block");
    }
    Ok(())
}

/// Checks an OpenAI stream: `data:` frames of JSON, the role first, one
/// `finish_reason`, `[DONE]` last (or an error last).
fn check_openai(out: &[Bytes], finished: bool) -> Result<(), TestCaseError> {
    let mut chunks = Vec::new();
    for e in out {
        let text = std::str::from_utf8(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let data = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"));
        let data = data.ok_or_else(|| TestCaseError::fail("framing"))?;
        prop_assert!(!data.contains('\n'));
        chunks.push(data.to_owned());
    }
    let errored = chunks.last().is_some_and(|c| c.starts_with("{\"error\""));
    let done = chunks.iter().filter(|c| *c == "[DONE]").count();
    prop_assert_eq!(done, usize::from(finished && !errored));
    if done == 1 {
        prop_assert_eq!(chunks.last().map(String::as_str), Some("[DONE]"));
    }
    let parsed: Vec<Value> = chunks
        .iter()
        .filter(|c| *c != "[DONE]")
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    if let Some(first) = parsed.first().filter(|c| c.get("error").is_none()) {
        prop_assert_eq!(&first["choices"][0]["delta"]["role"], "assistant");
    }
    let finishes = parsed
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    prop_assert!(finishes <= 1);
    if finished && !errored {
        prop_assert_eq!(finishes, 1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(8), ..ProptestConfig::default() })]

    #[test]
    fn any_chunks_make_a_well_ordered_anthropic_stream(chunks in prop::collection::vec(chat_chunk(), 0..16), done in any::<bool>()) {
        let mut t = ChatToMessages::new("m");
        let mut out = Vec::new();
        for c in &chunks {
            out.extend(t.push(c));
        }
        if done {
            out.extend(t.push(b"[DONE]"));
        }
        out.extend(t.finish());
        check_anthropic(&out, true)?;
        prop_assert!(t.finish().is_empty() && t.push(b"[DONE]").is_empty());
        let _ = (t.usage(), t.content_events());
    }

    #[test]
    fn any_events_make_a_well_ordered_openai_stream(
        events in prop::collection::vec(anthropic_event(), 0..16),
        include_usage in any::<bool>(),
    ) {
        let mut t = MessagesToChat::new(include_usage);
        let mut usage = MessageUsage::new();
        let mut out = Vec::new();
        for (name, data) in &events {
            out.extend(t.push(name, data));
            usage.push(name, data);
        }
        out.extend(t.finish());
        check_openai(&out, true)?;
        prop_assert!(t.finish().is_empty());
        let _ = (t.usage(), t.content_events(), usage.usage());
    }
}

/// Realistic streams cut at every point still end properly.
#[test]
fn a_stream_cut_anywhere_is_still_well_ordered() {
    let chunks: Vec<&[u8]> = vec![
        br#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        br#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#,
        br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        br#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
        br#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
        br#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        b"[DONE]",
    ];
    for cut in 0..=chunks.len() {
        let mut t = ChatToMessages::new("m");
        let mut out: Vec<Bytes> = chunks[..cut].iter().flat_map(|c| t.push(c)).collect();
        out.extend(t.finish());
        check_anthropic(&out, true).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
    }
}
