//! Property tests: conversations of arbitrary text, tool calls and tool
//! results survive a translation and its reverse, in both orders.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{chat_to_messages, messages_to_chat};

/// Non-empty text with no trailing whitespace (Anthropic refuses blank
/// blocks, and a final assistant text loses its trailing whitespace).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?'\"\\\\{}é😀\n\t]{0,24}[a-zA-Z0-9é😀.]"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~é😀\n]{0,12}".prop_map(Value::from),
    ]
}

/// A tool input: an object of arbitrary JSON.
fn input() -> impl Strategy<Value = Value> {
    let value = leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-zA-Z_]{1,8}", value, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn tool_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,15}"
}

/// One generated exchange: assistant texts and tool calls (name, input),
/// then the user's texts and, for each call, (result texts, as blocks?, is_error).
#[derive(Debug, Clone)]
struct Exchange {
    assistant_texts: Vec<String>,
    calls: Vec<(String, Value)>,
    results: Vec<(Vec<String>, bool, bool)>,
    user_texts: Vec<String>,
    /// Where each result goes among the user's blocks (they may come in any order).
    order: Vec<usize>,
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        prop::collection::vec(text(), 0..3),
        prop::collection::vec((tool_name(), input()), 0..4),
        prop::collection::vec(text(), 0..3),
    )
        .prop_filter("an assistant turn is not empty", |(texts, calls, _)| {
            !texts.is_empty() || !calls.is_empty()
        })
        .prop_filter("a user turn is not empty", |(_, calls, user)| {
            !calls.is_empty() || !user.is_empty()
        })
        .prop_flat_map(|(assistant_texts, calls, user_texts)| {
            let n = calls.len();
            let results = prop::collection::vec(
                (
                    prop::collection::vec(text(), 0..3),
                    any::<bool>(),
                    any::<bool>(),
                ),
                n..=n,
            );
            let order: Vec<usize> = (0..n + user_texts.len()).collect();
            (
                Just(assistant_texts),
                Just(calls),
                results,
                Just(user_texts),
                Just(order).prop_shuffle(),
            )
        })
        .prop_map(
            |(assistant_texts, calls, results, user_texts, order)| Exchange {
                assistant_texts,
                calls,
                results,
                user_texts,
                order,
            },
        )
}

/// The items a conversation is compared on.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    Call(String, String, Value),
    Result(String, String),
}

type Conversation = Vec<(String, Vec<Item>)>;

