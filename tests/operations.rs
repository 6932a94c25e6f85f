//! Metrics, readiness and hot reload, through the real binary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "ops-admin-key-31";

#[tokio::test]
async fn a_scrape_after_known_traffic_shows_exact_counts() {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "m")],
        "store: memory",
    );
    let router = RouterProcess::start(&cfg);
    up.set("k2", Behavior::status(500));
    for _ in 0..3 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let text = chat(
        &router,
        json!({"model": "g", "stream": true, "messages": []}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("[DONE]"));
    assert_eq!(chat(&router, hello("nope")).await.status(), 404);
    router.wait_request_logs(5).await;

    let m = metrics_text(&router).await;
    let ok =
        r#"llm_router_requests_total{group="g",provider="p",model="m",key="p#0",status="200"}"#;
    assert_eq!(metric(&m, ok), Some(4.0), "{m}");
    assert_eq!(
        metric(
            &m,
            r#"llm_router_tokens_total{provider="p",key="p#0",model="m",kind="prompt"}"#
        ),
        Some(44.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_tokens_total{provider="p",key="p#0",model="m",kind="completion"}"#
        ),
        Some(20.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_upstream_errors_total{provider="p",key="p#1",model="m",kind="server_error"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"llm_router_failovers_total{group="g"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_rejected_requests_total{code="model_not_found"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_request_duration_seconds_count{provider="p",key="p#0",model="m"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_time_to_first_token_seconds_count{provider="p",key="p#0",model="m"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"llm_router_cooldown_active{provider="p",key="p#1",model="m"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "llm_router_in_flight_requests"), Some(0.0));
    assert_eq!(metric(&m, "llm_router_open_streams"), Some(0.0));
    assert_eq!(metric(&m, "llm_router_store_healthy"), Some(1.0));
    assert!(
        !m.contains("k1") && !m.contains("k2\""),
        "raw keys must never appear in metrics"
    );
}

#[tokio::test]
async fn ready_reports_store_and_usable_candidates() {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        "store: memory\ncooldown: {base: 30s, max: 1m}",
    );
    let router = RouterProcess::start(&cfg);
    let r = client().get(router.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["ready"].clone(),
            v["store"]["state"].clone(),
            v["groups"]["g"].clone()
        ),
        (json!(true), json!("ok"), json!(true))
    );
    // The only key fails: nothing is usable until its cooldown ends.
    up.set("k1", Behavior::status(503));
    assert_eq!(chat(&router, hello("g")).await.status(), 502);
    let r = client().get(router.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["groups"]["g"], false);
}

fn two_group_config(up: &MockUpstream, second_model: &str) -> String {
    format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: {ADMIN_KEY}\nstore: memory\ngroups:\n  - name: g\n    models: [{{weight: 1, provider: p, name: m}}]\n  - name: h\n    models: [{{weight: 1, provider: p, name: {second_model}}}]\nproviders:\n  - {{name: p, base_url: {:?}, api_keys: [k1, k2]}}\n",
        up.base_url()
    )
}

#[tokio::test]
async fn sighup_reloads_and_keeps_usage_of_remaining_keys() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&two_group_config(&up, "m2"));
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    // Same provider and keys; group h now serves another model.
    std::fs::write(
        router.dir().join("config.yaml"),
        two_group_config(&up, "m3"),
    )
    .unwrap();
    router.signal("HUP");
    wait_for("the reload", Duration::from_secs(10), async || {
        router.logs().contains("config reloaded")
    })
    .await;
    up.clear();
    assert_eq!(chat(&router, hello("h")).await.status(), 200);
    assert_eq!(up.requests()[0].body["model"], "m3");
    // Usage of k1 on m survived the reload: the next request for g goes to k2.
    up.clear();
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(up.requests()[0].key, "k2");
    let logs = router.logs();
    assert!(!logs.contains("\"k1\"") && !logs.contains(CLIENT_KEY) && !logs.contains(ADMIN_KEY));
}

#[tokio::test]
async fn a_file_change_reloads_and_an_invalid_one_is_rejected() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&two_group_config(&up, "m2"));
    let path = router.dir().join("config.yaml");
    let with_extra = two_group_config(&up, "m2").replace(
        "groups:\n",
        "groups:\n  - name: extra\n    models: [{weight: 1, provider: p, name: x}]\n",
    );
    std::fs::write(&path, with_extra).unwrap();
    wait_for("the new group", Duration::from_secs(10), async || {
        model_ids(&router).await.contains(&"extra".to_string())
    })
    .await;

    // An invalid file: rejected, logged, and the previous config stays.
    std::fs::write(&path, "api_key: x\ngroups:\n  - name: broken\n    models: [{weight: 1, provider: missing, name: m}]\n").unwrap();
    wait_for("the rejection", Duration::from_secs(10), async || {
        router.logs().contains("config reload rejected")
    })
    .await;
    assert_eq!(model_ids(&router).await, ["extra", "g", "h"]);
    assert_eq!(chat(&router, hello("extra")).await.status(), 200);
    let m = metrics_text(&router).await;
    assert_eq!(
        metric(
            &m,
            r#"llm_router_config_reloads_total{outcome="invalid_config"}"#
        ),
        Some(1.0)
    );
}

/// Every operator route, with its method.
const OPERATOR_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/usage"),
    ("POST", "/admin/usage/reset"),
    ("GET", "/ui/api/state"),
    ("POST", "/ui/api/edit"),
    ("GET", "/ui/session"),
];

#[tokio::test]
async fn every_admin_route_refuses_no_key_and_the_client_key() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&two_group_config(&up, "m2"));
    for (method, path) in OPERATOR_ROUTES {
        for key in [None, Some(CLIENT_KEY)] {
            let mut req = client()
                .request(method.parse().unwrap(), router.url(path))
                .body("{}");
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let status = req.send().await.unwrap().status().as_u16();
            let expected: &[u16] = if key.is_some() && *path != "/ui/session" {
                &[403]
            } else {
                &[401]
            };
            assert!(
                expected.contains(&status),
                "{method} {path} with {key:?}: {status}"
            );
        }
    }
    // Logging in to the dashboard with the client key is refused too.
    let r = client()
        .post(router.url("/ui/login"))
        .json(&json!({"key": CLIENT_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = client()
        .post(router.url("/ui/login"))
        .json(&json!({"key": ADMIN_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
}

#[tokio::test]
async fn admin_listen_moves_operator_routes_off_the_public_listener() {
    let up = MockUpstream::start().await;
    let cfg = two_group_config(&up, "m2") + "admin_listen: \"127.0.0.1:0\"\n";
    let router = RouterProcess::start(&cfg);
    let admin_addr = wait_admin_addr(&router).await;
    for path in ["/admin/usage", "/ui", "/metrics"] {
        let public = client()
            .get(router.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), 404, "{path} on the public listener");
        let admin = client()
            .get(format!("http://{admin_addr}{path}"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "{path} on the admin listener");
    }
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    let chat_on_admin = client()
        .post(format!("http://{admin_addr}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await
        .unwrap();
    assert_eq!(chat_on_admin.status(), 404);
}

async fn wait_admin_addr(router: &RouterProcess) -> String {
    let start = Instant::now();
    loop {
        let found = router.logs().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "admin listening").then(|| v["addr"].as_str().unwrap().to_string())
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "admin listener never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
