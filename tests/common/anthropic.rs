//! A mock Anthropic provider (the Messages API), written from Anthropic's
//! public API reference (messages, streaming, errors, rate limits, models,
//! token counting) and the official SDKs' behaviour, that a test starts on a
//! loopback port and controls per API key, like [`super::MockUpstream`].
//! `tests/anthropic_mock.rs` checks it, with the official Anthropic SDK too.
//!
//! What it serves (query strings such as `?beta=true` are accepted and
//! recorded on every path):
//! - `POST /v1/messages`: a JSON `Message`, or with `"stream": true` an SSE
//!   stream with `event:` lines in Anthropic's order: `message_start`, then per
//!   block `content_block_start` · `content_block_delta`* ·
//!   `content_block_stop` (one `ping` right after the first
//!   `content_block_start`, as in Anthropic's docs and recordings), then
//!   `message_delta` (stop_reason, cumulative usage) and `message_stop`.
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": COUNT_TOKENS}`.
//! - `GET /v1/models` (with `limit`, `after_id`, `before_id`) and
//!   `GET /v1/models/{id}`, in Anthropic's list shape.
//! - anything else: 404 `not_found_error`.
//!
//! Every request is recorded first. Then, on every path, like the real API:
//! no key (`x-api-key`, or `Authorization: Bearer`) → 401
//! `authentication_error`; no `anthropic-version` header → 400
//! `invalid_request_error`. On `/v1/messages` the key's [`AnthropicBehavior`]
//! applies next, and then the body is validated (see [`validate_messages`]):
//! the checks are ones the real API makes, so a translation bug in the router
//! shows up as a 400 here as it would against Anthropic. Every response
//! carries a `request-id: req_…` header; errors have Anthropic's body
//! `{"type":"error","error":{"type","message"},"request_id"}`.
//!
//! The answer to a valid `/v1/messages` request (same content for JSON and
//! SSE; the JSON `content` is what the stream's deltas add up to):
//! - with `thinking` (`enabled` or `adaptive`): first a `thinking` block
//!   ([`THINKING_FRAGMENTS`] as `thinking_delta`s, then one `signature_delta`
//!   with [`SIGNATURE`]);
//! - a `text` block of `chunks` deltas `"w0 "`, `"w1 "`, … (see
//!   [`AnthropicUpstream::stream_shape`], default 5), unless tool use is
//!   forced; cut at `max_tokens` deltas (stop_reason `max_tokens`) or at the
//!   first `stop_sequences` match (stop_reason `stop_sequence`);
//! - with non-empty `tools` and `tool_choice` not `none`: a `tool_use` block
//!   (id `toolu_01mock…`, name = the `tool_choice` tool or the first tool,
//!   input [`TOOL_INPUT`]), streamed as the `input_json_delta` fragments
//!   [`TOOL_INPUT_FRAGMENTS`] (the first empty, as the API does, the others
//!   split mid-token); stop_reason `tool_use`. With `tool_choice` `auto` (or
//!   none given) the text block comes first, so the tool is content index 1
//!   (or 2 after thinking); with `any`/`tool` there is no text block.
//! - usage: `input_tokens` [`INPUT_TOKENS`], `cache_read_input_tokens`
//!   [`CACHE_READ_TOKENS`], `cache_creation_input_tokens` 0, and
//!   `output_tokens` = the number of `content_block_delta` events of the
//!   streamed form (all kinds; 5 for a plain default answer). `message_start`
//!   has `output_tokens: 1`; `message_delta` repeats all counts (cumulative),
//!   as the current API does.
#![allow(dead_code, reason = "each test crate uses a part of the harness")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use super::serve_on_loopback;

/// `usage.input_tokens` of every answer (uncached prompt tokens).
pub const INPUT_TOKENS: u64 = 11;
/// `usage.cache_read_input_tokens` of every answer. OpenAI's `prompt_tokens`
/// for the same answer is `INPUT_TOKENS + CACHE_READ_TOKENS` (13) and its
/// `prompt_tokens_details.cached_tokens` is this.
pub const CACHE_READ_TOKENS: u64 = 2;
/// What `/v1/messages/count_tokens` answers: the whole prompt.
pub const COUNT_TOKENS: u64 = INPUT_TOKENS + CACHE_READ_TOKENS;
/// The `input` of every `tool_use` block.
pub const TOOL_INPUT: &str = r#"{"city":"Paris"}"#;
/// How [`TOOL_INPUT`] is streamed: `input_json_delta.partial_json` values.
pub const TOOL_INPUT_FRAGMENTS: [&str; 4] = ["", r#"{"ci"#, r#"ty":"Pa"#, r#"ris"}"#];
/// The `thinking_delta`s of a thinking block; joined, its `thinking`.
pub const THINKING_FRAGMENTS: [&str; 2] = ["Let me think", " about it."];
/// The `signature` of a thinking block (one `signature_delta`).
pub const SIGNATURE: &str = "EqMockSignatureAAAABBBBCCCC";
/// Models `/v1/models` lists unless [`AnthropicUpstream::set_models`] is used:
/// (id, display_name, created_at), newest first as the API orders them.
pub const DEFAULT_MODELS: [(&str, &str, &str); 3] = [
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-01T00:00:00Z",
    ),
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
];

