//! Anthropic's Messages API through the router, both ways: `/v1/messages`
//! passed through to Anthropic providers and translated for OpenAI ones,
//! and `/v1/chat/completions` translated for Anthropic providers; Azure's
//! URLs and key header too. Against real mock providers on loopback.

mod common;

use std::time::{Duration, Instant};

use common::anthropic::*;
use common::raw::RawUpstream;
use common::*;
use serde_json::{Value, json};

/// A router whose group `g` has `providers` (name, type, base_url, keys).
fn router_over(
    providers: &[(&str, &str, &str, &[&str])],
    models: &[(i64, &str, &str)],
    extra: &str,
) -> RouterProcess {
    let mut cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: admin-key-anthropic\n{extra}\ngroups:\n  - name: g\n    models:\n"
    );
    for (w, p, m) in models {
        cfg.push_str(&format!(
            "      - {{weight: {w}, provider: {p}, name: {m:?}}}\n"
        ));
    }
    cfg.push_str("aliases: {claude-sonnet-4-5: g}\nproviders:\n");
    for (name, kind, url, keys) in providers {
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        cfg.push_str(&format!(
            "  - {{name: {name}, type: {kind}, base_url: {url:?}, api_keys: [{}]}}\n",
            keys.join(", ")
        ));
    }
    RouterProcess::start(&cfg)
}

/// A POST to the router's `/v1/messages`, the key as the current SDKs send
/// it (`Authorization: Bearer`).
async fn messages(
    router: &RouterProcess,
    body: &Value,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client()
        .post(router.url("/v1/messages"))
        .bearer_auth(CLIENT_KEY)
        .header("anthropic-version", "2023-06-01");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.json(body).send().await.unwrap()
}

/// A request like a coding agent's: three system blocks with cache
/// control, 24 tools with large schemas, adaptive thinking, context
/// management, output config, metadata, a tool round trip, streaming.
fn agent_request(stream: bool) -> Value {
    let tools: Vec<Value> = (0..24)
        .map(|i| {
            json!({
                "name": format!("tool_{i}"),
                "description": format!("Tool number {i}, which does something useful with files and shells."),
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "An absolute path"},
                        "options": {"type": "object", "properties": {
                            "recursive": {"type": "boolean"},
                            "depth": {"type": "integer", "minimum": 0, "maximum": 10},
                            "patterns": {"type": "array", "items": {"type": "string"}}
                        }, "additionalProperties": false}
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }
            })
        })
        .collect();
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": stream,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc123_account_def456_session_789"},
        "system": [
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Follow the repository's conventions."},
            {"type": "text", "text": "Today is 2026-12-01.", "cache_control": {"type": "ephemeral"}}
        ],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List the files in /work."}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll look."},
                {"type": "tool_use", "id": "toolu_01abc", "name": "tool_3", "input": {"path": "/work"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01abc", "content": "a.rs\nb.rs"},
                {"type": "text", "text": "Now summarize."}
            ]}
        ]
    })
}

const BETAS: &str = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27";

