//! The client's JSON body: read only what routing needs, rewrite only what
//! must change, and pass every other byte through untouched.
//!
//! [`parse`] validates the whole body as JSON (serde_json, with its nesting
//! limit) but decodes only the top-level `model`, `stream` and
//! `stream_options`, recording the byte span of each value. [`Parsed::rewrite`]
//! then splices the new model name, and for streams `include_usage: true`,
//! into a copy of the original bytes. Unknown fields, key order, whitespace
//! and number formatting all survive.

use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

pub mod member;
pub mod scan;
mod shape;
pub use shape::Shaping;

/// The two wire formats the router speaks, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI's (and every compatible provider's).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl Api {
    /// The wire format a client calling `path` speaks, and reads errors in:
    /// Anthropic's under `/v1/messages` (its SDKs also call paths there the
    /// router does not serve, such as `/v1/messages/batches`), OpenAI's
    /// elsewhere.
    pub fn of_path(path: &str) -> Api {
        match path.strip_prefix("/v1/messages") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }
}

/// The endpoints the router serves, and what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's `/v1/messages`.
    Messages,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Responses,
        Self::Messages,
        Self::CountTokens,
    ];

    /// The path under a provider's `base_url`.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Completions => "/completions",
            Self::Embeddings => "/embeddings",
            Self::Responses => "/responses",
            Self::Messages => "/messages",
            Self::CountTokens => "/messages/count_tokens",
        }
    }

    /// The name used in config (`groups[].endpoints`), logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
            Self::Messages => "messages",
            Self::CountTokens => "count_tokens",
        }
    }

    /// OpenTelemetry's `gen_ai.operation.name` for it.
    pub fn operation(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Responses | Self::Messages => "chat",
            Self::Completions => "text_completion",
            Self::Embeddings => "embeddings",
            Self::CountTokens => "count_tokens",
        }
    }

    /// The router's route, as the name of the request's span.
    pub fn span_name(self) -> &'static str {
        match self {
            Self::ChatCompletions => "POST /v1/chat/completions",
            Self::Completions => "POST /v1/completions",
            Self::Embeddings => "POST /v1/embeddings",
            Self::Responses => "POST /v1/responses",
            Self::Messages => "POST /v1/messages",
            Self::CountTokens => "POST /v1/messages/count_tokens",
        }
    }

    /// The wire format requests to this endpoint are in.
    pub fn api(self) -> Api {
        match self {
            Self::Messages | Self::CountTokens => Api::Anthropic,
            _ => Api::OpenAi,
        }
    }

    /// What a request to this endpoint becomes for a provider that speaks
    /// `provider`: the same endpoint, or its translation (chat ↔ messages);
    /// `None` when that provider cannot serve it.
    pub fn for_provider(self, provider: Api) -> Option<Endpoint> {
        match (self.api() == provider, self) {
            (true, e) => Some(e),
            (false, Self::ChatCompletions) => Some(Self::Messages),
            (false, Self::Messages) => Some(Self::ChatCompletions),
            _ => None,
        }
    }

    /// The endpoint a router URL (`/v1/...`) serves.
    pub fn from_path(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/v1")?;
        Self::ALL.into_iter().find(|e| e.path() == rest)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether streams report usage only when `stream_options.include_usage`
    /// is set (chat and legacy completions). The Responses API always sends
    /// it in `response.completed`; embeddings do not stream.
    pub fn usage_needs_stream_option(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}

/// Why a body was rejected; each maps to a 400 with `param` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    pub message: String,
    pub param: Option<&'static str>,
}

impl PayloadError {
    fn new(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            message: message.into(),
            param,
        }
    }
}

/// The fields routing needs, and where they sit in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub model: String,
    model_span: Range<usize>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    stream_options: Option<StreamOptions>,
    /// Offset of the top-level object's closing `}`.
    end: usize,
    pub endpoint: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StreamOptions {
    /// `null`: replace the whole value.
    Null(Range<usize>),
    /// An object; `include_usage` is the span of its value if present,
    /// `open` the offset just after `{`, `empty` whether it has no keys.
    Object {
        include_usage: Option<Range<usize>>,
        open: usize,
        empty: bool,
    },
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Model,
    Stream,
    StreamOptions,
    IncludeUsage,
    #[serde(other)]
    Other,
}

