//! Hostile input over raw sockets, from clients and from providers: every
//! case gets a clear status, and the router stays healthy afterwards. (What
//! a hostile provider costs in memory, read from /proc, is in
//! `tests/robustness.rs`: endless events, huge answers, stalled bodies,
//! redirects, bare error pages.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// Sends raw bytes and returns the response's status code (0 if the
/// connection closed without one).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn post(body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

async fn healthy(addr: SocketAddr) {
    let (status, _) = raw(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "router unhealthy after a hostile request");
}

/// A router over one mock provider, with a 500 ms header read timeout.
async fn router_with_header_timeout() -> (MockUpstream, RouterProcess) {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "m")],
        "timeouts: {header_read: 500ms}",
    );
    (up, RouterProcess::start(&cfg))
}

#[tokio::test]
async fn hostile_requests_get_clear_statuses_and_the_router_survives() {
    let (up, router) = router_with_header_timeout().await;
    let addr = router.addr;
    let deep = format!(r#"{{"model":"g","x":{}}}"#, "[".repeat(5000));
    let long_model = format!(r#"{{"model":"{}"}}"#, "m".repeat(10_000));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(100_000));
    let long_auth = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}",
        "z".repeat(8000)
    );

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("1 GiB content-length", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-client-key-5f2c\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n{".to_vec(), 413),
        ("invalid json", post(b"{nope", ""), 400),
        ("empty body", post(b"", ""), 400),
        ("json null", post(b"null", ""), 400),
        ("json array", post(b"[1,2]", ""), 400),
        ("json string", post(b"\"model\"", ""), 400),
        ("duplicate model", post(br#"{"model":"g","model":"other"}"#, ""), 400),
        ("duplicate stream", post(br#"{"model":"g","stream":false,"stream":true}"#, ""), 400),
        ("model with CRLF", post(b"{\"model\":\"g\\r\\nX-Injected: 1\"}", ""), 400),
        ("model with NUL", post(b"{\"model\":\"g\\u0000\"}", ""), 400),
        ("model is an object", post(br#"{"model":{"name":"g"}}"#, ""), 400),
        ("model is null", post(br#"{"model":null}"#, ""), 400),
        ("stream is a string", post(br#"{"model":"g","stream":"true"}"#, ""), 400),
        ("stream_options is an array", post(br#"{"model":"g","stream":true,"stream_options":[]}"#, ""), 400),
        ("include_usage is a string", post(br#"{"model":"g","stream":true,"stream_options":{"include_usage":"yes"}}"#, ""), 400),
        ("deep nesting", post(deep.as_bytes(), ""), 400),
        ("invalid utf-8", post(b"{\"model\":\"g\xff\xfe\"}", ""), 400),
        ("byte order mark", post(b"\xef\xbb\xbf{\"model\":\"g\"}", ""), 400),
        ("trailing garbage", post(br#"{"model":"g"} {"model":"g"}"#, ""), 400),
        ("unterminated string", post(br#"{"model":"g"#, ""), 400),
        ("10 KB model name", post(long_model.as_bytes(), ""), 404),
        ("unknown group", post(br#"{"model":"../../etc/passwd"}"#, ""), 404),
        ("huge header", post(br#"{"model":"g"}"#, &huge_header), 431),
        ("too many headers", post(br#"{"model":"g"}"#, &many_headers), 431),
        ("8 KB bearer token", long_auth.into_bytes(), 401),
        ("no auth", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(), 401),
        ("wrong method", b"DELETE /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-client-key-5f2c\r\nConnection: close\r\n\r\n".to_vec(), 405),
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400),
        // RFC 9112: chunked wins over Content-Length; the empty body is then a 400.
        ("both content-length and chunked", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-client-key-5f2c\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec(), 400),
        ("negative content-length", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n".to_vec(), 400),
        ("bad chunk size", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-client-key-5f2c\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(), 400),
        ("header without colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\nConnection: close\r\n\r\n".to_vec(), 400),
        ("unknown path", b"GET /v1/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), 404),
        ("redirect fields in body are ignored", post(br#"{"model":"g","api_base":"http://169.254.169.254/","base_url":"http://evil"}"#, ""), 200),
        ("http/1.0 request", b"GET /health HTTP/1.0\r\n\r\n".to_vec(), 200),
        ("text/plain content type still parsed", post(br#"{"model":"g"}"#, "X-Note: 1\r\n"), 200),
    ];
    assert!(cases.len() >= 30);
    for (name, bytes, expected) in &cases {
        let (status, text) = raw(addr, bytes).await;
        assert_eq!(
            status,
            *expected,
            "case {name:?}: got {status}\n{}",
            text.chars().take(300).collect::<String>()
        );
        if (400..500).contains(&status) && text.contains("\r\n\r\n{") {
            let body = text.split_once("\r\n\r\n").unwrap().1;
            let v: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
            assert!(v["error"]["message"].is_string(), "{name}: {body}");
        }
        healthy(addr).await;
    }
    // Traffic only ever went to the configured upstream.
    assert!(
        up.requests()
            .iter()
            .all(|r| r.path == "/v1/chat/completions")
    );
    let logs = router.logs();
    assert!(
        !logs.contains("X-Injected: 1"),
        "control characters reached the log unescaped"
    );
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let (_up, router) = router_with_header_timeout().await;
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    // The server gives up on us: it closes (possibly after a 408).
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("the server never closed the slow connection")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(4));
    healthy(router.addr).await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered() {
    let up = MockUpstream::start().await;
    let cfg = config(&[("p", &up.base_url(), &["k"])], &[(1, "p", "m")], "");
    let router = RouterProcess::start(&cfg);
    let (_, text) = raw(
        router.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
}

// ------------------------------------------------------------ providers

use common::raw::RawUpstream;

async fn through(up: &RawUpstream, body: serde_json::Value) -> (RouterProcess, reqwest::Response) {
    let router = RouterProcess::start(&config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        "",
    ));
    let r = chat(&router, body).await;
    (router, r)
}

#[tokio::test]
async fn a_provider_claiming_gzip_it_does_not_send_cannot_hurt_the_router() {
    let up = RawUpstream::start(|mut conn| async move {
        let body = r#"{"choices":[{"message":{"content":"plain"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let head = [
            ("content-type", "application/json".to_string()),
            ("content-encoding", "gzip".to_string()),
            ("content-length", body.len().to_string()),
        ];
        conn.head("200 OK", &head).await;
        conn.send(body.as_bytes()).await;
    })
    .await;
    let (router, r) = through(&up, hello("g")).await;
    // Relayed as the provider labelled it: the router never decodes what it
    // did not ask for, and neither re-encodes it.
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["status"], 200);
    healthy(router.addr).await;
}

#[tokio::test]
async fn a_provider_head_over_the_limit_is_a_failure_not_a_crash() {
    let up = RawUpstream::start(|mut conn| async move {
        let huge = "x".repeat(1024 * 1024);
        conn.head("200 OK", &[("x-padding", huge)]).await;
        conn.send(b"{}").await;
    })
    .await;
    let (router, r) = through(&up, hello("g")).await;
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_error");
    healthy(router.addr).await;
}

#[tokio::test]
async fn events_sent_a_byte_at_a_time_arrive_whole_and_in_order() {
    const STREAM: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9\"}}]}\r\n\r\n: keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";
    let up = RawUpstream::start(|mut conn| async move {
        let head = [
            ("content-type", "text/event-stream".to_string()),
            ("connection", "close".to_string()),
        ];
        conn.head("200 OK", &head).await;
        for b in STREAM {
            conn.send(std::slice::from_ref(b)).await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await;
    let body = serde_json::json!({"model": "g", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let (router, r) = through(&up, body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text.as_bytes(), STREAM, "every byte, in order, exactly");
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["total_tokens"], 5);
    assert_eq!(logs[0]["outcome"], "ok");
}