/// The `event:` names of an Anthropic SSE text, in order.
fn event_names(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn a_coding_agents_request_passes_through_to_anthropic_byte_for_byte_but_model() {
    let up = AnthropicUpstream::start().await;
    up.stream_shape(5, Duration::from_millis(60));
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["sk-ant-1"])],
        &[(1, "claude", "claude-sonnet-4-5-20250929")],
        "",
    );
    let request = agent_request(true);
    let sent = serde_json::to_vec(&request).unwrap();
    let r = client()
        .post(router.url("/v1/messages?beta=true"))
        .bearer_auth(CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETAS)
        .header("content-type", "application/json")
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert!(r.headers().contains_key("request-id"));
    // Events arrive as the provider sends them, not all at the end.
    let timed = read_timed(r).await;
    assert!(timed.len() >= 5, "{} chunks", timed.len());
    let spread = timed.last().unwrap().0 - timed.first().unwrap().0;
    assert!(
        spread >= Duration::from_millis(150),
        "events came in one burst ({spread:?})"
    );
    let text: String = timed
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    let names = event_names(&text);
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(names.contains(&"ping".to_string()), "{names:?}");

    let got = &up.messages_requests()[0];
    assert_eq!(
        got.query.as_deref(),
        Some("beta=true"),
        "the query string reaches the provider"
    );
    let expected = String::from_utf8(sent).unwrap().replacen(
        "\"model\":\"claude-sonnet-4-5\"",
        "\"model\":\"claude-sonnet-4-5-20250929\"",
        1,
    );
    assert_eq!(
        String::from_utf8_lossy(&got.raw),
        expected,
        "only model changes"
    );
    assert_eq!(got.key, "sk-ant-1");
    assert_eq!(got.auth_via(), "x-api-key");
    assert!(
        !got.headers.contains_key("authorization"),
        "the client's key stays behind"
    );
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    assert_eq!(got.headers["anthropic-beta"], BETAS);

    let logs = router.wait_request_logs(1).await;
    let line = &logs[0];
    assert_eq!(line["endpoint"], "messages");
    assert_eq!(line["provider"], "claude");
    assert_eq!(line["prompt_tokens"], INPUT_TOKENS + CACHE_READ_TOKENS);
    // As the provider's last message_delta counts them (thinking included).
    let reported: Value = text
        .split("\n\n")
        .filter(|e| e.starts_with("event: message_delta"))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .last()
        .unwrap();
    assert_eq!(
        line["completion_tokens"],
        reported["usage"]["output_tokens"]
    );
    assert!(names.contains(&"content_block_delta".to_string()));
    assert_eq!(line["usage_estimated"], false);
}

#[tokio::test]
async fn a_coding_agents_request_is_translated_for_an_openai_provider() {
    let up = MockUpstream::start().await;
    up.stream_shape(4, Duration::from_millis(30));
    let router = router_over(
        &[("oai", "openai", &up.base_url(), &["sk-oai"])],
        &[(1, "oai", "gpt-5")],
        "",
    );
    // Streaming.
    let r = messages(&router, &agent_request(true), &[("anthropic-beta", BETAS)]).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let names = event_names(&text);
    assert_eq!(names[0], "message_start");
    assert_eq!(names[1], "content_block_start");
    assert!(
        names.iter().filter(|n| *n == "content_block_delta").count() >= 4,
        "{names:?}"
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(!text.contains("[DONE]"));
    let delta: Value = text
        .split("\n\n")
        .find(|e| e.starts_with("event: message_delta"))
        .and_then(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 5);

    let got = &up.requests()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.key, "sk-oai");
    let b = &got.body;
    assert_eq!(b["model"], "gpt-5");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert_eq!(b["max_completion_tokens"], 32000);
    assert_eq!(b["user"], "user_abc123_account_def456_session_789");
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert!(msgs[0].to_string().contains("You are a coding agent."));
    assert!(
        msgs.iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "toolu_01abc")
    );
    let call = msgs.iter().find(|m| m["tool_calls"].is_array()).unwrap();
    assert_eq!(call["tool_calls"][0]["function"]["name"], "tool_3");
    assert_eq!(
        serde_json::from_str::<Value>(
            call["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        json!({"path": "/work"})
    );
    assert_eq!(b["tools"].as_array().unwrap().len(), 24);
    assert_eq!(b["tools"][5]["function"]["name"], "tool_5");
    assert_eq!(
        b["tools"][5]["function"]["parameters"]["required"],
        json!(["path"])
    );
    for dropped in [
        "thinking",
        "context_management",
        "output_config",
        "system",
        "metadata",
    ] {
        assert!(
            b.get(dropped).is_none(),
            "{dropped} reached an OpenAI provider"
        );
    }
    assert!(
        !got.headers.contains_key("anthropic-beta")
            && !got.headers.contains_key("anthropic-version")
    );

    // Not streaming: one Message.
    let r = messages(&router, &agent_request(false), &[]).await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["content"][0]["type"], "text");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], 11);
    assert_eq!(m["usage"]["output_tokens"], 5);
    let logs = router.wait_request_logs(2).await;
    assert!(logs.iter().all(|l| l["total_tokens"] == 16), "{logs:?}");
}

