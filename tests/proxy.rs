//! The core proxy behaviour, through the real binary and a mock upstream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn one_provider(keys: &[&str]) -> (MockUpstream, RouterProcess) {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), keys)],
        &[(1, "p", "upstream-model")],
        "",
    );
    let router = RouterProcess::start(&cfg);
    (up, router)
}

#[tokio::test]
async fn health_and_models_endpoints() {
    let (_up, router) = one_provider(&["k1"]).await;
    let r = client().get(router.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));

    let r = client()
        .get(router.url("/v1/models"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "g");
    assert_eq!(v["data"][0]["object"], "model");
}

#[tokio::test]
async fn v1_routes_require_the_client_key() {
    let (up, router) = one_provider(&["k1"]).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer test-client-key-5f2"),
        Some("Basic dGVzdA=="),
        Some(CLIENT_KEY),
    ] {
        for (method, path) in [("GET", "/v1/models"), ("POST", "/v1/chat/completions")] {
            let mut req = client().request(method.parse().unwrap(), router.url(path));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.json(&hello("g")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "invalid_api_key");
        }
    }
    assert!(up.requests().is_empty());
    // Scheme is case-insensitive, as in RFC 7235.
    let r = client()
        .get(router.url("/v1/models"))
        .header("authorization", format!("bearer {CLIENT_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn model_is_rewritten_and_unknown_fields_pass_both_ways() {
    let (up, router) = one_provider(&["k1"]).await;
    let body = r#"{"model":"g","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_object"},"x_vendor":{"n":1.50,"deep":[1,{"a":null}]},"temperature":0.7}"#;
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("content-type", "application/json")
        .header("openai-beta", "assistants=v2")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["x_upstream_extra"]["kept"], true,
        "unknown response fields survive"
    );
    assert_eq!(v["usage"]["total_tokens"], 16);

    let seen = &up.requests()[0];
    let expected = body.replace(r#""model":"g""#, r#""model":"upstream-model""#);
    assert_eq!(
        std::str::from_utf8(&seen.raw).unwrap(),
        expected,
        "byte-for-byte except model"
    );
    assert_eq!(seen.key, "k1");
    assert_eq!(seen.headers["openai-beta"], "assistants=v2");
    assert_ne!(
        seen.headers["authorization"],
        format!("Bearer {CLIENT_KEY}")
    );
    assert!(!seen.headers.contains_key("accept-encoding"));
}

#[tokio::test]
async fn requests_alternate_between_keys() {
    let (up, router) = one_provider(&["k1", "k2"]).await;
    for _ in 0..6 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let keys: Vec<String> = up.requests().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, ["k1", "k2", "k1", "k2", "k1", "k2"]);
}

#[tokio::test]
async fn weights_skew_traffic_and_weight_zero_always_wins() {
    let up = MockUpstream::start().await;
    // Model a at weight 1 and model b at weight 3: b's tokens count triple,
    // so a gets about three quarters of the traffic.
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "a"), (3, "p", "b")],
        "",
    );
    let router = RouterProcess::start(&cfg);
    for _ in 0..40 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let a = up
        .requests()
        .iter()
        .filter(|r| r.body["model"] == "a")
        .count();
    assert!((27..=33).contains(&a), "model a got {a} of 40");

    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "a"), (0, "p", "zero")],
        "",
    );
    let router = RouterProcess::start(&cfg);
    for _ in 0..10 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    assert!(up.requests().iter().all(|r| r.body["model"] == "zero"));
}

