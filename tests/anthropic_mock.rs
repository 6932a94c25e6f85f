//! The mock Anthropic provider (`tests/common/anthropic.rs`) checked
//! against Anthropic's documented shapes with a plain HTTP client, and, when
//! `tests/sdk/node_modules` is installed, against the official Anthropic SDK
//! through `tests/sdk/run.mjs`.

mod common;

use std::time::Duration;

use common::anthropic::*;
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test-1";

fn post(up: &AnthropicUpstream, path: &str, body: &Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("http://{}{path}", up.addr))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

fn hello() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello"}]})
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

/// (event name, data) of each SSE event, in order; checks that every
/// event has an `event:` line naming its data's `type`.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

fn names(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(n, _)| n.as_str()).collect()
}

async fn error_of(r: reqwest::Response) -> (u16, String, Value) {
    let status = r.status().as_u16();
    let rid = r.headers()["request-id"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["request_id"], rid.as_str());
    (status, v["error"]["type"].as_str().unwrap().to_string(), v)
}

#[tokio::test]
async fn json_answer_shape_usage_and_recording() {
    let up = AnthropicUpstream::start().await;
    let r = post(&up, "/v1/messages?beta=true", &hello())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": expected_text(5)}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(v["usage"]["cache_read_input_tokens"], CACHE_READ_TOKENS);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["output_tokens"], 5);

    let rec = up.requests();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].path, "/v1/messages");
    assert_eq!(rec[0].query.as_deref(), Some("beta=true"));
    assert_eq!(rec[0].key, KEY);
    assert_eq!(rec[0].auth_via(), "x-api-key");
    assert_eq!(rec[0].body["max_tokens"], 64);
    assert_eq!(up.count_by_key()[KEY], 1);
    up.clear();
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn auth_and_required_fields() {
    let up = AnthropicUpstream::start().await;
    let url = format!("http://{}/v1/messages", up.addr);
    let c = reqwest::Client::new();

    // Bearer is accepted like x-api-key.
    let r = c
        .post(&url)
        .bearer_auth("tok-1")
        .header("anthropic-version", "2023-06-01")
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[0].key, "tok-1");
    assert_eq!(up.requests()[0].auth_via(), "bearer");

    let r = c
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&hello())
        .send()
        .await
        .unwrap();
    let (status, ty, _) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (401, "authentication_error"));

    let r = c
        .post(&url)
        .header("x-api-key", KEY)
        .json(&hello())
        .send()
        .await
        .unwrap();
    let (status, ty, v) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (400, "invalid_request_error"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let bad = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream_options": {}}),
            "stream_options: Extra inputs",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}),
            "role",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}),
            "non-empty content",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]}),
            "temperature",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "stop_sequences": [" "], "messages": [{"role": "user", "content": "hi"}]}),
            "stop_sequences",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": "and?"}]}),
            "without `tool_result`",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}]}]}),
            "unexpected `tool_use_id`",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "functions.f:0", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "functions.f:0"}]}]}),
            "pattern",
        ),
        (
            json!({"model": "m", "max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 2000},
            "tools": weather_tool(), "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "hi"}]}),
            "forces tool use",
        ),
    ];
    for (body, needle) in bad {
        let r = post(&up, "/v1/messages", &body).send().await.unwrap();
        let (status, ty, v) = error_of(r).await;
        assert_eq!(
            (status, ty.as_str()),
            (400, "invalid_request_error"),
            "{body}"
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }

    // Consecutive same-role turns are merged before tool pairing is checked.
    let ok = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me look."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "x"}]},
        {"role": "user", "content": "thanks"}]});
    let r = post(&up, "/v1/messages", &ok).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn stream_event_order_text() {
    let up = AnthropicUpstream::start().await;
    up.stream_shape(3, Duration::ZERO);
    let mut body = hello();
    body["stream"] = json!(true);
    let r = post(&up, "/v1/messages", &body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().contains_key("request-id"));
    let ev = events(&r.text().await.unwrap());
    assert_eq!(
        names(&ev),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &ev[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(start["usage"]["cache_read_input_tokens"], CACHE_READ_TOKENS);
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, expected_text(3));
    let delta = &ev[7].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["usage"]["input_tokens"], INPUT_TOKENS);

    // max_tokens below the text length stops with max_tokens.
    let mut body = hello();
    body["max_tokens"] = json!(2);
    let v: Value = post(&up, "/v1/messages", &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["content"][0]["text"], "w0 w1 ");
    // A stop sequence cuts the text there.
    let mut body = hello();
    body["stop_sequences"] = json!(["w1"]);
    let v: Value = post(&up, "/v1/messages", &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "w1");
    assert_eq!(v["content"][0]["text"], "w0 ");
}

