//! Gives every request an id, carried in logs and in the `x-request-id`
//! response header. A client's own `x-request-id` is kept when it is short
//! and plain (so it cannot inject into logs); otherwise we make one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::accounting::RequestInfo;
use crate::payload::Endpoint;
use crate::telemetry::traces::Trace;

const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Anthropic's clients read the id from here.
const ANTHROPIC_HEADER: HeaderName = HeaderName::from_static("request-id");

/// `req_`, 8 hex digits drawn at start, and a counter in at least 12 (as
/// `format!("req_{prefix:08x}{n:012x}")` spells it, without its cost on
/// every request).
fn make_id() -> Arc<str> {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    id_of(
        *PREFIX.get_or_init(rand::random),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    )
}

fn id_of(prefix: u32, n: u64) -> Arc<str> {
    let mut buf = [0u8; 4 + 8 + 16];
    buf[..4].copy_from_slice(b"req_");
    let mut len = 4;
    let counter_digits = (16 - (n.leading_zeros() / 4) as usize).max(12);
    for (value, digits) in [(u64::from(prefix), 8), (n, counter_digits)] {
        for i in (0..digits).rev() {
            buf[len] = b"0123456789abcdef"[((value >> (i * 4)) & 0xf) as usize];
            len += 1;
        }
    }
    // Only ASCII was written.
    std::str::from_utf8(&buf[..len]).unwrap_or("req_").into()
}

fn acceptable(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat.completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/responses" => "responses",
        "/v1/messages" => "messages",
        "/v1/messages/count_tokens" => "count_tokens",
        "/v1/models" => "models",
        _ => "other",
    }
}

/// The request's id and start time: the client's `x-request-id` when it is
/// acceptable, else a fresh one.
pub fn info_for(headers: &HeaderMap, path: &str) -> RequestInfo {
    let id: Arc<str> = match headers.get(HEADER) {
        Some(v) if acceptable(v.as_bytes()) => v.to_str().unwrap_or_default().into(),
        _ => make_id(),
    };
    // Proxied requests get a span (when traces are on); the dashboard,
    // admin calls, probes and scrapes do not.
    let trace = match Endpoint::from_path(path) {
        Some(e) => {
            let trace = Trace::server(e.span_name(), headers);
            if trace.is_on() {
                trace.set("http.request.method", "POST");
                trace.set("url.path", e.span_name().trim_start_matches("POST "));
                trace.set("gen_ai.operation.name", e.operation());
                trace.set("llm_router.request_id", id.to_string());
            }
            trace
        }
        None => Trace::off(),
    };
    RequestInfo {
        request_id: id,
        endpoint: endpoint(path),
        started: Instant::now(),
        trace,
    }
}

/// Puts the request's id on its response: as `x-request-id`, which OpenAI
/// clients read, and as `request-id`, which Anthropic's read.
pub fn stamp(response: &mut Response, info: &RequestInfo) {
    if let Ok(value) = HeaderValue::from_str(&info.request_id) {
        let headers = response.headers_mut();
        headers.insert(HEADER, value.clone());
        headers.insert(ANTHROPIC_HEADER, value);
    }
}

pub async fn assign(mut request: Request, next: Next) -> Response {
    let info = info_for(request.headers(), request.uri().path());
    request.extensions_mut().insert(info.clone());
    let mut response = next.run(request).await;
    stamp(&mut response, &info);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_plain() {
        let (a, b) = (make_id(), make_id());
        assert_ne!(a, b);
        assert!(acceptable(a.as_bytes()));
        // req_, the process's 8 hex digits, then the counter in 12.
        assert_eq!(a.len(), 4 + 8 + 12, "{a}");
        assert!(a.starts_with("req_"));
        assert_eq!(a[..12], b[..12], "one prefix per process");
        let (x, y) = (
            u64::from_str_radix(&a[12..], 16).unwrap(),
            u64::from_str_radix(&b[12..], 16).unwrap(),
        );
        assert!(y > x, "{a} then {b}");
    }

    #[test]
    fn ids_spell_prefix_and_counter_in_hex() {
        for (prefix, n) in [(0xdead_beef, 0x1234), (0, 0), (7, u64::MAX), (1, 1 << 48)] {
            assert_eq!(&*id_of(prefix, n), format!("req_{prefix:08x}{n:012x}"));
        }
    }

    #[test]
    fn hostile_client_ids_are_replaced() {
        assert!(!acceptable(b"abc\r\ninjected: 1"));
        assert!(!acceptable(b""));
        assert!(!acceptable(&[b'a'; 129]));
        assert!(acceptable(b"my-trace-123"));
    }
}