/// The text of an answer with `chunks` text deltas (and no cut).
pub fn expected_text(chunks: usize) -> String {
    (0..chunks).map(text_delta).collect()
}

fn text_delta(i: usize) -> String {
    format!("w{i} ")
}

/// What the mock does for `/v1/messages` requests made with one API key.
#[derive(Clone, Debug)]
pub enum AnthropicBehavior {
    /// A normal answer (JSON or SSE, as the request asks).
    Ok,
    /// This status and raw body (sent as `application/json`), with extra
    /// headers. [`AnthropicBehavior::error`] builds Anthropic's error body.
    Status {
        code: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// 429 `rate_limit_error` with `retry-after` (seconds) and the
    /// `anthropic-ratelimit-requests-{limit,remaining,reset}` headers, the
    /// reset being an RFC 3339 time `retry_after_secs` from now.
    RateLimited { retry_after_secs: u64 },
    /// 529 `overloaded_error`.
    Overloaded,
    /// Never send response headers.
    Hang,
    /// Wait, then behave normally.
    Delay(Duration),
    /// For streams: send `n` content deltas, then fail the connection (no
    /// terminal event). JSON answers are normal.
    DropAfter(usize),
    /// For streams: send `n` content deltas, then go silent.
    StallAfter(usize),
    /// For streams: send `n` content deltas, then Anthropic's mid-stream
    /// `event: error` (`overloaded_error`) and end the stream (HTTP status is
    /// already 200).
    ErrorAfter(usize),
}

impl AnthropicBehavior {
    /// This status with Anthropic's error body `{"type":"error","error":{…}}`.
    pub fn error(code: u16, error_type: &str, message: &str) -> Self {
        Self::Status {
            code,
            body: error_body(error_type, message, "req_01mockfixed").to_string(),
            headers: vec![],
        }
    }
}

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct AnthropicRecorded {
    /// The path without the query string.
    pub path: String,
    /// The query string (`beta=true`), if any.
    pub query: Option<String>,
    /// The key from `x-api-key`, else from `Authorization: Bearer`; "" if none.
    pub key: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    /// The parsed body (`Null` for GETs or bodies that are not JSON).
    pub body: Value,
}

impl AnthropicRecorded {
    /// Which header carried the key: "x-api-key", "bearer" or "none".
    pub fn auth_via(&self) -> &'static str {
        if self.headers.contains_key("x-api-key") {
            "x-api-key"
        } else if bearer(&self.headers).is_some() {
            "bearer"
        } else {
            "none"
        }
    }
}

#[derive(Default)]
pub struct AnthropicState {
    pub requests: Mutex<Vec<AnthropicRecorded>>,
    behaviors: Mutex<HashMap<String, AnthropicBehavior>>,
    /// Streams (and hung requests) whose client went away before the end.
    pub cancelled: AtomicUsize,
    /// Text deltas per answer, and the gap between content deltas.
    pub chunks: AtomicUsize,
    pub gap_ms: AtomicUsize,
    /// Status `/v1/models` answers with (health checks); 0 means 200.
    pub models_status: AtomicU16,
    pub models_probes: AtomicUsize,
    models: Mutex<Option<Vec<(String, String, String)>>>,
    serial: AtomicUsize,
}

pub struct AnthropicUpstream {
    pub addr: SocketAddr,
    pub state: Arc<AnthropicState>,
}