/// An Anthropic request, and the conversation expected back: a turn's
/// texts joined for the assistant (OpenAI has one content), results first
/// for the user, "Error: " on failed results.
fn anthropic_request(
    system: &[String],
    first: &[String],
    exchanges: &[Exchange],
) -> (Value, Conversation) {
    let mut messages = vec![
        json!({ "role": "user", "content": first.iter().map(|t| json!({ "type": "text", "text": t })).collect::<Vec<_>>() }),
    ];
    let mut expected = vec![(
        "user".to_owned(),
        first.iter().cloned().map(Item::Text).collect(),
    )];
    for (x, e) in exchanges.iter().enumerate() {
        let ids: Vec<String> = (0..e.calls.len())
            .map(|k| format!("toolu_{x}_{k}"))
            .collect();
        let mut blocks: Vec<Value> = e
            .assistant_texts
            .iter()
            .map(|t| json!({ "type": "text", "text": t }))
            .collect();
        let mut items = Vec::new();
        let joined = e.assistant_texts.concat();
        if !joined.is_empty() {
            items.push(Item::Text(joined));
        }
        for ((name, input), id) in e.calls.iter().zip(&ids) {
            blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
            items.push(Item::Call(id.clone(), name.clone(), input.clone()));
        }
        messages.push(json!({ "role": "assistant", "content": blocks }));
        expected.push(("assistant".to_owned(), items));
        let mut user: Vec<Value> = Vec::new();
        let mut items = Vec::new();
        for ((texts, as_blocks, is_error), id) in e.results.iter().zip(&ids) {
            let content = if *as_blocks {
                json!(
                    texts
                        .iter()
                        .map(|t| json!({ "type": "text", "text": t }))
                        .collect::<Vec<_>>()
                )
            } else {
                json!(texts.concat())
            };
            user.push(json!({ "type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error }));
            let text = if *as_blocks {
                texts.join("\n")
            } else {
                texts.concat()
            };
            let prefix = if *is_error { "Error: " } else { "" };
            items.push(Item::Result(id.clone(), format!("{prefix}{text}")));
        }
        for t in &e.user_texts {
            user.push(json!({ "type": "text", "text": t }));
            items.push(Item::Text(t.clone()));
        }
        let shuffled: Vec<Value> = e.order.iter().map(|&i| user[i].clone()).collect();
        messages.push(json!({ "role": "user", "content": shuffled }));
        // Results lead, each group in the order the client sent it.
        let (results, texts): (Vec<Item>, Vec<Item>) = e
            .order
            .iter()
            .map(|&i| items[i].clone())
            .partition(|i| matches!(i, Item::Result(..)));
        expected.push((
            "user".to_owned(),
            results.into_iter().chain(texts).collect(),
        ));
    }
    let system: Vec<Value> = system
        .iter()
        .map(|t| json!({ "type": "text", "text": t, "cache_control": { "type": "ephemeral" } }))
        .collect();
    let request =
        json!({ "model": "m", "max_tokens": 100, "system": system, "messages": messages });
    (request, expected)
}

/// The conversation of an Anthropic request.
fn anthropic_conversation(request: &Value) -> Conversation {
    let flat = |content: &Value| match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| b["text"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let items = m["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| match b["type"].as_str().unwrap() {
                    "text" => Item::Text(b["text"].as_str().unwrap().to_owned()),
                    "tool_use" => Item::Call(
                        b["id"].as_str().unwrap().to_owned(),
                        b["name"].as_str().unwrap().to_owned(),
                        b["input"].clone(),
                    ),
                    "tool_result" => Item::Result(
                        b["tool_use_id"].as_str().unwrap().to_owned(),
                        flat(&b["content"]),
                    ),
                    other => panic!("unexpected block {other}"),
                })
                .collect();
            (m["role"].as_str().unwrap().to_owned(), items)
        })
        .collect()
}

/// An OpenAI request (system messages, then exchanges in which every tool
/// call is answered), and the messages expected back.
fn openai_request(
    system: &[String],
    first: &[String],
    exchanges: &[Exchange],
) -> (Value, Vec<Value>) {
    let mut messages: Vec<Value> = system
        .iter()
        .map(|s| json!({ "role": "system", "content": s }))
        .collect();
    let mut expected = Vec::new();
    if !system.is_empty() {
        expected.push(json!({ "role": "system", "texts": [system.join("\n\n")] }));
    }
    let parts = |texts: &[String]| {
        json!(
            texts
                .iter()
                .map(|t| json!({ "type": "text", "text": t }))
                .collect::<Vec<_>>()
        )
    };
    messages.push(json!({ "role": "user", "content": parts(first) }));
    expected.push(json!({ "role": "user", "texts": first }));
    for (x, e) in exchanges.iter().enumerate() {
        let ids: Vec<String> = (0..e.calls.len())
            .map(|k| format!("call_{x}_{k}"))
            .collect();
        let text = e.assistant_texts.first().cloned();
        let calls: Vec<Value> = e.calls.iter().zip(&ids).map(|((name, input), id)| {
            json!({ "id": id, "type": "function", "function": { "name": name, "arguments": input.to_string() } })
        }).collect();
        let mut assistant =
            json!({ "role": "assistant", "content": text, "reasoning_content": "dropped" });
        if !calls.is_empty() {
            assistant["tool_calls"] = json!(calls);
        }
        messages.push(assistant);
        let expected_calls: Vec<Value> = e
            .calls
            .iter()
            .zip(&ids)
            .map(|((name, input), id)| json!([id, name, input]))
            .collect();
        expected.push(json!({ "role": "assistant", "texts": text.into_iter().collect::<Vec<_>>(), "calls": expected_calls }));
        for ((texts, _, _), id) in e.results.iter().zip(&ids) {
            let content = texts.concat();
            messages.push(json!({ "role": "tool", "tool_call_id": id, "content": content }));
            expected.push(json!({ "role": "tool", "texts": [content], "id": id }));
        }
        if !e.user_texts.is_empty() {
            messages.push(json!({ "role": "user", "content": parts(&e.user_texts) }));
            expected.push(json!({ "role": "user", "texts": e.user_texts }));
        } else if e.calls.is_empty() {
            unreachable!("the strategy gives a user turn texts when there are no calls");
        }
    }
    (
        json!({ "model": "m", "messages": messages, "max_tokens": 100 }),
        expected,
    )
}

/// An OpenAI request's messages in the shape `openai_request` expects.
fn openai_conversation(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let texts: Vec<Value> = match &m["content"] {
                Value::String(s) => vec![json!(s)],
                Value::Array(parts) => parts.iter().map(|p| p["text"].clone()).collect(),
                _ => Vec::new(),
            };
            let mut out = json!({ "role": m["role"], "texts": texts });
            if let Some(calls) = m.get("tool_calls") {
                let calls: Vec<Value> = calls
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let args: Value =
                            serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
                                .unwrap();
                        json!([c["id"], c["function"]["name"], args])
                    })
                    .collect();
                out["calls"] = json!(calls);
            } else if m["role"] == "assistant" {
                out["calls"] = json!([]);
            }
            if let Some(id) = m.get("tool_call_id") {
                out["id"] = id.clone();
            }
            out
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(41), ..ProptestConfig::default() })]

    #[test]
    fn anthropic_conversations_survive_the_round_trip(
        system in prop::collection::vec(text(), 0..3),
        first in prop::collection::vec(text(), 1..3),
        exchanges in prop::collection::vec(exchange(), 0..4),
    ) {
        let (request, expected) = anthropic_request(&system, &first, &exchanges);
        let chat = messages_to_chat(&serde_json::to_vec(&request).unwrap()).unwrap();
        let back: Value = serde_json::from_slice(&chat_to_messages(&chat, 1, "p").unwrap()).unwrap();
        prop_assert_eq!(anthropic_conversation(&back), expected);
        let system = system.join("\n\n");
        prop_assert_eq!(back.get("system").and_then(Value::as_str).unwrap_or_default(), system.as_str());
    }

    #[test]
    fn openai_conversations_survive_the_round_trip(
        system in prop::collection::vec(text(), 0..3),
        first in prop::collection::vec(text(), 1..3),
        exchanges in prop::collection::vec(exchange(), 0..4),
    ) {
        let (request, expected) = openai_request(&system, &first, &exchanges);
        let anthropic = chat_to_messages(&serde_json::to_vec(&request).unwrap(), 1, "p").unwrap();
        let back: Value = serde_json::from_slice(&messages_to_chat(&anthropic).unwrap()).unwrap();
        prop_assert_eq!(openai_conversation(&back), expected);
    }
}
