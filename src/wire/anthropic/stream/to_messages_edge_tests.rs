//! `ChatToMessages` at the edges: terminal events owed exactly once,
//! late content, upstream errors, and providers' quirks.

use serde_json::{Value, json};

use super::ChatToMessages;
use super::to_messages_tests::{arguments, chunk, events, names, run, tool, usage_chunk};

#[test]
fn the_terminal_events_come_exactly_once() {
    let mut t = ChatToMessages::new("m");
    t.push(&serde_json::to_vec(&chunk(json!({ "content": "x" }), json!("stop"))).unwrap());
    let end = events(&t.push(&serde_json::to_vec(&usage_chunk()).unwrap()));
    assert_eq!(names(&end), ["message_delta", "message_stop"]);
    assert!(t.push(b"[DONE]").is_empty());
    assert!(
        t.push(&serde_json::to_vec(&chunk(json!({ "content": "late" }), Value::Null)).unwrap())
            .is_empty()
    );
    assert!(t.finish().is_empty());
    // An upstream that just stops: finish closes the open block.
    let mut t = ChatToMessages::new("m");
    t.push(&serde_json::to_vec(&chunk(json!({ "content": "cut" }), Value::Null)).unwrap());
    assert_eq!(
        names(&events(&t.finish())),
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(t.finish().is_empty() && t.push(b"[DONE]").is_empty());
}

#[test]
fn content_after_the_finish_reason_is_dropped_but_usage_is_read() {
    let mut late_usage = chunk(json!({ "content": "extra" }), Value::Null);
    late_usage["usage"] = json!({ "prompt_tokens": 3, "completion_tokens": 4 });
    let (t, ev) = run(
        &[chunk(json!({ "content": "a" }), json!("stop")), late_usage],
        true,
    );
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[4].1["usage"]["input_tokens"], 3);
    assert_eq!(t.usage().unwrap().total_tokens, 7);
}

#[test]
fn an_upstream_error_is_the_last_event() {
    let mut t = ChatToMessages::new("m");
    let mut out =
        t.push(&serde_json::to_vec(&chunk(json!({ "content": "par" }), Value::Null)).unwrap());
    out.extend(t.push(br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#));
    let ev = events(&out);
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        ev[3].1,
        json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "Rate limit reached" } })
    );
    assert!(t.push(b"[DONE]").is_empty() && t.finish().is_empty());
}

#[test]
fn providers_quirks_are_tolerated() {
    // Azure: a first chunk with empty choices and no id; every tool call at index 0.
    let azure = json!({ "id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": [] });
    let (_, ev) = run(
        &[
            azure,
            tool(0, Some("call_1"), Some("a"), "{}"),
            tool(0, Some("call_2"), Some("b"), "{\"x\":1}"),
            json!({ "choices": [{ "delta": { "tool_calls": [{ "id": "call_3", "function": { "name": "c", "arguments": "{}" } }] } }] }),
            json!({ "choices": [{ "delta": { "tool_calls": [{ "function": { "arguments": "" } }] }, "finish_reason": "stop" }] }),
        ],
        false,
    );
    assert!(
        ev[0].1["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_router")
    );
    let starts: Vec<&Value> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, e)| &e["content_block"])
        .collect();
    let ids: Vec<&str> = starts.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["call_1", "call_2", "call_3"]);
    assert_eq!(arguments(&ev, 1), r#"{"x":1}"#);
    assert_eq!(ev.last().unwrap().0, "message_stop");
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");
    // Junk between chunks is ignored.
    let mut t = ChatToMessages::new("m");
    assert!(t.push(b"not json").is_empty());
    assert!(t.push(b": comment").is_empty());
    assert_eq!(
        names(&events(&t.push(b" [DONE] "))),
        [
            "message_start",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}