impl AnthropicUpstream {
    pub async fn start() -> Self {
        let state = Arc::new(AnthropicState::default());
        state.chunks.store(5, Ordering::Relaxed);
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(models_list))
            .route("/v1/models/{id}", get(model_get))
            .fallback(not_found)
            .with_state(state.clone());
        let addr = serve_on_loopback(app).await;
        Self { addr, state }
    }

    /// `http://ADDR/v1`, the form a provider `base_url` takes.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://ADDR`, the form an Anthropic SDK `baseURL` takes.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, key: &str, behavior: AnthropicBehavior) {
        self.state
            .behaviors
            .lock()
            .unwrap()
            .insert(key.into(), behavior);
    }

    /// Text deltas per answer, and the pause before each content delta but
    /// the first.
    pub fn stream_shape(&self, chunks: usize, gap: Duration) {
        self.state.chunks.store(chunks, Ordering::Relaxed);
        self.state
            .gap_ms
            .store(gap.as_millis() as usize, Ordering::Relaxed);
    }

    /// Replaces the models `/v1/models` lists (newest first); each gets
    /// `display_name` = its id and `created_at` 2025-01-01T00:00:00Z.
    pub fn set_models(&self, ids: &[&str]) {
        *self.state.models.lock().unwrap() = Some(
            ids.iter()
                .map(|id| {
                    (
                        id.to_string(),
                        id.to_string(),
                        "2025-01-01T00:00:00Z".into(),
                    )
                })
                .collect(),
        );
    }

    /// Every request received, in order (all paths, rejected ones too).
    pub fn requests(&self) -> Vec<AnthropicRecorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The `POST /v1/messages` requests received.
    pub fn messages_requests(&self) -> Vec<AnthropicRecorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/messages")
            .collect()
    }

    /// How many `POST /v1/messages` requests each key sent.
    pub fn count_by_key(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.messages_requests() {
            *out.entry(r.key).or_default() += 1;
        }
        out
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

// ------------------------------------------------------------- plumbing

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|k| !k.is_empty())
}

fn api_key(headers: &HeaderMap) -> String {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .or_else(|| bearer(headers))
        .unwrap_or("")
        .to_string()
}

fn error_body(error_type: &str, message: &str, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    })
}

fn with_request_id(mut r: Response, request_id: &str) -> Response {
    r.headers_mut()
        .insert("request-id", request_id.parse().unwrap());
    r
}

fn json_response(code: u16, body: &Value, request_id: &str) -> Response {
    let mut r = (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    with_request_id(r, request_id)
}

fn error_response(code: u16, error_type: &str, message: &str, request_id: &str) -> Response {
    json_response(
        code,
        &error_body(error_type, message, request_id),
        request_id,
    )
}

fn bad_request(message: &str, request_id: &str) -> Response {
    error_response(400, "invalid_request_error", message, request_id)
}

/// A request past the common checks.
struct Admitted {
    key: String,
    body: Value,
    request_id: String,
}

/// Records the request, gives it a request id, and makes the checks every
/// path makes (key, `anthropic-version`).
fn admit(
    state: &AnthropicState,
    uri: &Uri,
    headers: HeaderMap,
    raw: &Bytes,
) -> Result<Admitted, Box<Response>> {
    let n = state.serial.fetch_add(1, Ordering::SeqCst);
    let request_id = format!("req_01mock{n:06}");
    let key = api_key(&headers);
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let has_version = headers.contains_key("anthropic-version");
    state.requests.lock().unwrap().push(AnthropicRecorded {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        key: key.clone(),
        headers,
        raw: raw.clone(),
        body: body.clone(),
    });
    if key.is_empty() {
        return Err(Box::new(error_response(
            401,
            "authentication_error",
            "x-api-key header is required",
            &request_id,
        )));
    }
    if !has_version {
        return Err(Box::new(bad_request(
            "anthropic-version: header is required",
            &request_id,
        )));
    }
    Ok(Admitted {
        key,
        body,
        request_id,
    })
}

struct CancelGuard {
    state: Arc<AnthropicState>,
    finished: bool,
}

impl CancelGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn not_found(
    State(state): State<Arc<AnthropicState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let a = match admit(&state, &uri, headers, &raw) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    error_response(
        404,
        "not_found_error",
        &format!("Not found: {}", uri.path()),
        &a.request_id,
    )
}

// ------------------------------------------------------------- validation

/// Top-level fields `/v1/messages` accepts; anything else is rejected with
/// "<field>: Extra inputs are not permitted", as the API does (an OpenAI
/// field such as `stream_options`, `n` or `max_completion_tokens` copied
/// into an Anthropic request fails there).
const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "stream",
    "service_tier",
    "output_config",
    "output_format",
    "cache_control",
    "container",
    "inference_geo",
    "context_management",
    "mcp_servers",
];

