//! Test helpers: send one request to a fresh mock and read its answer, as
//! JSON or as server-sent events.

use axum::Router;
use axum::body::{Body, Bytes};
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{MockOptions, router};

/// The headers of an OpenAI client.
pub(super) const OPENAI: &[(&str, &str)] = &[("authorization", "Bearer k")];
/// The headers of an Anthropic client.
pub(super) const ANTHROPIC: &[(&str, &str)] =
    &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")];

/// A mock that streams without pauses.
pub(super) fn app() -> Router {
    app_with(MockOptions {
        chunk_gap: std::time::Duration::ZERO,
        ..MockOptions::default()
    })
}

pub(super) fn app_with(options: MockOptions) -> Router {
    router(options)
}

/// Sends `method path` with `headers` and `body` (none if null).
pub(super) async fn send(
    app: Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Bytes) {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Value::Null => Body::empty(),
        body => Body::from(body.to_string()),
    };
    let request = request
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

pub(super) async fn post(
    app: Router,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Bytes) {
    send(app, "POST", path, headers, body).await
}

/// Posts and parses the answer as JSON.
pub(super) async fn post_json(
    app: Router,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Value) {
    let (status, bytes) = post(app, path, headers, body).await;
    let text = String::from_utf8_lossy(&bytes);
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

/// Splits a stream into `(event name, data)` pairs.
pub(super) fn events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(bytes).unwrap();
    assert!(text.ends_with("\n\n"), "unterminated stream: {text}");
    text.split("\n\n")
        .filter(|frame| !frame.is_empty())
        .map(|frame| {
            let mut name = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                } else {
                    panic!("unexpected line {line:?}");
                }
            }
            (name, data.expect("a data line"))
        })
        .collect()
}

/// The data of each event, parsed, checking that every `event:` line names
/// its data's `type`.
pub(super) fn typed_events(bytes: &[u8]) -> Vec<Value> {
    events(bytes)
        .into_iter()
        .map(|(name, data)| {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(name.as_deref(), v["type"].as_str(), "{data}");
            v
        })
        .collect()
}