#[tokio::test]
async fn chat_completions_are_translated_for_an_anthropic_provider() {
    let up = AnthropicUpstream::start().await;
    up.stream_shape(3, Duration::from_millis(20));
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["sk-ant"])],
        &[(1, "claude", "claude-haiku")],
        "",
    );
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let body = json!({
        "model": "g",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
        ],
        "tools": tools,
        "tool_choice": "required",
        "stop": ["END"],
        "temperature": 0.5,
        "user": "u-1",
        "seed": 7,
        "logprobs": false
    });
    let r = chat(&router, body.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["usage"]["prompt_tokens"],
        INPUT_TOKENS + CACHE_READ_TOKENS
    );
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHE_READ_TOKENS
    );

    let got = &up.messages_requests()[0];
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.auth_via(), "x-api-key");
    assert_eq!(got.headers["anthropic-version"], "2023-06-01");
    let b = &got.body;
    assert_eq!(b["model"], "claude-haiku");
    assert_eq!(
        b["max_tokens"], 4096,
        "Anthropic requires max_tokens: the provider's default"
    );
    assert_eq!(b["system"], "Be brief.");
    assert_eq!(b["tools"][0]["input_schema"]["required"], json!(["city"]));
    assert_eq!(b["tool_choice"]["type"], "any");
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert_eq!(b["metadata"]["user_id"], "u-1");
    assert_eq!(b["messages"][0]["content"][1]["source"]["type"], "base64");
    assert!(b.get("seed").is_none() && b.get("logprobs").is_none());

    // Streaming: tool-call argument deltas, and the usage chunk when asked.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let text = chat(&router, streamed.clone()).await.text().await.unwrap();
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        TOOL_INPUT_FRAGMENTS.len() as u64
    );
    // Without include_usage, no usage chunk.
    streamed["stream_options"] = json!({"include_usage": false});
    let text = chat(&router, streamed).await.text().await.unwrap();
    assert!(!text.contains("\"usage\":{"), "{text}");
}