/// Top-level fields `/v1/messages/count_tokens` accepts (no `max_tokens`,
/// no `stream`).
const COUNT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "cache_control",
    "context_management",
    "mcp_servers",
];

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a `/v1/messages` body the way the API does; the error is the
/// message of a 400 `invalid_request_error` (wording close to Anthropic's).
/// Checked: a JSON object with only known fields; `model`; `max_tokens`
/// (required, integer ≥ 0); `messages` (non-empty; roles `user`/`assistant`;
/// no empty content except a final assistant turn; no empty text blocks;
/// `tool_use` ids matching `^[a-zA-Z0-9_-]+$` with object inputs; after
/// merging consecutive same-role turns as the API does, every `tool_use`
/// answered by a `tool_result` in the next turn and every `tool_result`
/// matching a `tool_use` of the previous turn; a final assistant turn not
/// ending in whitespace); `system` text blocks non-empty; `temperature`
/// in 0–1; `stop_sequences` not blank; tools with a name and an
/// `input_schema`; `tool_choice` only with tools and naming one of them;
/// `thinking.budget_tokens` ≥ 1024 and < `max_tokens`; no forced tool use
/// with thinking; `metadata` holding only `user_id`.
pub fn validate_messages(body: &Value) -> Result<(), String> {
    validate(body, MESSAGES_FIELDS, true)
}

/// Checks a `/v1/messages/count_tokens` body (as [`validate_messages`],
/// without `max_tokens`, which is not accepted there).
pub fn validate_count_tokens(body: &Value) -> Result<(), String> {
    validate(body, COUNT_FIELDS, false)
}

fn validate(body: &Value, fields: &[&str], needs_max_tokens: bool) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("There was an error parsing the body: expected a JSON object".into());
    };
    for k in obj.keys() {
        if !fields.contains(&k.as_str()) {
            return Err(format!("{k}: Extra inputs are not permitted"));
        }
    }
    match &body["model"] {
        Value::String(m) if !m.is_empty() => {}
        Value::Null => return Err("model: Field required".into()),
        _ => return Err("model: Input should be a valid string".into()),
    }
    let max_tokens = if needs_max_tokens {
        match &body["max_tokens"] {
            Value::Null => return Err("max_tokens: Field required".into()),
            v => match v.as_u64() {
                Some(n) => Some(n),
                None => return Err("max_tokens: Input should be a valid integer".into()),
            },
        }
    } else {
        None
    };
    validate_messages_list(&body["messages"])?;
    validate_system(&body["system"])?;
    if let Some(t) = body.get("temperature") {
        match t.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => {}
            Some(t) if t > 1.0 => {
                return Err("temperature: Input should be less than or equal to 1".into());
            }
            _ => return Err("temperature: Input should be a valid number between 0 and 1".into()),
        }
    }
    if let Some(stops) = body.get("stop_sequences") {
        let Some(stops) = stops.as_array() else {
            return Err("stop_sequences: Input should be a valid list".into());
        };
        for s in stops {
            match s.as_str() {
                Some(s) if s.trim().is_empty() => {
                    return Err(
                        "stop_sequences: each stop sequence must contain non-whitespace".into(),
                    );
                }
                Some(_) => {}
                None => return Err("stop_sequences: Input should be a valid string".into()),
            }
        }
    }
    if let Some(meta) = body.get("metadata").and_then(Value::as_object) {
        for k in meta.keys() {
            if k != "user_id" {
                return Err(format!("metadata.{k}: Extra inputs are not permitted"));
            }
        }
    }
    let tool_names = validate_tools(&body["tools"])?;
    let choice = &body["tool_choice"];
    let forced = matches!(choice["type"].as_str(), Some("any" | "tool"));
    if !choice.is_null() {
        match choice["type"].as_str() {
            Some("auto" | "any" | "none") => {}
            Some("tool") => {
                let name = choice["name"].as_str().unwrap_or("");
                if !tool_names.iter().any(|n| n == name) {
                    return Err(format!(
                        "tool_choice.tool.name: tool {name:?} is not in the provided tools"
                    ));
                }
            }
            _ => {
                return Err(
                    "tool_choice: Input tag does not match 'auto', 'any', 'tool' or 'none'".into(),
                );
            }
        }
        if tool_names.is_empty() && choice["type"] != "none" {
            return Err("tool_choice may only be specified while providing tools.".into());
        }
    }
    let thinking = &body["thinking"];
    match thinking["type"].as_str() {
        None if thinking.is_null() => {}
        Some("disabled") => {}
        Some("adaptive") => {
            if forced {
                return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
            }
        }
        Some("enabled") => {
            let Some(budget) = thinking["budget_tokens"].as_u64() else {
                return Err("thinking.enabled.budget_tokens: Field required".into());
            };
            if budget < 1024 {
                return Err(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            if let Some(max) = max_tokens
                && budget >= max
            {
                return Err("`max_tokens` must be greater than `thinking.budget_tokens`.".into());
            }
            if forced {
                return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
            }
        }
        _ => {
            return Err(
                "thinking: Input tag does not match 'enabled', 'disabled' or 'adaptive'".into(),
            );
        }
    }
    Ok(())
}

fn validate_system(system: &Value) -> Result<(), String> {
    match system {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (j, b) in blocks.iter().enumerate() {
                if b["type"] != "text" {
                    return Err(format!("system.{j}.type: Input should be 'text'"));
                }
                if b["text"].as_str().is_none_or(str::is_empty) {
                    return Err(format!(
                        "system.{j}.text: text content blocks must be non-empty"
                    ));
                }
            }
            Ok(())
        }
        _ => Err("system: Input should be a valid string or list of text blocks".into()),
    }
}

