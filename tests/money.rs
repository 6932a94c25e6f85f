//! Money: what requests cost, dollar budgets, and the response cache,
//! against the real binary and a mock provider that reports usage
//! (11 prompt and 5 completion tokens per answer).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-money";

/// 11 prompt tokens at $2.50 and 5 completion tokens at $10 per million.
const COST: f64 = 11.0 * 2.5e-6 + 5.0 * 10e-6;

fn priced(url: &str, extra: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: {ADMIN}\n{extra}\ngroups:\n  - name: g\n    models: [{{weight: 1, provider: p, name: m}}]\n  - name: free\n    models: [{{weight: 1, provider: p, name: unpriced}}]\nproviders:\n  - name: p\n    base_url: {url:?}\n    api_keys: [k1]\n    prices: {{m: {{input: 2.5, output: 10, cached_input: 1.25}}}}\n"
    )
}

async fn usage(router: &RouterProcess) -> Value {
    admin_get(router, "/admin/usage", ADMIN)
        .await
        .json()
        .await
        .unwrap()
}

fn row<'a>(report: &'a Value, model: &str) -> &'a Value {
    report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model)
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test]
async fn a_requests_cost_shows_in_every_place() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&priced(
        &up.base_url(),
        "client_keys: [{name: team, key: team-key-1}]",
    ));
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth("team-key-1")
        .json(&hello("g"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let header: f64 = r.headers()["x-llm-router-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(close(header, COST), "{header}");
    // Streams carry no header (the cost is known at the end), but count.
    let mut body = hello("g");
    body["stream"] = json!(true);
    let r = chat(&router, body).await;
    assert!(!r.headers().contains_key("x-llm-router-cost-usd"));
    r.text().await.unwrap();
    let logs = router.wait_request_logs(2).await;
    assert!(
        logs.iter()
            .all(|l| close(l["cost_usd"].as_f64().unwrap(), COST)),
        "{logs:?}"
    );

    wait_for("usage to settle", Duration::from_secs(5), async || {
        usage(&router).await["usage"][0]["requests"] == 2
    })
    .await;
    let report = usage(&router).await;
    assert!(
        close(row(&report, "m")["cost_usd"].as_f64().unwrap(), 2.0 * COST),
        "{report}"
    );
    let team = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team")
        .unwrap();
    assert!(close(team["cost_usd"].as_f64().unwrap(), COST), "{team}");

    let metrics = metrics_text(&router).await;
    let value = |name: &str| metric(&metrics, name).unwrap_or(f64::NAN);
    assert!(
        close(
            value(r#"llm_router_cost_usd_total{provider="p",model="m"}"#),
            2.0 * COST
        ),
        "{metrics}"
    );
    assert!(
        close(
            value(r#"llm_router_client_cost_usd_total{client="team"}"#),
            COST
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_model_without_a_price_has_no_cost_not_a_zero_one() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&priced(&up.base_url(), ""));
    let r = chat(&router, hello("free")).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-llm-router-cost-usd"));
    let logs = router.wait_request_logs(1).await;
    assert!(logs[0].get("cost_usd").is_none(), "{:?}", logs[0]);
    let report = usage(&router).await;
    assert!(row(&report, "unpriced")["cost_usd"].is_null(), "{report}");
    // `check` warns about it, since prices are configured.
    let path = router.dir().join("config.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-router"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning") && text.contains("\"unpriced\""),
        "{text}"
    );
    assert!(!text.contains("model \"m\""), "{text}");
}

#[tokio::test]
async fn prices_come_from_litellms_table_and_typed_prices_win() {
    let up = MockUpstream::start().await;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/model_prices_and_context_window.json"
    );
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: {ADMIN}\nprices_file: {fixture:?}\ngroups:\n  - name: g\n    models: [{{provider: p, name: gpt-4o-mini}}]\n  - name: typed\n    models: [{{provider: p, name: gpt-4o}}]\n  - name: az\n    models: [{{provider: azure-east, name: gpt-4o}}]\nproviders:\n  - name: p\n    base_url: {:?}\n    api_keys: [k1]\n    prices: {{gpt-4o: {{input: 1, output: 1}}}}\n  - {{name: azure-east, type: azure, base_url: {:?}, api_keys: [k2]}}\n",
        up.base_url(),
        format!("http://{}", up.addr),
    );
    let router = RouterProcess::start(&cfg);
    for group in ["g", "typed"] {
        assert_eq!(chat(&router, hello(group)).await.status(), 200);
    }
    let logs = router.wait_request_logs(2).await;
    let cost = |group: &str| {
        logs.iter().find(|l| l["group"] == group).unwrap()["cost_usd"]
            .as_f64()
            .unwrap()
    };
    // gpt-4o-mini from the table: $0.15 in, $0.60 out per million.
    assert!(
        close(cost("g"), 11.0 * 0.15e-6 + 5.0 * 0.6e-6),
        "{}",
        cost("g")
    );
    // gpt-4o typed into the config: $1 and $1, over the table's $2.50 / $10.
    assert!(close(cost("typed"), 16.0 * 1e-6), "{}", cost("typed"));
    // An Azure provider finds `azure/gpt-4o` in the table.
    let report = usage(&router).await;
    let az = report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "azure-east")
        .unwrap();
    assert_eq!(az["cost_usd"], 0.0, "priced, nothing spent yet: {az}");
}

/// A client key with a dollar budget of about two requests.
fn budgeted(store: &str, url: &str) -> String {
    priced(
        url,
        &format!(
            "store: {store:?}\nclient_keys: [{{name: team, key: team-key-1, budget_usd: 0.0001}}]"
        ),
    )
}

async fn team_chat(router: &RouterProcess) -> reqwest::Response {
    client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth("team-key-1")
        .json(&hello("g"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_spent_dollar_budget_is_refused_and_stays_spent_across_a_restart() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&budgeted("sqlite://usage.db", &up.base_url()));
    // $0.0000775 each: the second request takes the key past $0.0001.
    assert_eq!(team_chat(&router).await.status(), 200);
    assert_eq!(team_chat(&router).await.status(), 200);
    router.wait_request_logs(2).await;
    let refused = team_chat(&router).await;
    assert_eq!(refused.status(), 429);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("$0.00"),
        "{v}"
    );
    // The share of the budget used is a metric (for the alert).
    let used = |text: &str| {
        metric(
            text,
            "llm_router_client_budget_used_ratio{client=\"team\",budget=\"usd\"}",
        )
    };
    let spent = used(&metrics_text(&router).await).unwrap();
    assert!((spent - 1.55).abs() < 1e-9, "{spent}");
    // Written behind within a second; a restart still knows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let router = router.restart();
    assert_eq!(team_chat(&router).await.status(), 429);
    assert_eq!(used(&metrics_text(&router).await), Some(spent));
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn a_dollar_budget_is_shared_between_instances_through_redis() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let cfg = budgeted(&redis.url(), &up.base_url());
    let a = RouterProcess::start(&cfg);
    let b = RouterProcess::start(&cfg);
    assert_eq!(team_chat(&a).await.status(), 200);
    assert_eq!(team_chat(&a).await.status(), 200);
    a.wait_request_logs(2).await;
    // What A spent reaches B within a sync or two.
    wait_for(
        "B to see A's spending",
        Duration::from_secs(5),
        async || {
            let report = usage(&b).await;
            report["clients"][0]["cost_usd"].as_f64().unwrap_or(0.0) >= 0.0001
        },
    )
    .await;
    assert_eq!(team_chat(&b).await.status(), 429);
    assert_eq!(up.requests().len(), 2);
}

fn cached(url: &str, extra: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: {ADMIN}\n{extra}\nclient_keys:\n  - {{name: a, key: key-a-123}}\n  - {{name: b, key: key-b-456, budget_usd: 0.0001}}\ngroups:\n  - name: g\n    cache: true\n    models: [{{provider: p, name: m}}]\n  - name: short\n    cache: {{ttl: 1s}}\n    models: [{{provider: p, name: m}}]\n  - name: nocache\n    models: [{{provider: p, name: m}}]\nproviders:\n  - name: p\n    base_url: {url:?}\n    api_keys: [k1]\n    prices: {{m: {{input: 2.5, output: 10}}}}\n"
    )
}

