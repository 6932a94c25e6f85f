//! A provider is trusted with data, not with the router's memory or time:
//! whatever it (or a client) sends, one request costs a bounded amount of
//! both. Each test reads the router's RSS from /proc while it runs.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::raw::{RawUpstream, RssPeak, rss_bytes};
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MB: u64 = 1024 * 1024;

/// One request may grow the router's memory by at most this much.
const REQUEST_BUDGET: u64 = 64 * MB;

fn one_provider(url: &str, extra: &str) -> RouterProcess {
    let admin = "admin_key: admin-key-robust\n".to_string() + extra;
    RouterProcess::start(&config(&[("p", url, &["k1"])], &[(1, "p", "m")], &admin))
}

/// Reads a response body to its end without keeping it; its length.
async fn drain(response: reqwest::Response) -> (u64, Vec<u8>) {
    let mut total = 0u64;
    let mut tail = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        total += chunk.len() as u64;
        tail.extend_from_slice(&chunk);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
    }
    (total, tail)
}

async fn key_usage(router: &RouterProcess) -> Value {
    let v: Value = admin_get(router, "/admin/usage", "admin-key-robust")
        .await
        .json()
        .await
        .unwrap();
    v["usage"][0].clone()
}

#[tokio::test]
async fn an_event_that_never_ends_is_cut_at_the_cap_and_costs_the_key() {
    // 300 MB of one event, no blank line, as fast as the router reads.
    let up = RawUpstream::start(|mut conn| async move {
        let head = [
            ("content-type", "text/event-stream".to_string()),
            ("connection", "close".to_string()),
        ];
        if !conn.head("200 OK", &head).await || !conn.send(b"data: ").await {
            return;
        }
        let block = vec![b'a'; 64 * 1024];
        for _ in 0..(300 * MB / block.len() as u64) {
            if !conn.send(&block).await {
                return;
            }
        }
    })
    .await;
    let router = one_provider(&up.base_url(), "");
    let before = rss_bytes(router.pid());
    let peak = RssPeak::watch(router.pid());
    let started = Instant::now();
    let r = chat(
        &router,
        serde_json::json!({"model": "g", "stream": true, "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let peak = peak.stop();
    assert!(
        text.contains("\"code\":\"stream_interrupted\""),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(!text.contains("[DONE]"));
    // The router hung up long before the provider was done.
    wait_for(
        "the router to hang up",
        Duration::from_secs(10),
        async || up.state.hung_up.load(Ordering::SeqCst),
    )
    .await;
    let sent = up.state.written.load(Ordering::SeqCst);
    assert!(sent < 64 * MB, "the provider got to send {sent} bytes");
    assert!(
        peak - before < REQUEST_BUDGET,
        "RSS grew {} MB",
        (peak - before) / MB
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "event_too_large");
    let usage = key_usage(&router).await;
    assert_eq!(usage["errors"], 1, "{usage}");
    assert_eq!(usage["health"]["reason"], "broken_answer", "{usage}");
}

/// A chat completion whose content is `content_bytes` of text, with its
/// usage at the very end, sent in 64 KiB writes.
async fn huge_answer(content_bytes: u64) -> RawUpstream {
    RawUpstream::start(move |mut conn| async move {
        let start = br#"{"id":"chatcmpl-huge","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""#;
        let end = br#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
        let length = start.len() as u64 + content_bytes + end.len() as u64;
        let head = [
            ("content-type", "application/json".to_string()),
            ("content-length", length.to_string()),
        ];
        if !conn.head("200 OK", &head).await || !conn.send(start).await {
            return;
        }
        let block = vec![b'x'; 64 * 1024];
        let mut left = content_bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if !conn.send(&block[..n]).await {
                return;
            }
            left -= n as u64;
        }
        conn.send(end).await;
    })
    .await
}

#[tokio::test]
async fn a_huge_answer_flows_through_in_bounded_memory_and_its_usage_counts() {
    let up = huge_answer(200 * MB).await;
    let router = one_provider(&up.base_url(), "");
    let before = rss_bytes(router.pid());
    let peak = RssPeak::watch(router.pid());
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    let (len, tail) = drain(r).await;
    let peak = peak.stop();
    assert!(len > 200 * MB, "{len}");
    assert!(String::from_utf8_lossy(&tail).ends_with(r#""total_tokens":18}}"#));
    assert!(
        peak - before < REQUEST_BUDGET,
        "RSS grew {} MB",
        (peak - before) / MB
    );
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "ok");
    assert_eq!(logs[0]["total_tokens"], 18);
    assert_eq!(logs[0]["usage_estimated"], false);

    // Sixteen 20 MB answers at once: bounded too, and the memory goes back.
    let up = huge_answer(20 * MB).await;
    let router = one_provider(&up.base_url(), "");
    let before = rss_bytes(router.pid());
    let peak = RssPeak::watch(router.pid());
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let url = router.url("/v1/chat/completions");
            tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .bearer_auth(CLIENT_KEY)
                    .json(&hello("g"))
                    .send()
                    .await
                    .unwrap();
                drain(r).await.0
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap() > 20 * MB);
    }
    let peak = peak.stop();
    assert!(
        peak - before < REQUEST_BUDGET,
        "16 answers grew RSS {} MB",
        (peak - before) / MB
    );
    let logs = router.wait_request_logs(16).await;
    assert!(logs.iter().all(|l| l["total_tokens"] == 18), "{logs:?}");
    wait_for("memory to go back", Duration::from_secs(10), async || {
        rss_bytes(router.pid()) < before + 16 * MB
    })
    .await;
}

#[tokio::test]
async fn an_answer_past_max_response_bytes_is_refused_or_cut_off() {
    // Declared too large: a 502 before any byte.
    let up = huge_answer(8 * MB).await;
    let router = one_provider(&up.base_url(), "limits: {max_response_bytes: 4MiB}");
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "response_too_large");
    // Undeclared (read until close): cut off past the limit.
    let up = RawUpstream::start(|mut conn| async move {
        let head = [
            ("content-type", "application/json".to_string()),
            ("connection", "close".to_string()),
        ];
        if !conn.head("200 OK", &head).await
            || !conn.send(br#"{"choices":[{"message":{"content":""#).await
        {
            return;
        }
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..200 {
            if !conn.send(&block).await {
                return;
            }
        }
    })
    .await;
    let router = one_provider(&up.base_url(), "limits: {max_response_bytes: 2MiB}");
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut total = 0;
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => total += c.len() as u64,
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the body must end in an error, not look complete");
    assert!(total <= 2 * MB, "{total}");
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "response_too_large");
}

#[tokio::test]
async fn a_client_that_stalls_its_body_gets_a_408_and_a_closed_connection() {
    let up = MockUpstream::start().await;
    let router = one_provider(&up.base_url(), "timeouts: {request_body: 1s}");
    let mut s = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "request_timeout");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(up.requests().is_empty());

    // The gap between pieces is bounded too, however long the whole may take.
    let router = one_provider(
        &up.base_url(),
        "timeouts: {request_body: 60s, request_body_idle: 500ms}",
    );
    let mut s = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_redirect_is_a_failure_that_fails_over_and_never_reaches_the_client() {
    let up = MockUpstream::start().await;
    let metadata = "http://169.254.169.254/latest/meta-data/iam";
    let redirect = |code| Behavior::Status {
        code,
        body: String::new(),
        headers: vec![("location", metadata.to_string())],
    };
    let cfg = config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "m")],
        "admin_key: admin-key-robust",
    );
    let router = RouterProcess::start(&cfg);
    up.set("k1", redirect(302));
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.count_by_key()["k2"], 1);
    // Every candidate redirects: a 502 that names no URL.
    up.set("k2", redirect(307));
    up.set("k1", redirect(301));
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
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("location").is_none());
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("169.254") && !text.contains("http"),
        "{text}"
    );
    let logs = router.wait_log("upstream attempt failed").await;
    assert!(logs.contains("Redirected(302)"), "{logs}");
    assert!(!logs.contains("169.254"), "the Location reached the logs");
    let v: Value = admin_get(&router, "/admin/usage", "admin-key-robust")
        .await
        .json()
        .await
        .unwrap();
    let errors: u64 = v["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["errors"].as_u64().unwrap())
        .sum();
    assert_eq!(errors, 3, "{v}");
}

