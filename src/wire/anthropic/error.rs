//! Error bodies in Anthropic's shape, and translation between Anthropic's
//! and OpenAI's error shapes.
//!
//! Why: each SDK reads its own shape. The Anthropic SDKs take the error's
//! kind from `error.type` (`{"type":"error","error":{"type","message"}}`);
//! openai-node takes `message`, `type` and `code` from `{"error":{…}}`. A
//! provider's error relayed in the other dialect would reach the client as
//! an unexplained status, so it is rewritten; a body already in the
//! client's shape passes untouched.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How much of a provider's non-JSON error text a client is shown.
const SHOWN_BYTES: usize = 200;

/// Anthropic's `error.type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicFields<'a>,
}

#[derive(Serialize)]
struct AnthropicFields<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiFields<'a>,
}

#[derive(Serialize)]
struct OpenAiFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// What either shape says: `{"type"?, "error": {"type"?, "message"?, "code"?}}`,
/// or `{"error": "text"}` as some providers send.
#[derive(Deserialize)]
struct Parsed {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    error: ErrorMember,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum ErrorMember {
    Object {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    },
    Text(String),
}

/// `{"type":"error","error":{"type":kind,"message":message}}`.
pub fn error_body(kind: &str, message: &str) -> Bytes {
    let body = AnthropicBody {
        kind: "error",
        error: AnthropicFields { kind, message },
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// Any provider's error body in Anthropic's shape. An Anthropic error
/// passes as it is; otherwise the message is OpenAI's `error.message` if
/// there is one, else the start of the body's text.
pub fn from_openai(status: u16, body: &[u8]) -> Bytes {
    let parsed = serde_json::from_slice::<Parsed>(body).ok();
    if parsed.as_ref().and_then(anthropic_fields).is_some() {
        return Bytes::copy_from_slice(body);
    }
    let message = parsed
        .and_then(|p| message_of(p.error))
        .unwrap_or_else(|| shown_text(status, body));
    error_body(error_type(status), &message)
}

/// Any provider's error body in OpenAI's shape: `type` and `code` are
/// Anthropic's `error.type` (or the status's). An OpenAI error passes as
/// it is.
pub fn to_openai(status: u16, body: &[u8]) -> Bytes {
    let parsed = serde_json::from_slice::<Parsed>(body).ok();
    let (kind, message) = match &parsed {
        Some(p) => match (anthropic_fields(p), &p.error) {
            (Some((kind, message)), _) => (kind.map(str::to_owned), message.map(str::to_owned)),
            (
                None,
                ErrorMember::Object {
                    message: Some(_), ..
                },
            ) => {
                return Bytes::copy_from_slice(body);
            }
            (None, e) => (None, message_of(e.clone())),
        },
        None => (None, None),
    };
    let kind = kind.unwrap_or_else(|| error_type(status).to_owned());
    let message = message.unwrap_or_else(|| shown_text(status, body));
    openai_body(&kind, &message)
}

/// `{"error":{"message","type","param":null,"code"}}`, `code` = `kind`.
pub(super) fn openai_body(kind: &str, message: &str) -> Bytes {
    let body = OpenAiBody {
        error: OpenAiFields {
            message,
            kind,
            param: None,
            code: kind,
        },
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// An OpenAI-style error sent mid-stream (`{"error":{…}}` as a chunk) as
/// Anthropic's `error` event data. There is no status, so the kind is
/// guessed from OpenAI's `type` and `code`.
pub(super) fn stream_error_from_openai(data: &[u8]) -> Bytes {
    let Ok(p) = serde_json::from_slice::<Parsed>(data) else {
        return error_body("api_error", "the provider failed mid-answer");
    };
    if let Some((kind, message)) = anthropic_fields(&p) {
        // Rebuilt rather than copied: the data may span several lines.
        let message = message.unwrap_or("the provider failed mid-answer");
        return error_body(kind.unwrap_or("api_error"), message);
    }
    let hint = match &p.error {
        ErrorMember::Object { kind, code, .. } => {
            format!(
                "{} {}",
                kind.as_deref().unwrap_or_default(),
                code_text(code.as_ref())
            )
        }
        ErrorMember::Text(_) => String::new(),
    };
    let message = message_of(p.error).unwrap_or_else(|| "the provider failed mid-answer".into());
    error_body(kind_from_hint(&hint), &message)
}

/// Anthropic's `error` event data as OpenAI's mid-stream error chunk.
pub(super) fn stream_error_to_openai(data: &[u8]) -> Bytes {
    match serde_json::from_slice::<Parsed>(data) {
        Ok(Parsed {
            error: ErrorMember::Object { kind, message, .. },
            ..
        }) => openai_body(
            kind.as_deref().unwrap_or("api_error"),
            message
                .as_deref()
                .unwrap_or("the provider failed mid-answer"),
        ),
        _ => openai_body("api_error", "the provider failed mid-answer"),
    }
}

fn kind_from_hint(hint: &str) -> &'static str {
    let known = [
        ("rate_limit", "rate_limit_error"),
        ("overloaded", "overloaded_error"),
        ("unavailable", "overloaded_error"),
        ("authentication", "authentication_error"),
        ("invalid_api_key", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "not_found_error"),
        ("invalid_request", "invalid_request_error"),
        ("timeout", "timeout_error"),
    ];
    known
        .iter()
        .find(|(needle, _)| hint.contains(needle))
        .map_or("api_error", |(_, kind)| kind)
}

fn code_text(code: Option<&serde_json::Value>) -> String {
    match code {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Anthropic's shape (`"type":"error"` and an `error` object): its
/// `error.type` and `error.message`.
fn anthropic_fields(p: &Parsed) -> Option<(Option<&str>, Option<&str>)> {
    match &p.error {
        ErrorMember::Object { kind, message, .. } if p.kind.as_deref() == Some("error") => {
            Some((kind.as_deref(), message.as_deref()))
        }
        _ => None,
    }
}

fn message_of(e: ErrorMember) -> Option<String> {
    match e {
        ErrorMember::Object { message, .. } => message,
        ErrorMember::Text(t) => Some(t),
    }
    .filter(|m| !m.trim().is_empty())
}

/// "provider answered 502: <the first 200 bytes>" (or "empty body").
fn shown_text(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..floor_char_boundary(body, SHOWN_BYTES)]);
    let text = text.trim();
    let shown = if text.is_empty() { "empty body" } else { text };
    format!("provider answered {status}: {shown}")
}

/// The largest `n <= max` that does not cut a UTF-8 character in two.
fn floor_char_boundary(body: &[u8], max: usize) -> usize {
    if body.len() <= max {
        return body.len();
    }
    let mut n = max;
    while n > 0 && body[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn v(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn statuses_have_their_anthropic_error_types() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (503, "overloaded_error"),
            (529, "overloaded_error"),
            (500, "api_error"),
            (502, "api_error"),
            (504, "api_error"),
            (409, "invalid_request_error"),
            (422, "invalid_request_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
    }

    #[test]
    fn error_body_is_anthropic_shaped() {
        assert_eq!(
            v(&error_body("rate_limit_error", "slow down")),
            json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"}})
        );
    }

    #[test]
    fn openai_errors_become_anthropic_errors() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            v(&from_openai(429, openai)),
            json!({"type":"error","error":{"type":"rate_limit_error","message":"Rate limit reached"}})
        );
        // Azure: a string code, no type.
        let azure = br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment does not exist."}}"#;
        assert_eq!(
            v(&from_openai(404, azure))["error"]["message"],
            "The API deployment does not exist."
        );
        assert_eq!(
            v(&from_openai(404, br#"{"error":"no such model"}"#))["error"]["message"],
            "no such model"
        );
        assert_eq!(
            v(&from_openai(502, b"<html>Bad Gateway</html>"))["error"],
            json!({"type":"api_error","message":"provider answered 502: <html>Bad Gateway</html>"})
        );
        assert_eq!(
            v(&from_openai(503, b""))["error"],
            json!({"type":"overloaded_error","message":"provider answered 503: empty body"})
        );
        let long = "x".repeat(500);
        let shown = v(&from_openai(400, long.as_bytes()))["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(shown.len(), "provider answered 400: ".len() + 200);
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(&from_openai(529, anthropic)[..], &anthropic[..]);
    }

    #[test]
    fn anthropic_errors_become_openai_errors() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            v(&to_openai(529, anthropic)),
            json!({"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":"overloaded_error"}})
        );
        let openai = br#"{"error":{"message":"bad","type":"invalid_request_error","param":"n","code":null}}"#;
        assert_eq!(&to_openai(400, openai)[..], &openai[..]);
        assert_eq!(
            v(&to_openai(401, b"denied")),
            json!({"error":{"message":"provider answered 401: denied","type":"authentication_error","param":null,"code":"authentication_error"}})
        );
        assert_eq!(
            v(&to_openai(404, br#"{"error":"gone"}"#))["error"]["message"],
            "gone"
        );
        assert_eq!(
            v(&to_openai(500, b"{}"))["error"]["message"],
            "provider answered 500: {}"
        );
    }

    #[test]
    fn mid_stream_errors_map_both_ways() {
        let e = stream_error_from_openai(
            br#"{"error":{"message":"Too many","type":"tokens","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(
            v(&e),
            json!({"type":"error","error":{"type":"rate_limit_error","message":"Too many"}})
        );
        let e = stream_error_from_openai(
            br#"{"error":{"message":"boom","type":"server_error","code":null}}"#,
        );
        assert_eq!(v(&e)["error"]["type"], "api_error");
        let e = stream_error_to_openai(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            v(&e),
            json!({"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":"overloaded_error"}})
        );
        assert_eq!(
            v(&stream_error_to_openai(b"garbage"))["error"]["type"],
            "api_error"
        );
        // Already Anthropic's: rebuilt on one line (event data may span several).
        let e = stream_error_from_openai(
            b"{\"type\":\"error\",\n\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        );
        assert_eq!(
            &e[..],
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        );
    }
}