/// Returns the tool names.
fn validate_tools(tools: &Value) -> Result<Vec<String>, String> {
    let list = match tools {
        Value::Null => return Ok(vec![]),
        Value::Array(list) => list,
        _ => return Err("tools: Input should be a valid list".into()),
    };
    let mut names = vec![];
    for (i, t) in list.iter().enumerate() {
        let name = t["name"].as_str().unwrap_or("");
        let name_ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            ));
        }
        // Server tools (`web_search_20250305`, …) carry a dated `type` and
        // no schema; client tools have no `type` or `custom`.
        let custom = matches!(t["type"].as_str(), None | Some("custom"));
        if custom && !t["input_schema"].is_object() {
            return Err(format!("tools.{i}.custom.input_schema: Field required"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// A message's content as a list of blocks.
fn blocks_of(content: &Value) -> Option<Vec<Value>> {
    match content {
        Value::String(s) => Some(vec![json!({"type": "text", "text": s})]),
        Value::Array(b) => Some(b.clone()),
        _ => None,
    }
}

/// A turn after merging: role, index of its first message, and its blocks
/// with their (message, block) indices.
type Turn = (String, usize, Vec<(usize, usize, Value)>);

fn validate_messages_list(messages: &Value) -> Result<(), String> {
    let list = match messages {
        Value::Null => return Err("messages: Field required".into()),
        Value::Array(l) => l,
        _ => return Err("messages: Input should be a valid list".into()),
    };
    if list.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    // Turns after merging consecutive same-role messages, as the API does:
    // (role, index of the turn's first message, blocks with their own index).
    let mut turns: Vec<Turn> = vec![];
    let last = list.len() - 1;
    for (i, m) in list.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let Some(blocks) = blocks_of(&m["content"]) else {
            return Err(format!("messages.{i}.content: Field required"));
        };
        let final_assistant = i == last && role == "assistant";
        let empty_string = m["content"].as_str().is_some_and(str::is_empty);
        if (blocks.is_empty() || empty_string) && !final_assistant {
            return Err(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => {
                    if b["text"].as_str().is_none_or(str::is_empty) && !final_assistant {
                        return Err(format!(
                            "messages.{i}.content.{j}.text: text content blocks must be non-empty"
                        ));
                    }
                }
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_use blocks are only allowed in assistant messages"
                        ));
                    }
                    if !valid_id(b["id"].as_str().unwrap_or("")) {
                        return Err(format!(
                            "messages.{i}.content.{j}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                        ));
                    }
                    if !b["input"].is_object() {
                        return Err(format!(
                            "messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
                        ));
                    }
                }
                Some("tool_result") => {
                    if role != "user" {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_result blocks are only allowed in user messages"
                        ));
                    }
                    if !valid_id(b["tool_use_id"].as_str().unwrap_or("")) {
                        return Err(format!(
                            "messages.{i}.content.{j}.tool_result.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                        ));
                    }
                }
                Some(_) => {}
                None => return Err(format!("messages.{i}.content.{j}.type: Field required")),
            }
        }
        let tagged = blocks.into_iter().enumerate().map(|(j, b)| (i, j, b));
        match turns.last_mut() {
            Some((r, _, bs)) if r == role => bs.extend(tagged),
            _ => turns.push((role.to_string(), i, tagged.collect())),
        }
    }
    for (t, (role, first, blocks)) in turns.iter().enumerate() {
        if role == "assistant" {
            let uses: Vec<&str> = blocks
                .iter()
                .filter(|(_, _, b)| b["type"] == "tool_use")
                .filter_map(|(_, _, b)| b["id"].as_str())
                .collect();
            if uses.is_empty() {
                continue;
            }
            let answered: Vec<&str> = turns
                .get(t + 1)
                .map(|(_, _, next)| {
                    next.iter()
                        .filter(|(_, _, b)| b["type"] == "tool_result")
                        .filter_map(|(_, _, b)| b["tool_use_id"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<&str> = uses
                .iter()
                .copied()
                .filter(|u| !answered.contains(u))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "messages.{first}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
        } else {
            let prev_uses: Vec<&str> = match t.checked_sub(1).map(|p| &turns[p]) {
                Some((_, _, prev)) => prev
                    .iter()
                    .filter(|(_, _, b)| b["type"] == "tool_use")
                    .filter_map(|(_, _, b)| b["id"].as_str())
                    .collect(),
                None => vec![],
            };
            for (i, j, b) in blocks {
                if b["type"] == "tool_result" {
                    let id = b["tool_use_id"].as_str().unwrap_or("");
                    if !prev_uses.contains(&id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                }
            }
        }
    }
    // A final assistant turn (prefill) must not end in whitespace.
    if let Some((role, _, blocks)) = turns.last()
        && role == "assistant"
        && let Some((_, _, b)) = blocks.last()
        && let Some(text) = b["text"].as_str()
        && !text.is_empty()
        && text.ends_with(char::is_whitespace)
    {
        return Err("final assistant content cannot end with trailing whitespace".into());
    }
    Ok(())
}

// ------------------------------------------------------------- answers

/// One content block: how it starts in a stream, its deltas, and its final
/// form in a JSON answer.
struct Block {
    start: Value,
    deltas: Vec<Value>,
    full: Value,
}

struct Answer {
    blocks: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Value,
}

impl Answer {
    fn output_tokens(&self) -> usize {
        self.blocks.iter().map(|b| b.deltas.len()).sum()
    }
}

fn answer(body: &Value, chunks: usize, serial: usize) -> Answer {
    let tools = body["tools"].as_array().filter(|t| !t.is_empty());
    let choice = body["tool_choice"]["type"].as_str().unwrap_or("auto");
    let tool_name = match (tools, choice) {
        (None, _) | (Some(_), "none") => None,
        (Some(_), "tool") => body["tool_choice"]["name"].as_str().map(str::to_string),
        (Some(t), _) => t[0]["name"].as_str().map(str::to_string),
    };
    let forced = matches!(choice, "any" | "tool");
    let thinking = matches!(
        body["thinking"]["type"].as_str(),
        Some("enabled" | "adaptive")
    );

    let mut blocks = vec![];
    let mut stop_reason = "end_turn";
    let mut stop_sequence = Value::Null;
    if thinking {
        let mut deltas: Vec<Value> = THINKING_FRAGMENTS
            .iter()
            .map(|t| json!({"type": "thinking_delta", "thinking": t}))
            .collect();
        deltas.push(json!({"type": "signature_delta", "signature": SIGNATURE}));
        blocks.push(Block {
            start: json!({"type": "thinking", "thinking": "", "signature": ""}),
            deltas,
            full: json!({"type": "thinking", "thinking": THINKING_FRAGMENTS.concat(), "signature": SIGNATURE}),
        });
    }
    if tool_name.is_none() || !forced {
        let mut parts: Vec<String> = (0..chunks).map(text_delta).collect();
        if tool_name.is_none() {
            // `max_tokens` counts text deltas here; then the first stop sequence.
            let cap = body["max_tokens"].as_u64().unwrap_or(u64::MAX);
            if (parts.len() as u64) > cap {
                parts.truncate(cap as usize);
                stop_reason = "max_tokens";
            }
            let text = parts.concat();
            let hit = body["stop_sequences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .filter_map(|s| text.find(s).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at);
            if let Some((at, s)) = hit {
                let mut kept = vec![];
                let mut len = 0;
                for p in parts {
                    if len + p.len() <= at {
                        len += p.len();
                        kept.push(p);
                    } else {
                        if at > len {
                            kept.push(p[..at - len].to_string());
                        }
                        break;
                    }
                }
                parts = kept;
                stop_reason = "stop_sequence";
                stop_sequence = json!(s);
            }
        }
        if !parts.is_empty() {
            blocks.push(Block {
                start: json!({"type": "text", "text": ""}),
                full: json!({"type": "text", "text": parts.concat()}),
                deltas: parts
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect(),
            });
        }
    }
    if let Some(name) = tool_name {
        let id = format!("toolu_01mock{serial:06}");
        let input: Value = serde_json::from_str(TOOL_INPUT).unwrap();
        blocks.push(Block {
            start: json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            deltas: TOOL_INPUT_FRAGMENTS
                .iter()
                .map(|f| json!({"type": "input_json_delta", "partial_json": f}))
                .collect(),
            full: json!({"type": "tool_use", "id": id, "name": name, "input": input}),
        });
        stop_reason = "tool_use";
    }
    Answer {
        blocks,
        stop_reason,
        stop_sequence,
    }
}

fn usage(output_tokens: usize) -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    })
}

async fn messages(
    State(state): State<Arc<AnthropicState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let a = match admit(&state, &uri, headers, &raw) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let rid = a.request_id.as_str();
    let behavior = state
        .behaviors
        .lock()
        .unwrap()
        .get(&a.key)
        .cloned()
        .unwrap_or(AnthropicBehavior::Ok);
    match &behavior {
        AnthropicBehavior::Status {
            code,
            body,
            headers,
        } => {
            let mut r = (StatusCode::from_u16(*code).unwrap(), body.clone()).into_response();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            let mut r = with_request_id(r, rid);
            for (k, v) in headers {
                r.headers_mut().insert(*k, v.parse().unwrap());
            }
            return r;
        }
        AnthropicBehavior::RateLimited { retry_after_secs } => {
            let reset = SystemTime::now() + Duration::from_secs(*retry_after_secs);
            let mut r = error_response(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests per minute. Please reduce the prompt length or the maximum tokens requested, or try again later.",
                rid,
            );
            let h = r.headers_mut();
            h.insert("retry-after", retry_after_secs.to_string().parse().unwrap());
            h.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
            h.insert(
                "anthropic-ratelimit-requests-remaining",
                "0".parse().unwrap(),
            );
            h.insert(
                "anthropic-ratelimit-requests-reset",
                humantime::format_rfc3339_seconds(reset)
                    .to_string()
                    .parse()
                    .unwrap(),
            );
            return r;
        }
        AnthropicBehavior::Overloaded => {
            return error_response(529, "overloaded_error", "Overloaded", rid);
        }
        AnthropicBehavior::Hang => {
            let mut guard = CancelGuard {
                state: state.clone(),
                finished: false,
            };
            tokio::time::sleep(Duration::from_secs(3600)).await;
            guard.finish();
            return StatusCode::OK.into_response();
        }
        AnthropicBehavior::Delay(d) => tokio::time::sleep(*d).await,
        _ => {}
    }
    if let Err(message) = validate_messages(&a.body) {
        return bad_request(&message, rid);
    }
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let chunks = state.chunks.load(Ordering::Relaxed);
    let ans = answer(&a.body, chunks, serial);
    let message_id = format!("msg_01mock{serial:06}");
    let model = a.body["model"].clone();
    if a.body["stream"] != json!(true) {
        let v = json!({
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": ans.blocks.iter().map(|b| b.full.clone()).collect::<Vec<_>>(),
            "stop_reason": ans.stop_reason, "stop_sequence": ans.stop_sequence,
            "usage": usage(ans.output_tokens()),
        });
        return json_response(200, &v, rid);
    }

    // The stream: (event name, data, is a content delta).
    let mut events: Vec<(&'static str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1),
        }}),
    )];
    if ans.blocks.is_empty() {
        events.push(("ping", json!({"type": "ping"})));
    }
    for (i, b) in ans.blocks.iter().enumerate() {
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": b.start}),
        ));
        if i == 0 {
            events.push(("ping", json!({"type": "ping"})));
        }
        for d in &b.deltas {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i, "delta": d}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    let mut final_usage = usage(ans.output_tokens());
    final_usage.as_object_mut().unwrap().remove("service_tier");
    events.push((
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": ans.stop_reason, "stop_sequence": ans.stop_sequence},
            "usage": final_usage}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));

    let gap = Duration::from_millis(state.gap_ms.load(Ordering::Relaxed) as u64);
    let cut = match behavior {
        AnthropicBehavior::DropAfter(n) => Some((n, Cut::Drop)),
        AnthropicBehavior::StallAfter(n) => Some((n, Cut::Stall)),
        AnthropicBehavior::ErrorAfter(n) => Some((n, Cut::ErrorEvent)),
        _ => None,
    };
    let st = StreamState {
        events,
        next: 0,
        deltas_sent: 0,
        guard: CancelGuard {
            state: state.clone(),
            finished: false,
        },
    };
    let stream = futures_util::stream::unfold(st, move |mut st| async move {
        if st.next >= st.events.len() {
            st.guard.finish();
            return None;
        }
        let (name, data) = st.events[st.next].clone();
        if name == "content_block_delta" {
            if let Some((n, how)) = cut
                && st.deltas_sent == n
            {
                match how {
                    Cut::Drop => {
                        // Pending first, so that hyper flushes what came
                        // before (headers included) ahead of the break.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        st.guard.finish();
                        st.next = st.events.len();
                        let err = std::io::Error::other("injected drop");
                        return Some((Err(err), st));
                    }
                    Cut::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Cut::ErrorEvent => {
                        st.next = st.events.len();
                        let e = json!({"type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"}});
                        return Some((Ok(sse("error", &e)), st));
                    }
                }
            }
            if st.deltas_sent > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            st.deltas_sent += 1;
        }
        st.next += 1;
        Some((Ok::<_, std::io::Error>(sse(name, &data)), st))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert("content-type", "text/event-stream".parse().unwrap());
    h.insert("cache-control", "no-cache".parse().unwrap());
    with_request_id(r, rid)
}