#[tokio::test]
async fn provider_errors_reach_the_client_in_openai_shape() {
    let up = MockUpstream::start().await;
    let router = one_provider(&up.base_url(), "");
    let status = |code, body: &str| Behavior::Status {
        code,
        body: body.into(),
        headers: vec![("content-type", "text/html".into())],
    };
    up.set(
        "k1",
        status(404, "<html><body><h1>404 Not Found</h1></body></html>"),
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "provider answered 404: <html><body><h1>404 Not Found</h1></body></html>"
    );
    assert_eq!(v["error"]["type"], "upstream_error");
    assert_eq!(v["error"]["code"], "404");
    // The official client shows that message (it used to show only the code).
    if let Some(v) = sdk::run_async("openai-error", router.url(""), CLIENT_KEY, "g").await {
        assert_eq!(v["error_class"], "NotFoundError", "{v}");
        assert_eq!(v["status"], 404);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("provider answered 404: <html>"),
            "{v}"
        );
    }
    up.set("k1", status(400, ""));
    let v: Value = chat(&router, hello("g")).await.json().await.unwrap();
    assert_eq!(v["error"]["message"], "provider answered 400: empty body");
    // An OpenAI-shaped error passes through unchanged, byte for byte.
    let own = r#"{"error":{"message":"context too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    up.set(
        "k1",
        Behavior::Status {
            code: 400,
            body: own.into(),
            headers: vec![],
        },
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), own);
}

#[tokio::test]
async fn a_client_that_closes_after_the_last_event_lost_nothing() {
    // The provider sends [DONE], then keeps the connection open a while.
    let up = RawUpstream::start(|mut conn| async move {
        let head = [("content-type", "text/event-stream".to_string()), ("connection", "close".to_string())];
        conn.head("200 OK", &head).await;
        conn.send(b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n").await;
        conn.send(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n").await;
        conn.send(b"data: [DONE]\n\n").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    let router = one_provider(&up.base_url(), "");
    let r = chat(
        &router,
        serde_json::json!({"model": "g", "stream": true, "messages": []}),
    )
    .await;
    let mut body = r.bytes_stream();
    let mut seen = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        seen.extend_from_slice(&chunk);
        if seen.windows(6).any(|w| w == b"[DONE]") {
            break;
        }
    }
    drop(body);
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["outcome"], "ok", "{:?}", logs[0]);
    assert_eq!(logs[0]["total_tokens"], 4);
}