#[tokio::test]
async fn parameters_that_change_the_answer_are_refused_by_name() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["sk-ant"])],
        &[(1, "claude", "c")],
        "",
    );
    for (param, value) in [
        ("n", json!(2)),
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
        ),
    ] {
        let mut body = hello("g");
        body[param] = value;
        let r = chat(&router, body).await;
        assert_eq!(r.status(), 400, "{param}");
        let v: Value = r.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(param) && message.contains("claude"),
            "{message}"
        );
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn errors_on_the_messages_api_have_anthropics_shape() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["sk-ant"])],
        &[(1, "claude", "c")],
        "",
    );
    let check = async |r: reqwest::Response, status: u16, kind: &str| {
        assert_eq!(r.status(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    };
    let body =
        json!({"model": "g", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let no_key = client()
        .post(router.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    check(no_key, 401, "authentication_error").await;
    let mut unknown = body.clone();
    unknown["model"] = json!("nope");
    check(
        messages(&router, &unknown, &[]).await,
        404,
        "not_found_error",
    )
    .await;
    let bad = client()
        .post(router.url("/v1/messages"))
        .header("x-api-key", CLIENT_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    check(bad, 400, "invalid_request_error").await;
    // Parts of the Messages API the router does not serve, and a wrong
    // method, answer in the same shape; other paths keep OpenAI's.
    let batches = client()
        .post(router.url("/v1/messages/batches"))
        .header("x-api-key", CLIENT_KEY)
        .json(&json!({"requests": []}))
        .send()
        .await
        .unwrap();
    check(batches, 404, "not_found_error").await;
    let get = client()
        .get(router.url("/v1/messages"))
        .header("x-api-key", CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert!(get.headers().contains_key("allow"));
    check(get, 405, "invalid_request_error").await;
    let elsewhere = client()
        .post(router.url("/v1/messagesx"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let v: Value = elsewhere.json().await.unwrap();
    assert!(
        v["error"]["message"].is_string() && v.get("type").is_none(),
        "{v}"
    );
    // A provider's own error passes through as it is.
    up.set(
        "sk-ant",
        AnthropicBehavior::error(400, "invalid_request_error", "messages.0: bad"),
    );
    let r = messages(&router, &body, &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "messages.0: bad");
    // ... and the same error reaches an OpenAI client in OpenAI's shape.
    let v: Value = chat(&router, hello("g")).await.json().await.unwrap();
    assert_eq!(v["error"]["message"], "messages.0: bad");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_failures_fail_over_and_cool_the_key_down() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["k1", "k2"])],
        &[(1, "claude", "c")],
        "",
    );
    let body =
        json!({"model": "g", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    up.set(
        "k1",
        AnthropicBehavior::RateLimited {
            retry_after_secs: 30,
        },
    );
    assert_eq!(messages(&router, &body, &[]).await.status(), 200);
    assert_eq!(up.count_by_key()["k2"], 1);
    let usage: Value = admin_get(&router, "/admin/usage", "admin-key-anthropic")
        .await
        .json()
        .await
        .unwrap();
    let k1 = usage["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["key"] == "claude#0")
        .unwrap();
    assert_eq!(k1["health"]["reason"], "rate_limited");
    let left = k1["health"]["remaining_ms"].as_u64().unwrap();
    assert!((25_000..=30_000).contains(&left), "{left}");
    // Overloaded (529) and a rejected key (401) fail over too, never shown.
    up.clear();
    up.set("k1", AnthropicBehavior::Overloaded);
    up.set(
        "k2",
        AnthropicBehavior::error(401, "authentication_error", "invalid x-api-key"),
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("x-api-key") && !text.contains("k2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_mixed_group_fails_over_across_wire_formats() {
    let claude = AnthropicUpstream::start().await;
    let oai = MockUpstream::start().await;
    let router = router_over(
        &[
            ("claude", "anthropic", &claude.base_url(), &["ka"]),
            ("oai", "openai", &oai.base_url(), &["ko"]),
        ],
        &[(1, "claude", "c"), (2, "oai", "gpt")],
        "",
    );
    claude.set("ka", AnthropicBehavior::Overloaded);
    // An Anthropic client: the Anthropic provider is overloaded, the OpenAI
    // one answers, translated.
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let r = messages(&router, &body, &[]).await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(oai.requests().len(), 1);
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["attempts"], 2);
    assert_eq!(logs[0]["provider"], "oai");
}

#[tokio::test]
async fn count_tokens_asks_an_anthropic_provider_or_counts_locally() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["k"])],
        &[(1, "claude", "c")],
        "",
    );
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "Hello there"}]});
    let r = client()
        .post(router.url("/v1/messages/count_tokens"))
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-llm-router-usage-estimated"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["input_tokens"], COUNT_TOKENS);
    assert_eq!(up.requests()[0].path, "/v1/messages/count_tokens");

    let oai = MockUpstream::start().await;
    let router = router_over(
        &[("oai", "openai", &oai.base_url(), &["k"])],
        &[(1, "oai", "m")],
        "",
    );
    let r = client()
        .post(router.url("/v1/messages/count_tokens"))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-llm-router-usage-estimated"], "true");
    let v: Value = r.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 0);
    assert!(oai.requests().is_empty());
}