#[tokio::test]
async fn tools_and_thinking() {
    let up = AnthropicUpstream::start().await;
    up.stream_shape(2, Duration::ZERO);
    // Forced tool use: one tool_use block, streamed in fragments.
    let mut body = hello();
    body["tools"] = weather_tool();
    body["tool_choice"] = json!({"type": "any"});
    let v: Value = post(&up, "/v1/messages", &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"].as_array().unwrap().len(), 1);
    assert_eq!(v["content"][0]["type"], "tool_use");
    assert_eq!(v["content"][0]["name"], "get_weather");
    assert!(
        v["content"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    assert_eq!(v["content"][0]["input"], json!({"city": "Paris"}));
    assert_eq!(v["usage"]["output_tokens"], TOOL_INPUT_FRAGMENTS.len());

    body["stream"] = json!(true);
    let ev = events(
        &post(&up, "/v1/messages", &body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let start = ev.iter().find(|(n, _)| n == "content_block_start").unwrap();
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let partial: Vec<&str> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(partial, TOOL_INPUT_FRAGMENTS);
    assert_eq!(partial.concat(), TOOL_INPUT);
    let md = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(md.1["delta"]["stop_reason"], "tool_use");

    // auto: text first (index 0), then the tool (index 1).
    let mut body = hello();
    body["tools"] = weather_tool();
    body["stream"] = json!(true);
    let ev = events(
        &post(&up, "/v1/messages", &body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let starts: Vec<(u64, String)> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| {
            (
                d["index"].as_u64().unwrap(),
                d["content_block"]["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(starts, [(0, "text".into()), (1, "tool_use".into())]);

    // Thinking comes first, with thinking and signature deltas.
    let mut body = hello();
    body["max_tokens"] = json!(4096);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let v: Value = post(&up, "/v1/messages", &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], THINKING_FRAGMENTS.concat());
    assert_eq!(v["content"][0]["signature"], SIGNATURE);
    assert_eq!(v["content"][1]["type"], "text");
    body["stream"] = json!(true);
    let ev = events(
        &post(&up, "/v1/messages", &body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let kinds: Vec<&str> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "thinking_delta",
            "thinking_delta",
            "signature_delta",
            "text_delta",
            "text_delta"
        ]
    );
}

#[tokio::test]
async fn error_behaviours() {
    let up = AnthropicUpstream::start().await;
    up.set(
        KEY,
        AnthropicBehavior::RateLimited {
            retry_after_secs: 7,
        },
    );
    let r = post(&up, "/v1/messages", &hello()).send().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "7");
    let reset = r.headers()["anthropic-ratelimit-requests-reset"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(humantime::parse_rfc3339(&reset).is_ok(), "{reset}");
    let (status, ty, _) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (429, "rate_limit_error"));

    up.set(KEY, AnthropicBehavior::Overloaded);
    let r = post(&up, "/v1/messages", &hello()).send().await.unwrap();
    let (status, ty, _) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (529, "overloaded_error"));

    up.set(
        KEY,
        AnthropicBehavior::error(404, "not_found_error", "model: nope"),
    );
    let r = post(&up, "/v1/messages", &hello()).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");

    // Streams: drop, mid-stream error event, stall.
    let mut body = hello();
    body["stream"] = json!(true);
    up.set(KEY, AnthropicBehavior::DropAfter(2));
    let r = post(&up, "/v1/messages", &body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "the connection should break");

    up.set(KEY, AnthropicBehavior::ErrorAfter(1));
    let text = post(&up, "/v1/messages", &body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ev = events(&text);
    let last = ev.last().unwrap();
    assert_eq!(last.0, "error");
    assert_eq!(last.1["error"]["type"], "overloaded_error");
    assert_eq!(
        names(&ev)
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count(),
        1
    );

    up.set(KEY, AnthropicBehavior::StallAfter(0));
    let mut r = post(&up, "/v1/messages", &body).send().await.unwrap();
    let mut got = String::new();
    let stalled = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(c) = r.chunk().await.unwrap() {
            got.push_str(std::str::from_utf8(&c).unwrap());
        }
    })
    .await;
    assert!(stalled.is_err(), "the stream should stall");
    assert!(got.contains("content_block_start") && !got.contains("content_block_delta"));

    up.set(KEY, AnthropicBehavior::Hang);
    let hung = tokio::time::timeout(
        Duration::from_millis(200),
        post(&up, "/v1/messages", &hello()).send(),
    )
    .await;
    assert!(hung.is_err());
}

#[tokio::test]
async fn count_tokens_and_models() {
    let up = AnthropicUpstream::start().await;
    let r = post(
        &up,
        "/v1/messages/count_tokens?beta=true",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"input_tokens": COUNT_TOKENS}));
    // count_tokens takes no max_tokens.
    let r = post(&up, "/v1/messages/count_tokens", &hello())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let c = reqwest::Client::new();
    let get = |q: &str| {
        c.get(format!("http://{}/v1/models{q}", up.addr))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .send()
    };
    let v: Value = get("?beta=true").await.unwrap().json().await.unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"].as_array().unwrap().len(), DEFAULT_MODELS.len());
    let m = &v["data"][0];
    assert_eq!(m["type"], "model");
    assert_eq!(m["id"], DEFAULT_MODELS[0].0);
    assert_eq!(m["display_name"], DEFAULT_MODELS[0].1);
    assert!(humantime::parse_rfc3339(m["created_at"].as_str().unwrap()).is_ok());
    assert_eq!(v["first_id"], DEFAULT_MODELS[0].0);
    assert_eq!(v["last_id"], DEFAULT_MODELS[2].0);

    let v: Value = get("?limit=2").await.unwrap().json().await.unwrap();
    assert_eq!(v["has_more"], true);
    let after = v["last_id"].as_str().unwrap();
    let v: Value = get(&format!("?limit=2&after_id={after}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["id"], DEFAULT_MODELS[2].0);

    let r = get("/claude-opus-4-1-20250805").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/nope").await.unwrap();
    let (status, ty, _) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (404, "not_found_error"));

    // The models list needs the same headers.
    let r = c
        .get(format!("http://{}/v1/models", up.addr))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown paths: Anthropic's 404.
    let r = post(&up, "/v1/chat/completions", &hello())
        .send()
        .await
        .unwrap();
    let (status, ty, _) = error_of(r).await;
    assert_eq!((status, ty.as_str()), (404, "not_found_error"));
}

// ------------------------------------------------------------ official SDK

fn sdk(scenario: &str, base_url: &str, key: &str, tool_choice: &str) -> Option<Value> {
    common::sdk::run(
        scenario,
        base_url,
        key,
        "claude-sonnet-4-5",
        &[("TOOL_CHOICE", tool_choice)],
    )
}

/// The official Anthropic SDK reads the mock's answers (the mock is the
/// reference the router's translations are tested against, so it must be
/// right by the real client's standards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_accepts_the_mock() {
    let up = AnthropicUpstream::start().await;
    let origin = up.origin();
    let run = |scenario: &'static str, key: &'static str, tool_choice: &'static str| {
        let origin = origin.clone();
        tokio::task::spawn_blocking(move || sdk(scenario, &origin, key, tool_choice))
    };
    up.set("midstream", AnthropicBehavior::ErrorAfter(2));
    up.set(
        "limited",
        AnthropicBehavior::RateLimited {
            retry_after_secs: 1,
        },
    );
    let (m, s, t, ta, e, me, l, x) = tokio::join!(
        run("anthropic-messages", "tok", ""),
        run("anthropic-stream", "tok", ""),
        run("anthropic-tools", "tok", ""),
        run("anthropic-tools", "tok", "auto"),
        run("anthropic-error", "limited", ""),
        run("anthropic-stream", "midstream", ""),
        run("anthropic-models", "tok", ""),
        run("anthropic-x-api-key", "key", ""),
    );
    let Some(m) = m.unwrap() else {
        eprintln!("skipped: run `npm ci` in tests/sdk to check the mock with the official SDK");
        return;
    };
    let [s, t, ta, e, me, l, x] = [s, t, ta, e, me, l, x].map(|v| v.unwrap().unwrap());
    for v in [&m, &s, &t, &ta, &e, &me, &l, &x] {
        eprintln!("{v}");
    }
    assert_eq!(m["ok"], true, "{m}");
    assert_eq!(m["text"], expected_text(5));
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(m["usage"]["cache_read_input_tokens"], CACHE_READ_TOKENS);
    assert_eq!(m["auth"], "bearer");
    assert!(m["request_id"].as_str().unwrap().starts_with("req_"));

    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["text"], expected_text(5));
    assert_eq!(s["stop_reason"], "end_turn");
    assert_eq!(s["usage"]["output_tokens"], 5);
    assert_eq!(s["usage"]["input_tokens"], INPUT_TOKENS);
    assert!(s["events"].as_u64().unwrap() >= 9, "{s}");

    assert_eq!(t["ok"], true, "{t}");
    for r in [&t, &t["stream"]] {
        assert_eq!(r["stop_reason"], "tool_use", "{t}");
        assert_eq!(r["tool_use"][0]["name"], "get_weather");
        assert_eq!(r["tool_use"][0]["input"], json!({"city": "Paris"}));
    }

    // tool_choice auto: a text block first, the tool second.
    assert_eq!(ta["ok"], true, "{ta}");
    for r in [&ta, &ta["stream"]] {
        assert_eq!(r["content_types"], json!(["text", "tool_use"]), "{ta}");
        assert_eq!(r["tool_use"][0]["input"], json!({"city": "Paris"}));
    }

    // A mid-stream error event: the SDK's plain APIError without a status.
    assert_eq!(me["ok"], false, "{me}");
    assert_eq!(me["error_class"], "APIError");
    assert_eq!(me["status"], Value::Null);
    assert_eq!(me["error_type"], "overloaded_error");

    assert_eq!(e["ok"], false, "{e}");
    assert_eq!(e["error_class"], "RateLimitError");
    assert_eq!(e["status"], 429);
    assert_eq!(e["error_type"], "rate_limit_error");

    let ids: Vec<&str> = DEFAULT_MODELS.iter().map(|m| m.0).collect();
    assert_eq!(l["ids"], json!(ids), "{l}");

    assert_eq!(x["ok"], true, "{x}");
    assert_eq!(x["auth"], "x-api-key");
    let keys: Vec<(String, &str)> = up
        .messages_requests()
        .iter()
        .filter(|r| r.key == "key")
        .map(|r| (r.key.clone(), r.auth_via()))
        .collect();
    assert_eq!(keys, [("key".to_string(), "x-api-key")]);
}