/// The top-level keys we care about, borrowed as raw JSON.
#[derive(Default)]
struct TopLevel<'a> {
    model: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    stream_options: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = TopLevel::default();
                while let Some(field) = map.next_key::<Field>()? {
                    let (slot, name) = match field {
                        Field::Model => (&mut out.model, "model"),
                        Field::Stream => (&mut out.stream, "stream"),
                        Field::StreamOptions => (&mut out.stream_options, "stream_options"),
                        Field::IncludeUsage | Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        // Two `model`s would let us route on one while the
                        // upstream reads the other.
                        return Err(de::Error::custom(format_args!("duplicate key `{name}`")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// `stream_options`' keys; only `include_usage` matters.
#[derive(Default)]
struct StreamOptionsFields<'a> {
    include_usage: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for StreamOptionsFields<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StreamOptionsFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = StreamOptionsFields::default();
                while let Some(field) = map.next_key::<Field>()? {
                    if matches!(field, Field::IncludeUsage) {
                        if out.include_usage.is_some() {
                            return Err(de::Error::custom("duplicate key `include_usage`"));
                        }
                        out.include_usage = Some(map.next_value()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON value (already validated) as a string, if it is one. A string
/// without escapes, as model names are, is its bytes between the quotes.
fn string_value(raw: &str) -> Option<String> {
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(plain) if !plain.contains('\\') => Some(plain.to_owned()),
        _ => serde_json::from_str(raw).ok(),
    }
}

/// The byte range of `raw` inside `body`. `raw` must borrow from `body`.
fn span(body: &[u8], raw: &RawValue) -> Range<usize> {
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Deepest nesting of arrays and objects we forward (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// Whether `body` nests deeper than `max`. A byte scan, string-aware; run it
/// before parsing so a hostile body costs one linear pass and no recursion.
/// Strings, which are most of an LLM request's bytes, are jumped over with
/// `memchr` rather than looked at byte by byte.
fn too_deep(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => match scan::string_end(body, i) {
                Some(end) => {
                    i = end;
                    continue;
                }
                // Unterminated: the parser reports it.
                None => return false,
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Reads the routing fields of a chat-completions body.
pub fn parse(body: &[u8]) -> Result<Parsed, PayloadError> {
    parse_for(body, Endpoint::ChatCompletions)
}

/// Reads the routing fields of a body for `endpoint`.
pub fn parse_for(body: &[u8], endpoint: Endpoint) -> Result<Parsed, PayloadError> {
    if too_deep(body, MAX_DEPTH) {
        return Err(PayloadError::new(
            format!("JSON body nests deeper than {MAX_DEPTH} levels"),
            None,
        ));
    }
    let top: TopLevel = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("duplicate key") {
            PayloadError::new(strip_position(&msg), None)
        } else {
            PayloadError::new(
                format!(
                    "We could not parse the JSON body of your request: {}",
                    strip_position(&msg)
                ),
                None,
            )
        }
    })?;

    let raw_model = top
        .model
        .ok_or_else(|| PayloadError::new("you must provide a model parameter", Some("model")))?;
    let model = string_value(raw_model.get())
        .ok_or_else(|| PayloadError::new("model must be a string", Some("model")))?;
    if model.chars().any(char::is_control) {
        return Err(PayloadError::new(
            "model must not contain control characters",
            Some("model"),
        ));
    }

    let stream = match top.stream.map(RawValue::get) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(PayloadError::new(
                "stream must be a boolean",
                Some("stream"),
            ));
        }
    };

    let mut include_usage = false;
    let stream_options = match top.stream_options {
        None => None,
        Some(raw) if raw.get() == "null" => Some(StreamOptions::Null(span(body, raw))),
        Some(raw) => {
            let fields: StreamOptionsFields = serde_json::from_str(raw.get()).map_err(|_| {
                PayloadError::new("stream_options must be an object", Some("stream_options"))
            })?;
            let include = match fields.include_usage.map(RawValue::get) {
                None | Some("null") => None,
                Some("true") => {
                    include_usage = true;
                    fields.include_usage.map(|r| span(body, r))
                }
                Some("false") => fields.include_usage.map(|r| span(body, r)),
                Some(_) => {
                    return Err(PayloadError::new(
                        "stream_options.include_usage must be a boolean",
                        Some("stream_options"),
                    ));
                }
            };
            let whole = span(body, raw);
            let inner = raw.get()[1..raw.get().len() - 1].trim();
            Some(StreamOptions::Object {
                include_usage: include,
                open: whole.start + 1,
                empty: inner.is_empty(),
            })
        }
    };

    let end = body
        .iter()
        .rposition(|&b| b == b'}')
        .ok_or_else(|| PayloadError::new("body must be a JSON object", None))?;

    Ok(Parsed {
        model,
        model_span: span(body, raw_model),
        stream,
        include_usage,
        stream_options,
        end,
        endpoint,
    })
}

impl Parsed {
    /// Whether the router must ask upstream for usage the client did not ask
    /// for, and so strip that usage chunk from the client's stream.
    pub fn router_requested_usage(&self) -> bool {
        self.stream && !self.include_usage && self.endpoint.usage_needs_stream_option()
    }

    /// The body with `model` replaced by `model_json` (a JSON string literal)
    /// and, for streams, `stream_options.include_usage` forced to true.
    pub fn rewrite(&self, body: &[u8], model_json: &[u8]) -> Bytes {
        // (position, bytes to remove, bytes to insert), applied in order.
        let mut edits: [(usize, usize, &[u8]); 2] = [
            (self.model_span.start, self.model_span.len(), model_json),
            (usize::MAX, 0, b""),
        ];
        if self.router_requested_usage() {
            edits[1] = match &self.stream_options {
                None => (self.end, 0, b",\"stream_options\":{\"include_usage\":true}"),
                Some(StreamOptions::Null(s)) => (s.start, s.len(), b"{\"include_usage\":true}"),
                Some(StreamOptions::Object {
                    include_usage: Some(s),
                    ..
                }) => (s.start, s.len(), b"true"),
                Some(StreamOptions::Object { open, empty, .. }) => {
                    if *empty {
                        (*open, 0, b"\"include_usage\":true")
                    } else {
                        (*open, 0, b"\"include_usage\":true,")
                    }
                }
            };
        }
        edits.sort_by_key(|e| e.0);
        let extra: usize = edits.iter().map(|e| e.2.len()).sum();
        let mut out = BytesMut::with_capacity(body.len() + extra);
        let mut at = 0;
        for (pos, remove, insert) in edits {
            if pos == usize::MAX {
                break;
            }
            out.put_slice(&body[at..pos]);
            out.put_slice(insert);
            at = pos + remove;
        }
        out.put_slice(&body[at..]);
        out.freeze()
    }
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod nested_json;
#[cfg(test)]
mod tests;
