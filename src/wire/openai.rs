//! OpenAI's format: what the router's own answers and errors look like.

use bytes::Bytes;
use serde::Serialize;

/// How much of a provider's non-JSON error text a client is shown.
const SHOWN_BYTES: usize = 200;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// A provider's error answer (a 4xx passed through) in OpenAI's shape,
/// so clients can show it: `None` when `body` already is a JSON object
/// with an `error` member, else the body wrapped as
/// `{"error":{"message":"provider answered 404: <its text>","type":"upstream_error","code":"404"}}`.
pub fn error_body(status: u16, body: &[u8]) -> Option<Bytes> {
    if has_error_member(body) {
        return None;
    }
    let text = String::from_utf8_lossy(&body[..floor_char_boundary(body, SHOWN_BYTES)]);
    let text = text.trim();
    let shown = if text.is_empty() { "empty body" } else { text };
    let message = format!("provider answered {status}: {shown}");
    let code = status.to_string();
    let out = ErrorBody {
        error: ErrorFields {
            message: &message,
            kind: "upstream_error",
            param: None,
            code: &code,
        },
    };
    Some(Bytes::from(serde_json::to_vec(&out).unwrap_or_default()))
}

fn has_error_member(body: &[u8]) -> bool {
    crate::payload::scan::top_level_value(body, "error").is_some()
}

/// The largest `n <= max` that does not cut a UTF-8 character in two.
fn floor_char_boundary(body: &[u8], max: usize) -> usize {
    if body.len() <= max {
        return body.len();
    }
    let mut n = max;
    // Continuation bytes are 0b10xx_xxxx.
    while n > 0 && body[n] & 0xC0 == 0x80 {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(status: u16, body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(&error_body(status, body).expect("wrapped")).unwrap()
    }

    #[test]
    fn json_errors_pass_through_and_anything_else_is_wrapped() {
        assert_eq!(error_body(400, br#"{"error":{"message":"bad"}}"#), None);
        assert_eq!(error_body(404, br#" {"error":"not found","x":1}"#), None);
        let v = wrapped(404, b"<html><body>Not Found</body></html>");
        assert_eq!(
            v["error"]["message"],
            "provider answered 404: <html><body>Not Found</body></html>"
        );
        assert_eq!(v["error"]["type"], "upstream_error");
        assert_eq!(v["error"]["code"], "404");
        assert!(v["error"]["param"].is_null());
        assert_eq!(
            wrapped(400, b"")["error"]["message"],
            "provider answered 400: empty body"
        );
        assert_eq!(
            wrapped(400, b"  \n")["error"]["message"],
            "provider answered 400: empty body"
        );
        // JSON without an `error` member is not an OpenAI error either.
        assert_eq!(
            wrapped(422, br#"{"detail":"x"}"#)["error"]["message"],
            r#"provider answered 422: {"detail":"x"}"#
        );
        assert_eq!(wrapped(400, br#"["error"]"#)["error"]["code"], "400");
    }

    #[test]
    fn long_texts_are_cut_at_200_bytes_on_a_character_boundary() {
        let long = "é".repeat(150); // 300 bytes
        let v = wrapped(400, long.as_bytes());
        let message = v["error"]["message"].as_str().unwrap();
        let shown = message.strip_prefix("provider answered 400: ").unwrap();
        assert_eq!(shown, "é".repeat(100));
        let ascii = "a".repeat(500);
        let v = wrapped(400, ascii.as_bytes());
        assert_eq!(
            v["error"]["message"].as_str().unwrap().len(),
            "provider answered 400: ".len() + 200
        );
        // Invalid UTF-8 is shown, not refused.
        assert!(
            wrapped(400, &[0xff, 0xfe, b'x'])["error"]["message"]
                .as_str()
                .unwrap()
                .ends_with('x')
        );
    }
}
