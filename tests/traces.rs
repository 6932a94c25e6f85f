//! OpenTelemetry traces, through the real binary, exported to a real OTLP
//! receiver in the test (`common::otlp`): the span tree of a failover, the
//! GenAI attributes, trace context in from the client and out to the
//! provider, no key and no content (unless asked), and a collector that is
//! down, failing or stalled costing no request.

mod common;

use std::time::Duration;

use common::otlp::{Collector, Mode, Received};
use common::*;
use serde_json::{Value, json};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "what is the airspeed of an unladen swallow";
const ANSWER: &str = "hello from upstream";

/// Batches leave every 50 ms (the default is 5 s).
const FAST_EXPORT: [(&str, &str); 1] = [("OTEL_BSP_SCHEDULE_DELAY", "50")];

/// Group `g`: `bad` (weight 0, tried first) answers 500; `good` answers.
async fn failover_router(tracing: &str) -> (MockUpstream, RouterProcess) {
    let up = MockUpstream::start().await;
    up.set("sk-bad-provider-key", Behavior::status(500));
    let base = up.base_url();
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\n{tracing}\n\
         groups:\n  - name: g\n    models:\n\
         \x20     - {{weight: 0, provider: bad, name: m-bad}}\n\
         \x20     - {{weight: 1, provider: good, name: m-good}}\n\
         providers:\n\
         \x20 - {{name: bad, base_url: {base:?}, api_keys: [sk-bad-provider-key]}}\n\
         \x20 - {{name: good, base_url: {base:?}, api_keys: [sk-good-provider-key]}}\n"
    );
    let router = RouterProcess::start_with(&cfg, &[], &FAST_EXPORT);
    (up, router)
}

fn tracing_section(collector: &Collector, extra: &str) -> String {
    format!(
        "tracing:\n  otlp_endpoint: {}\n  sample_ratio: 1.0\n  headers: {{authorization: Bearer collector-token-77}}\n{extra}",
        collector.url()
    )
}

