//! Property tests: no input makes any function or state machine here
//! panic, and the streams they write keep the order the SDKs require
//! whatever the upstream sends.

use proptest::prelude::*;
use serde_json::Value;

use super::*;

mod streams;

/// Keys and strings the translators look at, so generated JSON reaches
/// deep into them rather than failing at the first member.
const WORDS: &[&str] = &[
    "type",
    "role",
    "content",
    "messages",
    "system",
    "text",
    "tool_use",
    "tool_result",
    "tool_calls",
    "tools",
    "tool_choice",
    "function",
    "arguments",
    "name",
    "id",
    "input",
    "input_schema",
    "parameters",
    "choices",
    "delta",
    "finish_reason",
    "usage",
    "error",
    "message",
    "index",
    "image",
    "image_url",
    "url",
    "source",
    "base64",
    "data",
    "document",
    "file",
    "file_data",
    "thinking",
    "reasoning_content",
    "stop_reason",
    "content_block",
    "partial_json",
    "input_json_delta",
    "text_delta",
    "thinking_delta",
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "user",
    "assistant",
    "tool",
    "developer",
    "auto",
    "any",
    "none",
    "required",
    "stop",
    "length",
    "n",
    "max_tokens",
    "stream",
    "metadata",
    "user_id",
    "tool_call_id",
    "tool_use_id",
    "is_error",
    "prompt_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "data:image/png;base64,AA",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[ -~é\n]{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arbitrary bytes, or JSON made of the words above.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::btree_map(word(), json_value(), 0..6)
            .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().collect())).unwrap()),
    ]
}

fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "",
                "ping",
                "error",
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z_]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    #[test]
    fn no_input_makes_a_function_panic(body in input(), status in any::<u16>(), default in any::<u64>()) {
        let _ = messages_to_chat(&body);
        let _ = chat_to_messages(&body, default, "p");
        let _ = chat_to_message(&body);
        let _ = message_to_chat(&body);
        let _ = message_usage(&body);
        let _ = response::usage_value(&body);
        let _ = error::error_type(status);
        for shaped in [error::from_openai(status, &body), error::to_openai(status, &body)] {
            prop_assert!(serde_json::from_slice::<Value>(&shaped).is_ok() || shaped == body);
        }
        // A wrapped translation of a whole body always parses back.
        if let Some(message) = chat_to_message(&body) {
            prop_assert!(serde_json::from_slice::<Value>(&message).is_ok());
        }
        if let Ok(chat) = messages_to_chat(&body) {
            prop_assert!(serde_json::from_slice::<Value>(&chat).is_ok());
        }
    }
}