#[tokio::test]
async fn models_answer_in_anthropics_shape_to_anthropic_clients() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["k"])],
        &[(1, "claude", "c")],
        "",
    );
    let v: Value = client()
        .get(router.url("/v1/models"))
        .header("x-api-key", CLIENT_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "g");
    assert_eq!(v["last_id"], "claude-sonnet-4-5");
    assert_eq!(v["data"][0]["type"], "model");
    assert!(v["data"][0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(model_ids(&router).await, ["g", "claude-sonnet-4-5"]);
}

#[tokio::test]
async fn thinking_becomes_reasoning_content_for_openai_clients() {
    let up = AnthropicUpstream::start().await;
    let router = router_over(
        &[("claude", "anthropic", &up.base_url(), &["k"])],
        &[(1, "claude", "c")],
        "",
    );
    let message = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "c",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "text", "text": "42"}
        ],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 4}
    });
    up.set(
        "k",
        AnthropicBehavior::Status {
            code: 200,
            body: message.to_string(),
            headers: vec![],
        },
    );
    let v: Value = chat(&router, hello("g")).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Let me think."
    );
    assert_eq!(v["choices"][0]["message"]["content"], "42");
    // Streamed, as deltas.
    let sse = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"s\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"42\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":4}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    up.set(
        "k",
        AnthropicBehavior::Status {
            code: 200,
            body: sse.into(),
            headers: vec![("content-type", "text/event-stream".into())],
        },
    );
    let mut body = hello("g");
    body["stream"] = json!(true);
    let text = chat(&router, body).await.text().await.unwrap();
    let deltas: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"].clone())
        .collect();
    assert!(
        deltas.iter().any(|d| d["reasoning_content"] == "Hmm."),
        "{deltas:?}"
    );
    assert!(deltas.iter().any(|d| d["content"] == "42"), "{deltas:?}");
}

#[tokio::test]
async fn a_broken_translated_stream_ends_with_an_error_event_in_the_clients_format() {
    let up = MockUpstream::start().await;
    up.stream_shape(5, Duration::from_millis(30));
    up.set("k", Behavior::DropAfter(2));
    let router = router_over(
        &[("oai", "openai", &up.base_url(), &["k"])],
        &[(1, "oai", "m")],
        "",
    );
    let body = json!({"model": "g", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let text = messages(&router, &body, &[]).await.text().await.unwrap();
    let names = event_names(&text);
    assert_eq!(
        names.first().map(String::as_str),
        Some("message_start"),
        "{text}"
    );
    assert_eq!(names.last().map(String::as_str), Some("error"), "{text}");
    assert!(!names.contains(&"message_stop".to_string()));
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "stream_interrupted");
}

#[tokio::test]
async fn azure_gets_its_urls_and_its_key_header() {
    let answer = r#"{"id":"chatcmpl-az","object":"chat.completion","model":"dep","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let up = RawUpstream::start(move |mut conn| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(conn.request.clone());
            let head = [
                ("content-type", "application/json".to_string()),
                ("content-length", answer.len().to_string()),
            ];
            conn.head("200 OK", &head).await;
            conn.send(answer.as_bytes()).await;
        }
    })
    .await;
    let base = format!("http://{}", up.addr);
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\ngroups:\n  - name: g\n    models: [{{provider: dated, name: my-deployment}}]\n  - name: v1\n    models: [{{provider: v1, name: gpt-4o}}]\nproviders:\n  - {{name: dated, type: azure, base_url: {base:?}, api_version: 2024-10-21, api_keys: [az-key-1]}}\n  - {{name: v1, type: azure, base_url: {base:?}, api_keys: [az-key-2]}}\n"
    );
    let router = RouterProcess::start(&cfg);
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(chat(&router, hello("v1")).await.status(), 200);
    let seen = seen.lock().unwrap().clone();
    let first_line = |r: &str| r.lines().next().unwrap().to_string();
    assert_eq!(
        first_line(&seen[0]),
        "POST /openai/deployments/my-deployment/chat/completions?api-version=2024-10-21 HTTP/1.1"
    );
    assert_eq!(
        first_line(&seen[1]),
        "POST /openai/v1/chat/completions HTTP/1.1"
    );
    assert!(seen[0].to_lowercase().contains("api-key: az-key-1\r\n"));
    assert!(!seen[0].to_lowercase().contains("authorization:"));
    assert!(seen[1].to_lowercase().contains("api-key: az-key-2\r\n"));
}