async fn as_client(
    router: &RouterProcess,
    key: &str,
    body: Value,
    cache_control: Option<&str>,
) -> reqwest::Response {
    let mut r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(key);
    if let Some(cc) = cache_control {
        r = r.header("cache-control", cc);
    }
    r.json(&body).send().await.unwrap()
}

fn cache_header(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-llm-router-cache")
        .map(|v| v.to_str().unwrap().to_string())
}

/// Waits until the cache answers `body` for `key` (entries are stored just
/// after the answer, off its path).
async fn until_hit(router: &RouterProcess, key: &str, body: &Value) -> reqwest::Response {
    let mut last = None;
    for _ in 0..100 {
        let r = as_client(router, key, body.clone(), None).await;
        if cache_header(&r).as_deref() == Some("hit") {
            return r;
        }
        last = cache_header(&r);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never a hit (last: {last:?})");
}

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&cached(&up.base_url(), "cache: {max_bytes: 1MiB}"));
    let first = as_client(&router, "key-a-123", hello("g"), None).await;
    assert_eq!(cache_header(&first).as_deref(), Some("miss"));
    let fresh = first.text().await.unwrap();
    // The same request, formatted differently: a hit, byte for byte.
    let same = json!({"messages": [{"content": "hi", "role": "user"}], "model": "g"});
    assert_eq!(
        same,
        hello("g"),
        "the test's two forms are the same request"
    );
    let hit = until_hit(&router, "key-a-123", &same).await;
    assert_eq!(hit.text().await.unwrap(), fresh);
    let upstream_calls = up.requests().len();
    assert_eq!(upstream_calls, 1);
    // Another client key does not share it.
    let other = as_client(&router, "key-b-456", hello("g"), None).await;
    assert_eq!(cache_header(&other).as_deref(), Some("miss"));
    // no-cache skips the lookup (and stores the fresh answer); no-store
    // does neither; a group without the cache says nothing.
    let r = as_client(&router, "key-a-123", hello("g"), Some("no-cache")).await;
    assert_eq!(cache_header(&r).as_deref(), Some("bypass"));
    let r = as_client(&router, "key-a-123", hello("g"), Some("no-store")).await;
    assert_eq!(cache_header(&r).as_deref(), Some("bypass"));
    let r = as_client(&router, "key-a-123", hello("nocache"), None).await;
    assert_eq!(cache_header(&r), None);
    assert_eq!(up.requests().len(), upstream_calls + 4);
    // Errors are never stored.
    up.set("k1", Behavior::status(400));
    let mut bad = hello("g");
    bad["temperature"] = json!(7);
    assert_eq!(
        as_client(&router, "key-a-123", bad.clone(), None)
            .await
            .status(),
        400
    );
    up.set("k1", Behavior::Ok);
    let r = as_client(&router, "key-a-123", bad, None).await;
    assert_eq!(
        (r.status().as_u16(), cache_header(&r).as_deref()),
        (200, Some("miss"))
    );

    let metrics = metrics_text(&router).await;
    assert!(
        metric(
            &metrics,
            r#"llm_router_cache_requests_total{group="g",result="hit"}"#
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"llm_router_cache_saved_tokens_total{group="g"}"#
        ),
        Some(16.0)
    );
    assert!(metric(&metrics, "llm_router_cache_bytes").unwrap() > 0.0);
}

