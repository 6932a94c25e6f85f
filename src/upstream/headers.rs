//! Which headers cross the router, in each direction.

use http::header::{self, HeaderMap, HeaderName};

use crate::payload::Api;

/// Never forwarded upstream: hop-by-hop headers, what we set ourselves, and
/// anything that could carry the client's credentials to a provider.
///
/// A `match` on the name rather than a list to search: the compiler turns
/// it into a switch on the length and one comparison, where a list cost a
/// comparison per entry for every header of every request.
fn dropped_from_request(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "accept-encoding"
            | "authorization"
            | "cookie"
            | "origin"
            | "referer"
            | "keep-alive"
            | "x-api-key"
            | "api-key"
            | "x-request-id"
    )
}

/// Never passed back to the client: hop-by-hop headers, what we set
/// ourselves, cookies and CORS grants; and which provider account answered,
/// which is the router's business, not its clients'.
fn dropped_from_response(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "transfer-encoding"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "set-cookie"
            | "access-control-allow-origin"
            | "access-control-allow-credentials"
            | "keep-alive"
            | "openai-organization"
            | "openai-project"
            | "anthropic-organization-id"
    )
}

/// Room in a response's header map for the headers the router adds to the
/// upstream's: its request id twice, a cache label, `content-encoding` and
/// `vary`. A map that must grow rehashes every entry.
const ADDED_RESPONSE_HEADERS: usize = 5;

fn named_by_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// Whether a header belongs to the other API's dialect: Anthropic's
/// versioning headers mean nothing to an OpenAI provider (and the reverse
/// needs no rule: OpenAI's headers are harmless extras to Anthropic).
fn foreign(name: &HeaderName, api: Api) -> bool {
    api == Api::OpenAi && name.as_str().starts_with("anthropic-")
}

/// The client's headers that go upstream to a provider speaking `api` (the
/// provider key is added per attempt).
pub fn forward_request_headers(client: &HeaderMap, api: Api) -> HeaderMap {
    let has_connection = client.contains_key(header::CONNECTION);
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        if dropped_from_request(name.as_str())
            || foreign(name, api)
            || (has_connection && named_by_connection(client, name))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The upstream's headers that go to the client. Its `x-request-id` is kept
/// as `x-upstream-request-id`; ours is the router's own.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + ADDED_RESPONSE_HEADERS);
    for (name, value) in upstream {
        if dropped_from_response(name.as_str()) {
            continue;
        }
        // Anthropic's `request-id` too: the router's own id is the client's.
        if matches!(name.as_str(), "x-request-id" | "request-id") {
            out.append(
                HeaderName::from_static("x-upstream-request-id"),
                value.clone(),
            );
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer client-key"),
            ("accept-encoding", "gzip"),
            ("content-length", "10"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("x-api-key", "k"),
            ("openai-beta", "assistants=v2"),
            ("user-agent", "openai-python/1.0"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forward_request_headers(&h, Api::OpenAi);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["openai-beta", "user-agent"]);
    }

    #[test]
    fn anthropic_headers_go_only_to_anthropic_providers() {
        let mut h = HeaderMap::new();
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        h.insert("anthropic-beta", HeaderValue::from_static("a,b"));
        h.insert("x-api-key", HeaderValue::from_static("client-key"));
        let to_anthropic = forward_request_headers(&h, Api::Anthropic);
        assert_eq!(to_anthropic["anthropic-version"], "2023-06-01");
        assert_eq!(to_anthropic["anthropic-beta"], "a,b");
        assert!(!to_anthropic.contains_key("x-api-key"));
        assert!(forward_request_headers(&h, Api::OpenAi).is_empty());
    }

    #[test]
    fn upstream_request_id_is_renamed_and_cookies_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req_1"));
        h.insert("set-cookie", HeaderValue::from_static("a=b"));
        h.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("5"),
        );
        let out = response_headers(&h);
        assert_eq!(out["x-upstream-request-id"], "req_1");
        assert!(out.get("set-cookie").is_none());
        assert_eq!(out["x-ratelimit-remaining-tokens"], "5");
    }
}