#[tokio::test]
async fn an_anthropic_provider_is_probed_with_its_own_headers() {
    let up = AnthropicUpstream::start().await;
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\ngroups:\n  - name: g\n    models: [{{provider: claude, name: c}}]\nproviders:\n  - {{name: claude, type: anthropic, base_url: {:?}, api_keys: [k], health_check: {{interval: 200ms}}}}\n",
        up.base_url()
    );
    let _router = RouterProcess::start(&cfg);
    let start = Instant::now();
    while up
        .state
        .models_probes
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(5), "no probe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = up
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/models")
        .unwrap();
    assert_eq!(probe.auth_via(), "x-api-key");
    assert_eq!(probe.headers["anthropic-version"], "2023-06-01");
}

#[tokio::test]
async fn the_official_sdks_read_every_translation() {
    let claude = AnthropicUpstream::start().await;
    let oai = MockUpstream::start().await;
    let to_anthropic = router_over(
        &[("claude", "anthropic", &claude.base_url(), &["k"])],
        &[(1, "claude", "c")],
        "",
    );
    let to_openai = router_over(
        &[("oai", "openai", &oai.base_url(), &["k"])],
        &[(1, "oai", "m")],
        "",
    );
    for router in [&to_anthropic, &to_openai] {
        let url = router.url("");
        for scenario in [
            "anthropic-messages",
            "anthropic-stream",
            "anthropic-models",
            "anthropic-x-api-key",
        ] {
            let Some(v) =
                sdk::run_async(scenario, url.clone(), CLIENT_KEY, "claude-sonnet-4-5").await
            else {
                return;
            };
            assert_eq!(v["ok"], true, "{scenario}: {v}");
        }
        let v = sdk::run_async("anthropic-stream", url.clone(), CLIENT_KEY, "g")
            .await
            .unwrap();
        assert_eq!(v["sequence"][0], "message_start", "{v}");
        assert!(v["text"].as_str().unwrap().len() > 1, "{v}");
        let v = sdk::run_async("anthropic-error", url.clone(), CLIENT_KEY, "no-such-model")
            .await
            .unwrap();
        assert_eq!(v["error_class"], "NotFoundError", "{v}");
        assert_eq!(v["error_type"], "not_found_error", "{v}");
        let v = sdk::run_async("openai-error", url.clone(), CLIENT_KEY, "no-such-model")
            .await
            .unwrap();
        assert_eq!(v["error_class"], "NotFoundError", "{v}");
    }
    // The OpenAI SDK through the router to an Anthropic provider: plain,
    // streamed (finalChatCompletion), and tools.
    let url = to_anthropic.url("");
    for scenario in [
        "openai-chat",
        "openai-stream",
        "openai-tools",
        "openai-models",
    ] {
        let v = sdk::run_async(scenario, url.clone(), CLIENT_KEY, "g")
            .await
            .unwrap();
        assert_eq!(v["ok"], true, "{scenario}: {v}");
    }
    let v = sdk::run_async("openai-tools", url.clone(), CLIENT_KEY, "g")
        .await
        .unwrap();
    assert_eq!(v["tool_calls"][0]["name"], "get_weather", "{v}");
    assert_eq!(v["stream"]["tool_calls"][0]["name"], "get_weather", "{v}");
    assert_eq!(v["finish_reason"], "tool_calls");
    // The Anthropic SDK's tools through the router to an Anthropic provider.
    let v = sdk::run_async("anthropic-tools", url, CLIENT_KEY, "g")
        .await
        .unwrap();
    assert_eq!(v["tool_use"][0]["input"], json!({"city": "Paris"}), "{v}");
    assert_eq!(
        v["stream"]["tool_use"][0]["input"],
        json!({"city": "Paris"}),
        "{v}"
    );
    // Rate limits reach the Anthropic SDK as its RateLimitError.
    claude.set(
        "k",
        AnthropicBehavior::RateLimited {
            retry_after_secs: 1,
        },
    );
    let v = sdk::run_async("anthropic-error", to_anthropic.url(""), CLIENT_KEY, "g")
        .await
        .unwrap();
    assert_eq!(v["error_class"], "RateLimitError", "{v}");
}
