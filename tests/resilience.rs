//! Failover, health, timeouts, cancellation and shutdown, through the real
//! binary against a mock upstream told to misbehave per key.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn stream_body() -> Value {
    json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

async fn two_keys(extra: &str) -> (MockUpstream, RouterProcess) {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "m")],
        extra,
    );
    (up, RouterProcess::start(&cfg))
}

#[tokio::test]
async fn a_rate_limited_key_cools_down_while_the_other_serves() {
    let (up, router) = two_keys("").await;
    up.set(
        "k1",
        Behavior::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![("retry-after", "30".into())],
        },
    );
    for _ in 0..20 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let counts = up.count_by_key();
    assert_eq!(counts["k2"], 20);
    assert!(counts.get("k1").copied().unwrap_or(0) <= 2, "{counts:?}");
}

#[tokio::test]
async fn every_key_failing_gives_one_clear_error() {
    let (up, router) = two_keys("").await;
    up.set("k1", Behavior::status(503));
    up.set("k2", Behavior::status(500));
    let started = Instant::now();
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(up.requests().len(), 2, "each key tried once");
}

#[tokio::test]
async fn all_keys_rate_limited_gives_429_with_the_smallest_retry_after() {
    let (up, router) = two_keys("").await;
    up.set(
        "k1",
        Behavior::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![("retry-after", "7".into())],
        },
    );
    up.set(
        "k2",
        Behavior::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![("retry-after", "3".into())],
        },
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_provider_401_fails_over_and_never_reaches_the_client() {
    let up = MockUpstream::start().await;
    let bad = "sk-bad-provider-key-9876";
    let cfg = config(&[("p", &up.base_url(), &[bad, "k2"])], &[(1, "p", "m")], "");
    let router = RouterProcess::start(&cfg);
    let echo = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {bad}","code":"invalid_api_key"}}}}"#
    );
    up.set(
        bad,
        Behavior::Status {
            code: 401,
            body: echo.clone(),
            headers: vec![],
        },
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    // Both keys rejected: the client gets a 502 that names no key.
    up.set(
        "k2",
        Behavior::Status {
            code: 403,
            body: echo.replace(bad, "k2"),
            headers: vec![],
        },
    );
    let up2 = MockUpstream::start().await;
    let cfg = config(&[("p", &up2.base_url(), &[bad])], &[(1, "p", "m")], "");
    let router2 = RouterProcess::start(&cfg);
    up2.set(
        bad,
        Behavior::Status {
            code: 401,
            body: echo,
            headers: vec![],
        },
    );
    let r = chat(&router2, hello("g")).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(!text.contains(bad) && !text.contains("sk-bad"), "{text}");
    assert!(!router.logs().contains(bad) && !router2.logs().contains(bad));
}

#[tokio::test]
async fn a_first_byte_timeout_fails_over_to_the_next_key() {
    let (up, router) = two_keys("timeouts: {first_byte: 300ms}").await;
    up.set("k1", Behavior::Hang);
    let started = Instant::now();
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(up.count_by_key()["k2"], 1);
}

/// A provider whose host never completes the TCP handshake: a listener
/// that never accepts, its one-slot backlog filled, so further connects sit
/// in SYN retries. Held until dropped.
async fn unanswered_connects() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connect = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), connect).await {
            fillers.push(s);
        }
    }
    (listener, fillers, format!("http://{addr}/v1"))
}

#[tokio::test]
async fn a_connect_timeout_counts_as_a_timeout_and_fails_over() {
    let (_listener, _fillers, dead) = unanswered_connects().await;
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("dead", &dead, &["k1"]), ("live", &up.base_url(), &["k2"])],
        &[(1, "dead", "m"), (1, "live", "m")],
        "timeouts: {connect: 300ms, first_byte: 10s}",
    );
    let router = RouterProcess::start(&cfg);
    // The dead provider is tried first (config order), times out on
    // connect, and the live one answers.
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.count_by_key()["k2"], 1);
    let logs = router.wait_log("upstream attempt failed").await;
    assert!(
        logs.contains("Timeout") && logs.contains("dead#0"),
        "{logs}"
    );

    // Alone, it is a 504 (timeout), not a 502 (unreachable).
    let only_dead = config(
        &[("dead", &dead, &["k1"])],
        &[(1, "dead", "m")],
        "timeouts: {connect: 300ms, first_byte: 10s}",
    );
    let router = RouterProcess::start(&only_dead);
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
}

