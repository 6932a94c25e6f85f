//! The response cache on the request path: look a request up before it is
//! sent, answer a hit without an upstream, and hand a miss a [`Fill`] that
//! keeps the fresh answer.
//!
//! A hit costs no provider usage and no money, and is not charged to the
//! client's tokens per minute or budgets (it counted toward its requests
//! per minute at admission). Every answer of a group that caches carries
//! `x-llm-router-cache: hit | miss | bypass`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::AppState;
use crate::accounting::{RequestInfo, log_local};
use crate::cache::{self, Entry, Fill, Kind, Mode};
use crate::clients::Caller;
use crate::metrics::{CacheLabels, GroupLabels};
use crate::payload::{Endpoint, Parsed};
use crate::relay::compress::{self, EventEncoder};
use crate::routing::Group;
use crate::usage::cost::usd;

/// The header that says what the cache did.
pub const HEADER: &str = "x-llm-router-cache";

/// What the cache makes of a request.
pub enum Lookup {
    /// The group does not cache (or the endpoint is not cached).
    Off,
    /// The answer, from the cache.
    Hit(Response),
    /// Go upstream; `fill` keeps the answer (unless `no-store`), and
    /// `label` is what the response header says.
    Miss {
        fill: Option<Fill>,
        label: &'static str,
    },
}

/// Step 2, continued, for a group that caches: the request's key, and the
/// answer stored under it if there is one and `Cache-Control` allows
/// looking (`no-cache` skips the lookup but stores the fresh answer;
/// `no-store` does neither).
pub async fn lookup(
    app: &AppState,
    group: &Arc<Group>,
    request: (Endpoint, &Parsed, &[u8], &HeaderMap),
    caller: &Caller,
    info: &RequestInfo,
) -> Lookup {
    let (endpoint, parsed, body, headers) = request;
    let (Some(cache), Some(ttl)) = (&app.cache, group.cache_ttl) else {
        return Lookup::Off;
    };
    if endpoint == Endpoint::CountTokens {
        return Lookup::Off;
    }
    let count = |result: &'static str| {
        info.trace.set("llm_router.cache", result);
        app.metrics
            .cache_requests
            .get_or_create(&CacheLabels {
                group: group.name.to_string(),
                result,
            })
            .inc();
        let totals = &app.metrics.cache_totals;
        let counter = match result {
            "hit" => &totals.hits,
            "miss" => &totals.misses,
            _ => &totals.bypasses,
        };
        counter.fetch_add(1, Relaxed);
    };
    let mode = Mode::from_header(headers.get(header::CACHE_CONTROL));
    let client = match caller {
        _ if app.cache_config.shared => None,
        Caller::Master => Some("master"),
        Caller::Client(c) => Some(&*c.fingerprint),
    };
    let key = cache::key(&cache::KeyParts {
        endpoint: endpoint.name(),
        group: &group.name,
        body,
        client,
        stream: parsed.stream,
    });
    let Some(key) = key.filter(|_| mode != Mode::Bypass) else {
        count("bypass");
        return Lookup::Miss {
            fill: None,
            label: "bypass",
        };
    };
    if mode == Mode::Normal
        && let Some(entry) = cache.get(&group.name, &key).await
        && (entry.kind == Kind::Stream) == parsed.stream
    {
        count("hit");
        saved(app, group, &entry);
        log_local(&app.metrics, info, &group.name, "cache_hit");
        return Lookup::Hit(answer(&entry, headers).await);
    }
    count(if mode == Mode::Refresh {
        "bypass"
    } else {
        "miss"
    });
    let max_entry = cache::max_entry_bytes(app.cache_config.max_bytes);
    Lookup::Miss {
        fill: Some(Fill::new(cache.clone(), &group.name, key, ttl, max_entry)),
        label: if mode == Mode::Refresh {
            "bypass"
        } else {
            "miss"
        },
    }
}

/// Counts what a hit saved.
fn saved(app: &AppState, group: &Group, entry: &Entry) {
    let labels = GroupLabels {
        group: group.name.to_string(),
    };
    app.metrics
        .cache_saved_tokens
        .get_or_create(&labels)
        .inc_by(entry.usage.total_tokens);
    let totals = &app.metrics.cache_totals;
    totals
        .saved_tokens
        .fetch_add(entry.usage.total_tokens, Relaxed);
    totals
        .saved_nanos
        .fetch_add(entry.cost_nanos.unwrap_or(0), Relaxed);
    if let Some(nanos) = entry.cost_nanos {
        app.metrics
            .cache_saved_cost
            .get_or_create(&labels)
            .inc_by(usd(nanos));
    }
}

/// A stored answer as the client's response: the body whole (compressed
/// if the client accepts it), or the events replayed one by one, with
/// their original boundaries, to their end.
async fn answer(entry: &Entry, request: &HeaderMap) -> Response {
    let encoding = compress::negotiate(request.get(header::ACCEPT_ENCODING));
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(HEADER, HeaderValue::from_static("hit"));
    let body = match entry.kind {
        Kind::Json => {
            let whole = entry.parts.first().cloned().unwrap_or_default();
            match encoding {
                Some(enc) if whole.len() >= 32 => {
                    match Box::pin(compress::whole(enc, &whole)).await {
                        Ok(compressed) => {
                            headers.insert(header::CONTENT_ENCODING, enc.header_value());
                            headers
                                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                            Body::from(compressed)
                        }
                        Err(_) => Body::from(whole),
                    }
                }
                _ => Body::from(whole),
            }
        }
        Kind::Stream => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if let Some(enc) = encoding {
                headers.insert(header::CONTENT_ENCODING, enc.header_value());
                headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            Body::from_stream(replay(entry.parts.clone(), encoding.map(EventEncoder::new)))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    *response.headers_mut() = headers;
    response
}

/// The stored events, each as its own chunk (compressed and flushed one
/// by one when an encoder is given), then the encoder's end.
fn replay(
    parts: Vec<Bytes>,
    encoder: Option<EventEncoder>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(
        (parts.into_iter(), encoder, false),
        |(mut parts, mut encoder, done)| async move {
            if done {
                return None;
            }
            match (parts.next(), &mut encoder) {
                (Some(part), None) => Some((Ok(part), (parts, encoder, false))),
                (Some(part), Some(enc)) => {
                    let out = enc.encode(&part).await;
                    Some((out, (parts, encoder, false)))
                }
                (None, Some(enc)) => {
                    let tail = enc.finish().await;
                    Some((tail, (parts, encoder, true)))
                }
                (None, None) => None,
            }
        },
    )
}