#[tokio::test]
async fn a_stream_is_replayed_with_its_events_and_done() {
    let up = MockUpstream::start().await;
    up.stream_shape(4, Duration::from_millis(10));
    let router = RouterProcess::start(&cached(&up.base_url(), ""));
    let mut body = hello("g");
    body["stream"] = json!(true);
    let fresh = as_client(&router, "key-a-123", body.clone(), None)
        .await
        .text()
        .await
        .unwrap();
    let hit = until_hit(&router, "key-a-123", &body).await;
    assert_eq!(hit.headers()["content-type"], "text/event-stream");
    let chunks = read_timed(hit).await;
    let replayed: String = chunks
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    assert_eq!(replayed, fresh);
    assert!(replayed.ends_with("data: [DONE]\n\n"));
    assert_eq!(
        chunks.len(),
        fresh.matches("\n\n").count(),
        "one chunk per event"
    );
    // A JSON request is not answered from a stream.
    let r = as_client(&router, "key-a-123", hello("g"), None).await;
    assert_eq!(cache_header(&r).as_deref(), Some("miss"));
}

#[tokio::test]
async fn hits_cost_nothing_and_spend_no_budget() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&cached(&up.base_url(), ""));
    assert_eq!(
        as_client(&router, "key-b-456", hello("g"), None)
            .await
            .status(),
        200
    );
    // Every miss would cost: wait for the entry before asking again.
    wait_for("the answer cached", Duration::from_secs(10), async || {
        metric(&metrics_text(&router).await, "llm_router_cache_bytes").unwrap_or(0.0) > 0.0
    })
    .await;
    for _ in 0..3 {
        let r = as_client(&router, "key-b-456", hello("g"), None).await;
        assert_eq!(cache_header(&r).as_deref(), Some("hit"));
    }
    let logs = router.wait_request_logs(4).await;
    assert_eq!(
        logs.iter().filter(|l| l["outcome"] == "cache_hit").count(),
        3,
        "{logs:?}"
    );
    let report = usage(&router).await;
    let b = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "b")
        .unwrap();
    assert_eq!(b["requests"], 1, "{b}");
    assert!(close(b["cost_usd"].as_f64().unwrap(), COST));
    assert_eq!(row(&report, "m")["requests"], 1);
    // One fresh request left in the budget: still admitted.
    let mut other = hello("g");
    other["temperature"] = json!(0.1);
    assert_eq!(
        as_client(&router, "key-b-456", other, None).await.status(),
        200
    );
}

