//! Beyond the Go router: client keys with scopes and limits, more endpoints,
//! per-provider request shaping, aliases, direct addressing, and token
//! estimates when an upstream reports no usage.

mod common;

use common::*;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "features-admin-key";

fn base(up: &MockUpstream, extra: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: {ADMIN_KEY}\nstore: memory\n{extra}\ngroups:\n  - name: g\n    models: [{{weight: 1, provider: p, name: m}}]\n  - name: h\n    models: [{{weight: 1, provider: p, name: m2}}]\n  - name: emb\n    endpoints: [embeddings]\n    models: [{{weight: 1, provider: p, name: text-embedding-3-small}}]\nproviders:\n  - {{name: p, base_url: {:?}, api_keys: [k1]}}\n",
        up.base_url()
    )
}

async fn post(router: &RouterProcess, path: &str, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(router.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_keys_are_scoped_and_their_usage_tracked() {
    let up = MockUpstream::start().await;
    let clients = "client_keys:\n  - {name: team-a, key: ck-team-a-111, groups: [g]}\n  - {name: team-b, key: ck-team-b-222}";
    let router = RouterProcess::start(&base(&up, clients));
    assert_eq!(
        post(&router, "/v1/chat/completions", "ck-team-a-111", hello("g"))
            .await
            .status(),
        200
    );
    // Out of scope looks like a model that does not exist.
    let r = post(&router, "/v1/chat/completions", "ck-team-a-111", hello("h")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        post(&router, "/v1/chat/completions", "ck-team-b-222", hello("h"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&router, "/v1/chat/completions", "ck-unknown", hello("g"))
            .await
            .status(),
        401
    );
    // Client keys never open admin.
    assert_eq!(
        admin_get(&router, "/admin/usage", "ck-team-b-222")
            .await
            .status(),
        403
    );

    let report: Value = admin_get(&router, "/admin/usage", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let team_a = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team-a")
        .unwrap();
    assert_eq!(
        (team_a["tokens"].as_u64(), team_a["requests"].as_u64()),
        (Some(16), Some(1))
    );
    let metrics = metrics_text(&router).await;
    assert!(
        metrics.contains(r#"llm_router_client_tokens_total{client="team-a"} 16"#),
        "{metrics}"
    );
    let logs = router.wait_log("\"client\":\"team-b\"").await;
    assert!(!logs.contains("ck-team-a-111") && !metrics.contains("ck-team"));
}

#[tokio::test]
async fn request_and_token_rate_limits_answer_429_with_openai_headers() {
    let up = MockUpstream::start().await;
    let clients = "client_keys:\n  - {name: slow, key: ck-slow, rpm: 3}\n  - {name: thin, key: ck-thin, tpm: 40}";
    let router = RouterProcess::start(&base(&up, clients));
    for i in 0..3 {
        let r = post(&router, "/v1/chat/completions", "ck-slow", hello("g")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            r.headers()["x-ratelimit-remaining-requests"],
            (2 - i).to_string().as_str()
        );
    }
    let r = post(&router, "/v1/chat/completions", "ck-slow", hello("g")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(
        r.headers()["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap()
            .ends_with('s')
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["type"].as_str(), v["error"]["code"].as_str()),
        (Some("rate_limit_error"), Some("rate_limit_exceeded"))
    );

    // Tokens per minute: 16 used, and the next prompt would pass 40.
    let big = json!({"model": "g", "messages": [{"role": "user", "content": "x".repeat(60)}]});
    assert_eq!(
        post(&router, "/v1/chat/completions", "ck-thin", big.clone())
            .await
            .status(),
        200
    );
    let r = post(&router, "/v1/chat/completions", "ck-thin", big).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "40");
    assert!(r.headers().contains_key("retry-after"));
    // The master key has no limits.
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
}

#[tokio::test]
async fn a_spent_budget_answers_insufficient_quota() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&base(
        &up,
        "client_keys:\n  - {name: capped, key: ck-capped, budget_tokens: 30}",
    ));
    for _ in 0..2 {
        assert_eq!(
            post(&router, "/v1/chat/completions", "ck-capped", hello("g"))
                .await
                .status(),
            200
        );
    }
    let r = post(&router, "/v1/chat/completions", "ck-capped", hello("g")).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn embeddings_completions_and_responses_are_routed_and_counted() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&base(&up, ""));
    let r = post(
        &router,
        "/v1/embeddings",
        CLIENT_KEY,
        json!({"model": "emb", "input": "hello"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"][0]["embedding"][0],
        0.1
    );
    let r = post(
        &router,
        "/v1/completions",
        CLIENT_KEY,
        json!({"model": "g", "prompt": "Say hi"}),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["choices"][0]["text"],
        "legacy hello"
    );
    // Legacy streams get include_usage like chat; the injected chunk is dropped.
    let text = post(
        &router,
        "/v1/completions",
        CLIENT_KEY,
        json!({"model": "g", "prompt": "x", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        !text.contains("usage") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let r = post(
        &router,
        "/v1/responses",
        CLIENT_KEY,
        json!({"model": "g", "input": "hi"}),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["usage"]["total_tokens"], 8);
    // Responses streams keep their own events; usage comes from response.completed.
    let text = post(
        &router,
        "/v1/responses",
        CLIENT_KEY,
        json!({"model": "g", "input": "hi", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("event: response.completed"), "{text}");

    let requests = up.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/embeddings",
            "/v1/completions",
            "/v1/completions",
            "/v1/responses",
            "/v1/responses"
        ]
    );
    assert_eq!(requests[2].body["stream_options"]["include_usage"], true);
    assert!(
        requests[4].body.get("stream_options").is_none(),
        "the Responses API takes no stream_options"
    );
    let logs = router.wait_request_logs(5).await;
    let totals: Vec<u64> = logs
        .iter()
        .map(|l| l["total_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [8, 6, 6, 8, 8]);
    assert!(logs.iter().all(|l| l["usage_estimated"] == false));
}

#[tokio::test]
async fn a_group_may_restrict_its_endpoints() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&base(&up, ""));
    let r = post(&router, "/v1/chat/completions", CLIENT_KEY, hello("emb")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions")
    );
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn providers_shape_requests_with_roles_dropped_params_and_headers() {
    let up = MockUpstream::start().await;
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nstore: memory\ngroups:\n  - name: g\n    models: [{{weight: 1, provider: strict, name: m}}]\nproviders:\n  - name: strict\n    base_url: {:?}\n    api_keys: [k1]\n    role_rewrites: {{developer: system}}\n    drop_params: [logprobs, seed]\n    headers: {{HTTP-Referer: \"https://app.example\", X-Title: \"My App\"}}\n",
        up.base_url()
    );
    let router = RouterProcess::start(&cfg);
    let body = r#"{"model":"g","seed":7,"messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}],"logprobs":true,"temperature":0.20}"#;
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = &up.requests()[0];
    assert_eq!(
        std::str::from_utf8(&seen.raw).unwrap(),
        r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.20}"#
    );
    assert_eq!(seen.headers["http-referer"], "https://app.example");
    assert_eq!(seen.headers["x-title"], "My App");
}

#[tokio::test]
async fn aliases_and_direct_addressing_reach_the_right_model() {
    let up = MockUpstream::start().await;
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nstore: memory\naliases: {{gpt-4o: g}}\ngroups:\n  - name: g\n    models: [{{weight: 1, provider: open, name: m}}]\nproviders:\n  - {{name: open, base_url: {:?}, api_keys: [k1, k2], direct: true}}\n  - {{name: closed, base_url: {:?}, api_keys: [k3]}}\n",
        up.base_url(),
        up.base_url()
    );
    let router = RouterProcess::start(&cfg);
    assert_eq!(chat(&router, hello("gpt-4o")).await.status(), 200);
    assert_eq!(up.requests()[0].body["model"], "m");
    assert_eq!(model_ids(&router).await, ["g", "gpt-4o"]);

    up.clear();
    for _ in 0..2 {
        assert_eq!(
            chat(&router, hello("open/vendor/model-x")).await.status(),
            200
        );
    }
    let seen = up.requests();
    assert_eq!(seen[0].body["model"], "vendor/model-x");
    assert_eq!(
        (seen[0].key.as_str(), seen[1].key.as_str()),
        ("k1", "k2"),
        "direct addressing still balances keys"
    );
    assert_eq!(chat(&router, hello("closed/m")).await.status(), 404);
}

#[tokio::test]
async fn missing_upstream_usage_is_estimated_with_tiktoken_and_marked() {
    let up = MockUpstream::start().await;
    up.set("k1", Behavior::NoUsage);
    let router = RouterProcess::start(&base(&up, ""));
    let r = chat(&router, json!({"model": "g", "messages": [{"role": "user", "content": "Count these tokens please"}]})).await;
    assert_eq!(r.status(), 200);
    let plain_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = chat(
        &router,
        json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let stream_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(r.text().await.unwrap().contains("[DONE]"));
    // Estimates settle off the request path, so the lines may come in
    // either order: find each by its request id.
    let logs = router.wait_request_logs(2).await;
    for l in &logs {
        assert_eq!(l["usage_estimated"], true, "{l}");
    }
    let line = |id: &str| logs.iter().find(|l| l["request_id"] == id).unwrap().clone();
    let (plain, stream) = (line(&plain_id), line(&stream_id));
    // "hello from upstream" is 3 o200k tokens; the prompt text is 5 + newline.
    assert_eq!(plain["completion_tokens"], 3);
    assert!(plain["prompt_tokens"].as_u64().unwrap() >= 4);
    // The stream's five "w0 … w4" deltas are counted from their text.
    assert!(stream["completion_tokens"].as_u64().unwrap() >= 5);
    let report: Value = admin_get(&router, "/admin/usage", ADMIN_KEY)
        .await
        .json()
        .await
        .unwrap();
    let row = report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "m")
        .unwrap();
    assert_eq!(row["estimated"], 2);
    let metrics = metrics_text(&router).await;
    assert!(
        metrics.contains(
            r#"llm_router_estimated_usage_requests_total{provider="p",key="p#0",model="m"} 2"#
        ),
        "{metrics}"
    );
}