#[derive(Clone, Copy)]
enum Cut {
    Drop,
    Stall,
    ErrorEvent,
}

struct StreamState {
    events: Vec<(&'static str, Value)>,
    next: usize,
    deltas_sent: usize,
    guard: CancelGuard,
}

fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn count_tokens(
    State(state): State<Arc<AnthropicState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let a = match admit(&state, &uri, headers, &raw) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if let Err(message) = validate_count_tokens(&a.body) {
        return bad_request(&message, &a.request_id);
    }
    json_response(200, &json!({"input_tokens": COUNT_TOKENS}), &a.request_id)
}

// ------------------------------------------------------------- models

fn model_list(state: &AnthropicState) -> Vec<Value> {
    let custom = state.models.lock().unwrap().clone();
    let list: Vec<(String, String, String)> = custom.unwrap_or_else(|| {
        DEFAULT_MODELS
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    });
    list.into_iter()
        .map(|(id, name, created)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": created})
        })
        .collect()
}

async fn models_list(
    State(state): State<Arc<AnthropicState>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    state.models_probes.fetch_add(1, Ordering::SeqCst);
    let a = match admit(&state, &uri, headers, &raw) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let rid = a.request_id.as_str();
    match state.models_status.load(Ordering::SeqCst) {
        0 => {}
        529 => return error_response(529, "overloaded_error", "Overloaded", rid),
        code => return error_response(code, "api_error", "Internal server error", rid),
    }
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        Some(_) => {
            return bad_request(
                "limit: Input should be greater than or equal to 1 and less than or equal to 1000",
                rid,
            );
        }
    };
    let all = model_list(&state);
    let pos = |id: &str| all.iter().position(|m| m["id"] == id);
    let (page, has_more): (Vec<Value>, bool) = if let Some(before) = query.get("before_id") {
        let end = pos(before).unwrap_or(0);
        let start = end.saturating_sub(limit);
        (all[start..end].to_vec(), start > 0)
    } else {
        let start = match query.get("after_id") {
            Some(after) => pos(after).map_or(all.len(), |p| p + 1),
            None => 0,
        };
        let end = (start + limit).min(all.len());
        (all[start..end].to_vec(), end < all.len())
    };
    let first_id = page.first().map_or(Value::Null, |m| m["id"].clone());
    let last_id = page.last().map_or(Value::Null, |m| m["id"].clone());
    json_response(
        200,
        &json!({"data": page, "has_more": has_more, "first_id": first_id, "last_id": last_id}),
        rid,
    )
}

async fn model_get(
    State(state): State<Arc<AnthropicState>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let a = match admit(&state, &uri, headers, &raw) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match model_list(&state).into_iter().find(|m| m["id"] == id) {
        Some(m) => json_response(200, &m, &a.request_id),
        None => error_response(
            404,
            "not_found_error",
            &format!("model: {id}"),
            &a.request_id,
        ),
    }
}