fn prompt(stream: bool) -> Value {
    json!({"model": "g", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
}

async fn chat_with(router: &RouterProcess, body: Value, traceparent: Option<&str>) -> String {
    let mut request = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&body);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The server span and its attempt children, in attempt order.
fn tree(spans: &[Received]) -> (&Received, Vec<&Received>) {
    let server: Vec<&Received> = spans.iter().filter(|s| s.kind() == 2).collect();
    assert_eq!(server.len(), 1, "one server span: {spans:#?}");
    let server = server[0];
    let mut attempts: Vec<&Received> = spans
        .iter()
        .filter(|s| s.kind() == 3 && s.parent_id() == server.span_id())
        .collect();
    attempts.sort_by_key(|s| s.int("llm_router.attempt"));
    (server, attempts)
}

#[tokio::test]
async fn a_failover_is_two_sibling_attempts_under_the_request_span() {
    let collector = Collector::start().await;
    let (up, router) = failover_router(&tracing_section(&collector, "")).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let body = chat_with(&router, prompt(false), Some(&traceparent)).await;
    let answer: Value = serde_json::from_str(&body).unwrap();

    collector.wait_spans(3).await;
    let spans = collector.trace(CLIENT_TRACE);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let (server, attempts) = tree(&spans);

    // The request: a child of the client's span, named by its route.
    assert_eq!(server.name(), "POST /v1/chat/completions");
    assert_eq!(server.parent_id(), CLIENT_SPAN);
    assert_eq!(server.str("gen_ai.operation.name"), "chat");
    assert_eq!(server.str("gen_ai.request.model"), "g");
    assert_eq!(server.str("gen_ai.response.model"), "m-good");
    assert_eq!(server.str("gen_ai.provider.name"), "openai");
    assert_eq!(
        server.int("gen_ai.usage.input_tokens"),
        answer["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        server.int("gen_ai.usage.output_tokens"),
        answer["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(server.int("llm_router.attempts"), 2);
    assert_eq!(server.str("llm_router.outcome"), "ok");
    assert_eq!(server.str("llm_router.key"), "good#0");
    assert_eq!(server.int("http.response.status_code"), 200);
    assert_ne!(server.status(), 2, "the request succeeded");
    assert_eq!(
        server
            .resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone()),
        Some(json!("llm-router"))
    );

    // Two attempts, siblings: the failed one, then the one that answered.
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let (failed, answered) = (attempts[0], attempts[1]);
    assert_eq!(failed.name(), "chat m-bad");
    assert_eq!(failed.int("llm_router.attempt"), 1);
    assert_eq!(failed.str("llm_router.key"), "bad#0");
    assert_eq!(failed.str("llm_router.provider"), "bad");
    assert_eq!(failed.str("gen_ai.request.model"), "m-bad");
    assert_eq!(failed.int("http.response.status_code"), 500);
    assert_eq!(failed.str("error.type"), "server_error");
    assert_eq!(failed.status(), 2, "error status");
    assert_eq!(answered.name(), "chat m-good");
    assert_eq!(answered.int("llm_router.attempt"), 2);
    assert_eq!(answered.str("gen_ai.provider.name"), "openai");
    assert_eq!(answered.str("server.address"), "127.0.0.1");
    assert_eq!(answered.int("http.response.status_code"), 200);
    assert_eq!(
        answered.int("gen_ai.usage.output_tokens"),
        server.int("gen_ai.usage.output_tokens")
    );
    assert_ne!(answered.status(), 2);
    // The attempts lie within the request, in order.
    assert!(failed.span.start_time_unix_nano >= server.span.start_time_unix_nano);
    assert!(answered.span.start_time_unix_nano >= failed.span.end_time_unix_nano);
    assert!(answered.span.end_time_unix_nano <= server.span.end_time_unix_nano);

    // Each upstream request carried its own attempt's context.
    let sent: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sent,
        vec![
            format!("00-{CLIENT_TRACE}-{}-01", failed.span_id()),
            format!("00-{CLIENT_TRACE}-{}-01", answered.span_id()),
        ]
    );

    // The log line names the trace.
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["trace_id"], CLIENT_TRACE);

    // The collector got its header; nothing secret and no text is on a span.
    assert!(
        collector
            .headers()
            .iter()
            .all(|h| h["authorization"] == "Bearer collector-token-77")
    );
    for span in collector.spans() {
        let text = span.all_text();
        for secret in [
            "sk-bad-provider-key",
            "sk-good-provider-key",
            CLIENT_KEY,
            "collector-token-77",
            PROMPT,
            ANSWER,
        ] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace_and_a_stream_ends_its_span() {
    let collector = Collector::start().await;
    let (up, router) = failover_router(&tracing_section(&collector, "")).await;
    let text = chat_with(&router, prompt(true), None).await;
    assert!(text.contains("[DONE]"));
    let spans = collector.wait_spans(3).await;
    let (server, attempts) = tree(&spans);
    assert_eq!(server.parent_id(), "", "a root span");
    assert_eq!(attempts.len(), 2);
    assert!(server.int("gen_ai.usage.output_tokens") > 0);
    assert_eq!(server.str("llm_router.outcome"), "ok");
    // The span lasted as long as the stream: the answering attempt ended
    // when its last event was relayed, within the request.
    assert!(attempts[1].span.end_time_unix_nano <= server.span.end_time_unix_nano);
    let last = up.requests().pop().unwrap();
    let tp = last.headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(
        tp,
        format!("00-{}-{}-01", server.trace_id(), attempts[1].span_id())
    );
    let logs = router.wait_request_logs(1).await;
    assert_eq!(
        logs[0]["trace_id"].as_str(),
        Some(server.trace_id().as_str())
    );
}

#[tokio::test]
async fn refused_requests_are_traced_without_the_key_they_sent() {
    let collector = Collector::start().await;
    let (_up, router) = failover_router(&tracing_section(&collector, "")).await;
    let wrong_key = "sk-wrong-client-key-314159";
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(wrong_key)
        .json(&prompt(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = chat(&router, json!({"model": "nope", "messages": []})).await;
    assert_eq!(r.status(), 404);
    let spans = collector.wait_spans(2).await;
    let codes: Vec<i64> = spans
        .iter()
        .map(|s| s.int("http.response.status_code"))
        .collect();
    assert!(codes.contains(&401) && codes.contains(&404), "{codes:?}");
    for s in &spans {
        assert_eq!(s.status(), 2);
        assert!(!s.all_text().contains(wrong_key));
        assert!(!s.all_text().contains(CLIENT_KEY));
    }
}

#[tokio::test]
async fn content_is_recorded_only_when_asked() {
    let collector = Collector::start().await;
    let (_up, router) =
        failover_router(&tracing_section(&collector, "  capture_content: true\n")).await;
    chat_with(&router, prompt(false), None).await;
    chat_with(&router, prompt(true), None).await;
    // The first request failed over (3 spans); `bad` then cools down.
    let spans = collector.wait_spans(5).await;
    let servers: Vec<&Received> = spans.iter().filter(|s| s.kind() == 2).collect();
    assert_eq!(servers.len(), 2);
    let mut outputs = Vec::new();
    for server in servers {
        let input: Value = serde_json::from_str(&server.str("gen_ai.input.messages")).unwrap();
        assert_eq!(input[0]["content"], PROMPT);
        let output: Value = serde_json::from_str(&server.str("gen_ai.output.messages")).unwrap();
        assert_eq!(output[0]["role"], "assistant");
        outputs.push(
            output[0]["parts"][0]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        // Still no key.
        assert!(!server.all_text().contains("sk-good-provider-key"));
    }
    outputs.sort();
    // The JSON answer's text, and the stream's deltas put together.
    assert_eq!(outputs, [ANSWER, "w0 w1 w2 w3 w4 "]);
}

#[tokio::test]
async fn a_sample_ratio_of_zero_keeps_only_traces_the_client_sampled() {
    let collector = Collector::start().await;
    let section = format!(
        "tracing:\n  otlp_endpoint: {}\n  sample_ratio: 0\n",
        collector.url()
    );
    let (up, router) = failover_router(&section).await;
    for _ in 0..3 {
        chat_with(&router, prompt(false), None).await;
    }
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    chat_with(&router, prompt(false), Some(&traceparent)).await;
    let spans = collector.wait_spans(2).await;
    // Give stray spans time to arrive, then check only the client's trace came.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans_now = collector.spans();
    assert!(spans_now.len() >= spans.len());
    assert!(
        spans_now.iter().all(|s| s.trace_id() == CLIENT_TRACE),
        "{spans_now:#?}"
    );
    // Unsampled requests still carry their context upstream, flagged so.
    let flags: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap()[53..].to_string())
        .collect();
    assert!(
        flags.contains(&"00".to_string()) && flags.contains(&"01".to_string()),
        "{flags:?}"
    );
}

#[tokio::test]
async fn grpc_export_works_too() {
    let collector = Collector::start().await;
    let section = format!(
        "tracing:\n  otlp_endpoint: {}\n  protocol: grpc\n  service_name: edge-router\n  headers: {{x-tenant: acme}}\n",
        collector.url()
    );
    let (_up, router) = failover_router(&section).await;
    chat_with(&router, prompt(false), None).await;
    let spans = collector.wait_spans(3).await;
    let (server, attempts) = tree(&spans);
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        server
            .resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v.clone()),
        Some(json!("edge-router"))
    );
    assert!(collector.headers().iter().all(|h| h["x-tenant"] == "acme"));
    drop(router);
}

/// Sends `n` requests, 16 at a time, each of which must be answered within
/// 5 s: an export in a request's way would hold it for the export timeout
/// (60 s where the collector stalls).
async fn requests_go_on(router: &RouterProcess, n: usize) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = router.url("/v1/chat/completions");
    let mut left = n;
    while left > 0 {
        let batch = left.min(16);
        left -= batch;
        let sends = (0..batch).map(|_| {
            http.post(&url)
                .bearer_auth(CLIENT_KEY)
                .json(&prompt(false))
                .send()
        });
        for r in futures_util::future::join_all(sends).await {
            assert_eq!(
                r.expect("answered while the collector is away").status(),
                200
            );
        }
    }
}

async fn lost_spans(router: &RouterProcess, reason: &str) -> f64 {
    let text = metrics_text(router).await;
    metric(
        &text,
        &format!("llm_router_trace_export_failures_total{{reason=\"{reason}\"}}"),
    )
    .unwrap()
}

#[tokio::test]
async fn a_dead_or_refusing_collector_costs_no_request_and_its_spans_are_counted() {
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let (_up, router) =
        failover_router(&format!("tracing:\n  otlp_endpoint: http://{dead}\n")).await;
    assert_eq!(lost_spans(&router, "export_failed").await, 0.0);
    requests_go_on(&router, 40).await;
    wait_for("lost spans counted", Duration::from_secs(10), async || {
        // A server span and at least one attempt span per request.
        lost_spans(&router, "export_failed").await >= 80.0
    })
    .await;

    // A collector that answers 503.
    let collector = Collector::start().await;
    collector.set_mode(Mode::Fail);
    let (_up, router) = failover_router(&tracing_section(&collector, "")).await;
    requests_go_on(&router, 20).await;
    wait_for(
        "refused spans counted",
        Duration::from_secs(10),
        async || lost_spans(&router, "export_failed").await >= 40.0,
    )
    .await;
    assert!(collector.exports() > 0);
}

#[tokio::test]
async fn a_stalled_collector_costs_no_request_and_no_memory_past_the_queue() {
    let collector = Collector::start().await;
    collector.set_mode(Mode::Hang);
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        &format!("tracing:\n  otlp_endpoint: {}\n", collector.url()),
    );
    let router = RouterProcess::start_with(
        &cfg,
        &[],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ],
    );
    // Two spans a request: 1500 requests overflow the 2048-span queue
    // while the first export hangs.
    requests_go_on(&router, 1500).await;
    assert!(
        collector.exports() >= 1,
        "an export is under way (and stalled)"
    );
    wait_for(
        "spans beyond the queue counted",
        Duration::from_secs(10),
        async || lost_spans(&router, "queue_full").await > 0.0,
    )
    .await;
    let dropped = lost_spans(&router, "queue_full").await;
    // At most the queue waits: everything past 2048 spans is dropped.
    assert!(dropped >= 3000.0 - 2048.0, "{dropped} spans dropped");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced_and_client_context_passes_through() {
    let up = MockUpstream::start().await;
    let cfg = config(&[("p", &up.base_url(), &["k1"])], &[(1, "p", "m")], "");
    let router = RouterProcess::start(&cfg);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    chat_with(&router, hello_body(), Some(&traceparent)).await;
    chat_with(&router, hello_body(), None).await;
    let requests = up.requests();
    assert_eq!(requests[0].headers["traceparent"], traceparent.as_str());
    assert!(!requests[1].headers.contains_key("traceparent"));
    let logs = router.wait_request_logs(2).await;
    assert!(logs.iter().all(|l| l.get("trace_id").is_none()), "{logs:?}");
    let text = metrics_text(&router).await;
    assert_eq!(
        metric(
            &text,
            "llm_router_trace_export_failures_total{reason=\"export_failed\"}"
        ),
        Some(0.0)
    );
}

fn hello_body() -> Value {
    json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]})
}