#[tokio::test]
async fn a_burst_of_concurrent_requests_spreads_across_keys() {
    let up = MockUpstream::start().await;
    up.set("k1", Behavior::Delay(Duration::from_millis(100)));
    up.set("k2", Behavior::Delay(Duration::from_millis(100)));
    let cfg = config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "m")],
        "",
    );
    let router = RouterProcess::start(&cfg);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let url = router.url("/v1/chat/completions");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(CLIENT_KEY)
                    .json(&hello("g"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let counts = up.count_by_key();
    let k1 = counts.get("k1").copied().unwrap_or(0);
    assert!((40..=60).contains(&k1), "split was {counts:?}");
}

#[tokio::test]
async fn streams_arrive_progressively_with_done_and_usage_counted() {
    let (up, router) = one_provider(&["k1"]).await;
    up.stream_shape(5, Duration::from_millis(150));
    let body = json!({"model": "g", "stream": true, "messages": []});
    let r = chat(&router, body).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chunks = read_timed(r).await;
    let first = chunks.first().unwrap().0;
    let last = chunks.last().unwrap().0;
    // Five events 150 ms apart: the first must not wait for the last.
    assert!(
        last.duration_since(first) >= Duration::from_millis(450),
        "events were batched"
    );
    let text: String = chunks
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    // The router asked for usage; the client did not, so the usage chunk is gone.
    assert!(data.iter().all(|d| !d.contains("\"usage\"")), "{data:?}");
    assert_eq!(data.len(), 6);
    // Upstream was asked for usage...
    assert_eq!(
        up.requests()[0].body["stream_options"]["include_usage"],
        true
    );
    // ...and it was counted from the usage chunk, not estimated.
    let logs = router.wait_request_logs(1).await;
    assert_eq!(logs[0]["total_tokens"], 16);
    assert_eq!(logs[0]["usage_estimated"], false);
    assert_eq!(logs[0]["outcome"], "ok");
}

#[tokio::test]
async fn a_client_that_asks_for_usage_keeps_the_usage_chunk() {
    let (_up, router) = one_provider(&["k1"]).await;
    let body = json!({"model": "g", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let text = chat(&router, body).await.text().await.unwrap();
    let data = sse_data(&text);
    let usage: Vec<_> = data.iter().filter(|d| d.contains("\"usage\"")).collect();
    assert_eq!(usage.len(), 1);
    let v: Value = serde_json::from_str(usage[0]).unwrap();
    assert_eq!(v["choices"], json!([]));
    assert_eq!(v["usage"]["total_tokens"], 16);
}

async fn decode(encoding: &str, bytes: &[u8]) -> String {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use tokio::io::AsyncReadExt;
    let mut out = String::new();
    match encoding {
        "gzip" => GzipDecoder::new(bytes)
            .read_to_string(&mut out)
            .await
            .unwrap(),
        "br" => BrotliDecoder::new(bytes)
            .read_to_string(&mut out)
            .await
            .unwrap(),
        "zstd" => ZstdDecoder::new(bytes)
            .read_to_string(&mut out)
            .await
            .unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

#[tokio::test]
async fn json_and_sse_are_compressed_when_the_client_accepts_it() {
    let (up, router) = one_provider(&["k1"]).await;
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br;q=1, gzip;q=0.5", "br"),
        ("zstd", "zstd"),
    ] {
        let r = client()
            .post(router.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("accept-encoding", accept)
            .json(&hello("g"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], expected);
        let text = decode(expected, &r.bytes().await.unwrap()).await;
        assert!(text.contains("hello from upstream"), "{text}");
    }

    up.stream_shape(4, Duration::from_millis(150));
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .header("accept-encoding", "gzip")
        .json(&json!({"model": "g", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let chunks = read_timed(r).await;
    // Compressed, yet still one flushed block per event.
    assert!(chunks.len() >= 5, "got {} chunks", chunks.len());
    assert!(chunks.last().unwrap().0.duration_since(chunks[0].0) >= Duration::from_millis(400));
    let all: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let text = decode("gzip", &all).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // No compression without Accept-Encoding.
    let r = chat(&router, hello("g")).await;
    assert!(r.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn cors_preflight_needs_no_key_and_the_allowlist_is_exact() {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "m")],
        "cors: {allowed_origins: [\"https://app.example.com\"]}",
    );
    let router = RouterProcess::start(&cfg);
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, router.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = preflight("https://evil.example.com").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // The actual request from an allowed origin: answered, with CORS headers.
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(r.headers().contains_key("x-request-id"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string());

    // The default allows any origin, without credentials.
    let (_up, router) = one_provider(&["k"]).await;
    let r = client()
        .get(router.url("/v1/models"))
        .bearer_auth(CLIENT_KEY)
        .header("origin", "https://anything.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    for field in ["message", "type", "param", "code"] {
        assert!(v["error"].get(field).is_some(), "missing {field} in {v}");
    }
    (status, v["error"].clone())
}

#[tokio::test]
async fn client_errors_have_openai_shape_and_status() {
    let (up, router) = one_provider(&["k1"]).await;
    let post = |body: &'static str| {
        client()
            .post(router.url("/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, e) = error_of(post("{nope").await.unwrap()).await;
    assert_eq!(
        (s, e["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (s, e) = error_of(post(r#"{"messages":[]}"#).await.unwrap()).await;
    assert_eq!((s, e["param"].as_str()), (400, Some("model")));
    let (s, e) = error_of(post(r#"{"model":7}"#).await.unwrap()).await;
    assert_eq!((s, e["param"].as_str()), (400, Some("model")));
    let (s, e) = error_of(post(r#"{"model":"nope"}"#).await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("model_not_found")));
    let (s, _) = error_of(client().get(router.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(s, 404);

    let r = client()
        .put(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    let (s, _) = error_of(r).await;
    assert_eq!(s, 405);
    assert!(
        up.requests().is_empty(),
        "no bad request reaches the upstream"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "m")],
        "max_body_bytes: 1000",
    );
    let router = RouterProcess::start(&cfg);
    let big = json!({"model": "g", "messages": [{"role": "user", "content": "x".repeat(2000)}]});
    let (s, e) = error_of(chat(&router, big).await).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("request_too_large")));
    // Chunked, with no Content-Length: counted while reading.
    let stream =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 100])));
    let r = client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn unreachable_upstream_is_502_and_slow_upstream_is_504() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let cfg = config(&[("p", &dead_url, &["k"])], &[(1, "p", "m")], "");
    let router = RouterProcess::start(&cfg);
    let (s, e) = error_of(chat(&router, hello("g")).await).await;
    assert_eq!((s, e["code"].as_str()), (502, Some("upstream_error")));

    let up = MockUpstream::start().await;
    up.set("k", Behavior::Hang);
    let cfg = config(
        &[("p", &up.base_url(), &["k"])],
        &[(1, "p", "m")],
        "timeouts: {first_byte: 300ms}",
    );
    let router = RouterProcess::start(&cfg);
    let (s, e) = error_of(chat(&router, hello("g")).await).await;
    assert_eq!((s, e["code"].as_str()), (504, Some("upstream_timeout")));
}

#[tokio::test]
async fn upstream_client_errors_pass_through_unchanged() {
    let (up, router) = one_provider(&["k1", "k2"]).await;
    let body = r#"{"error":{"message":"bad tool schema","type":"invalid_request_error","param":"tools","code":null}}"#;
    up.set(
        "k1",
        Behavior::Status {
            code: 400,
            body: body.into(),
            headers: vec![],
        },
    );
    let r = chat(&router, hello("g")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), body);
    assert_eq!(up.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn logs_have_one_line_per_request_and_no_secrets() {
    let up = MockUpstream::start().await;
    let key = "sk-provider-secret-0123456789";
    let cfg = config(&[("p", &up.base_url(), &[key])], &[(1, "p", "m")], "");
    let router = RouterProcess::start(&cfg);
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(
        chat(
            &router,
            json!({"model": "g", "stream": true, "messages": []})
        )
        .await
        .status(),
        200
    );
    let _ = client()
        .get(router.url("/v1/models"))
        .bearer_auth("wrong-key-zzz")
        .send()
        .await;
    let logs = router.wait_request_logs(3).await;
    assert_eq!(logs.len(), 3);
    let line = &logs[0];
    for field in [
        "request_id",
        "group",
        "provider",
        "model",
        "key",
        "status",
        "total_tokens",
        "latency_ms",
    ] {
        assert!(line.get(field).is_some(), "missing {field} in {line}");
    }
    assert_eq!(line["key"], "p#0");
    // Names are JSON strings as they are, not Debug-quoted inside them.
    assert_eq!(line["group"], "g");
    assert!(!line["model"].as_str().unwrap().contains('"'), "{line}");
    let all = router.logs();
    for secret in [key, CLIENT_KEY, "wrong-key-zzz"] {
        assert!(!all.contains(secret), "{secret} leaked into logs");
    }
}