#[tokio::test]
async fn client_errors_are_not_retried_and_redirects_not_followed() {
    let (up, router) = two_keys("").await;
    let target = MockUpstream::start().await;
    up.set(
        "k1",
        Behavior::Status {
            code: 307,
            body: String::new(),
            headers: vec![(
                "location",
                format!("{}/chat/completions", target.base_url()),
            )],
        },
    );
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await
        .unwrap();
    // A redirect is a failure: the next key answers (see tests/robustness.rs).
    assert_eq!(r.status(), 200);
    assert_eq!(up.count_by_key()["k2"], 1);
    assert!(
        target.requests().is_empty(),
        "the redirect must not be followed"
    );
    for code in [404u16, 422] {
        up.clear();
        up.set(
            "k1",
            Behavior::Status {
                code,
                body: "{\"error\":{}}".into(),
                headers: vec![],
            },
        );
        up.set(
            "k2",
            Behavior::Status {
                code,
                body: "{\"error\":{}}".into(),
                headers: vec![],
            },
        );
        assert_eq!(chat(&router, hello("g")).await.status(), code);
        assert_eq!(up.requests().len(), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_an_error_event_and_no_done() {
    let (up, router) = two_keys("").await;
    // A gap, so the headers leave before the break.
    up.stream_shape(5, Duration::from_millis(50));
    up.set("k1", Behavior::DropAfter(2));
    let text = chat(&router, stream_body()).await.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.len(), 3, "{data:?}");
    assert!(
        data[2].contains("\"code\":\"stream_interrupted\""),
        "{data:?}"
    );
    assert!(!text.contains("[DONE]"));
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "stream_interrupted");
    // Usage for what was streamed is recorded, estimated with tiktoken.
    assert_eq!(logs[0]["usage_estimated"], true);
    assert!(
        logs[0]["completion_tokens"].as_u64().unwrap() >= 2,
        "{}",
        logs[0]
    );
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout() {
    let (up, router) = two_keys("timeouts: {idle: 300ms}").await;
    up.set("k1", Behavior::StallAfter(2));
    let started = Instant::now();
    let text = chat(&router, stream_body()).await.text().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        text.contains("stream_interrupted") && !text.contains("[DONE]"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_stream() {
    let (up, router) = two_keys("").await;
    up.stream_shape(100, Duration::from_millis(100));
    let mut r = chat(&router, stream_body()).await;
    r.chunk().await.unwrap();
    r.chunk().await.unwrap();
    drop(r);
    wait_for(
        "the upstream to be cancelled",
        Duration::from_secs(1),
        async || up.state.cancelled.load(Ordering::SeqCst) > 0,
    )
    .await;
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "client_disconnected");
    assert!(logs[0]["completion_tokens"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn a_client_disconnect_cancels_a_pending_non_stream_request() {
    let (up, router) = two_keys("").await;
    up.set("k1", Behavior::Hang);
    let result = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .timeout(Duration::from_millis(300))
        .json(&hello("g"))
        .send()
        .await;
    assert!(result.is_err());
    wait_for(
        "the upstream to be cancelled",
        Duration::from_secs(1),
        async || up.state.cancelled.load(Ordering::SeqCst) > 0,
    )
    .await;
}

#[tokio::test]
async fn sixty_four_concurrent_streams_all_complete() {
    let (up, router) = two_keys("").await;
    up.stream_shape(10, Duration::from_millis(20));
    let tasks: Vec<_> = (0..64)
        .map(|_| spawn_stream(&router, stream_body()))
        .collect();
    for t in tasks {
        let data = sse_data(&t.await.unwrap());
        assert_eq!(data.len(), 11);
        assert_eq!(data.last().unwrap(), "[DONE]");
    }
    let counts = up.count_by_key();
    assert_eq!(counts["k1"] + counts["k2"], 64);
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_then_exits_zero() {
    let (up, mut router) = two_keys("").await;
    up.stream_shape(8, Duration::from_millis(100));
    let tasks: Vec<_> = (0..3)
        .map(|_| spawn_stream(&router, stream_body()))
        .collect();
    tokio::time::sleep(Duration::from_millis(250)).await;
    router.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused while draining.
    assert!(client().get(router.url("/health")).send().await.is_err());
    for t in tasks {
        let data = sse_data(&t.await.unwrap());
        assert_eq!(data.last().unwrap(), "[DONE]", "{data:?}");
    }
    assert_eq!(router.wait_exit(Duration::from_secs(5)), Some(0));
}

#[tokio::test]
async fn streams_still_open_after_the_drain_end_with_an_error_event() {
    let (up, mut router) = two_keys("timeouts: {drain: 500ms}").await;
    up.stream_shape(100, Duration::from_millis(100));
    let url = router.url("/v1/chat/completions");
    let task = tokio::spawn(async move {
        let r = client()
            .post(url)
            .bearer_auth(CLIENT_KEY)
            .json(&stream_body())
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    router.signal("TERM");
    let text = task.await.unwrap();
    assert!(text.contains("\"code\":\"shutting_down\""), "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(router.wait_exit(Duration::from_secs(5)), Some(0));
}

#[tokio::test]
async fn active_health_checks_take_a_provider_out_and_back() {
    let sick = MockUpstream::start().await;
    let well = MockUpstream::start().await;
    sick.state.models_status.store(503, Ordering::SeqCst);
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\ngroups:\n  - name: g\n    models:\n      - {{weight: 1, provider: sick, name: m}}\n      - {{weight: 1, provider: well, name: m}}\nproviders:\n  - {{name: sick, base_url: {:?}, api_keys: [ks], health_check: {{interval: 200ms}}}}\n  - {{name: well, base_url: {:?}, api_keys: [kw]}}\n",
        sick.base_url(),
        well.base_url()
    );
    let router = RouterProcess::start(&cfg);
    // Wait for the first probe to mark it down.
    let start = Instant::now();
    while sick.state.models_probes.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..6 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    assert!(
        sick.requests().is_empty(),
        "a provider marked down gets no traffic"
    );

    sick.state.models_status.store(0, Ordering::SeqCst);
    let probes = sick.state.models_probes.load(Ordering::SeqCst);
    while sick.state.models_probes.load(Ordering::SeqCst) < probes + 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(
        sick.requests().len(),
        1,
        "back up, and with the least usage, it is chosen"
    );
}