#[tokio::test]
async fn entries_expire_and_can_be_purged() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&cached(&up.base_url(), ""));
    as_client(&router, "key-a-123", hello("short"), None).await;
    until_hit(&router, "key-a-123", &hello("short")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = as_client(&router, "key-a-123", hello("short"), None).await;
    assert_eq!(
        cache_header(&r).as_deref(),
        Some("miss"),
        "a 1 s entry lived longer"
    );

    as_client(&router, "key-a-123", hello("g"), None).await;
    until_hit(&router, "key-a-123", &hello("g")).await;
    let purge = |body: &'static str| {
        client()
            .post(router.url("/admin/cache/purge"))
            .bearer_auth(ADMIN)
            .body(body)
            .send()
    };
    let v: Value = purge(r#"{"group": "short"}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["group"], "short");
    until_hit(&router, "key-a-123", &hello("g")).await;
    let v: Value = purge("{}").await.unwrap().json().await.unwrap();
    assert!(v["purged"].as_u64().unwrap() >= 1, "{v}");
    let r = as_client(&router, "key-a-123", hello("g"), None).await;
    assert_eq!(cache_header(&r).as_deref(), Some("miss"));
    // The client key cannot purge.
    assert_eq!(
        client()
            .post(router.url("/admin/cache/purge"))
            .bearer_auth(CLIENT_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn the_memory_cache_stays_within_its_bytes() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&cached(&up.base_url(), "cache: {max_bytes: 64KiB}"));
    for i in 0..120 {
        let mut body = hello("g");
        body["messages"][0]["content"] = json!(format!("question {i} {}", "x".repeat(300)));
        assert_eq!(
            as_client(&router, "key-a-123", body, None).await.status(),
            200
        );
    }
    wait_for("the cache to settle", Duration::from_secs(5), async || {
        metric(&metrics_text(&router).await, "llm_router_cache_bytes").is_some_and(|b| b > 0.0)
    })
    .await;
    let bytes = metric(&metrics_text(&router).await, "llm_router_cache_bytes").unwrap();
    assert!(bytes <= 64.0 * 1024.0, "{bytes}");
}

#[tokio::test]
async fn a_redis_cache_is_shared_and_its_outage_fails_no_request() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let cfg = cached(
        &up.base_url(),
        &format!("cache: {{store: {:?}}}", redis.url()),
    );
    let a = RouterProcess::start(&cfg);
    let b = RouterProcess::start(&cfg);
    as_client(&a, "key-a-123", hello("g"), None).await;
    // B answers from what A stored.
    let hit = until_hit(&b, "key-a-123", &hello("g")).await;
    assert_eq!(hit.status(), 200);
    assert_eq!(up.requests().len(), 1);
    redis.kill();
    for _ in 0..3 {
        let r = as_client(&b, "key-a-123", hello("g"), None).await;
        assert_eq!(r.status(), 200);
        assert_ne!(cache_header(&r).as_deref(), Some("hit"));
    }
}
