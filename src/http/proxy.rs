//! The request path, top to bottom:
//!
//! 1. read the body, within the size limit;
//! 2. parse `model` and `stream` (nothing else);
//! 3. find the group in this request's config snapshot;
//! 4. send to the best candidate, failing over before the client sees a byte;
//! 5. relay the answer: SSE event by event, or the JSON body as received;
//! 6. settle usage and log (the [`Exchange`] does both, even on disconnect).

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Body as HttpBody;
use tokio::time::Instant;

use super::error::ApiError;
use super::{AppState, auth, request_id};
use crate::accounting::{End, Exchange, RequestInfo, log_rejected};
use crate::clients::Caller;
use crate::payload::Endpoint;
use crate::relay::{self, RelayOptions, compress, sse};
use crate::upstream::{self, FailoverError, Plan, Upstream};

/// An error, and the group it concerned if we got that far (for the log).
struct Rejection(ApiError, Option<String>);

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Self(e, None)
    }
}

/// The public listener's direct lane (see `http::Service`): the request
/// id, the key check and the proxy, without the router's middleware stack.
pub async fn direct(
    app: &AppState,
    upstream: &Upstream,
    endpoint: Endpoint,
    request: http::Request<hyper::body::Incoming>,
) -> Response {
    let (parts, body) = request.into_parts();
    let info = request_id::info_for(&parts.headers, parts.uri.path());
    let mut response = match auth::identify(app, &parts.headers) {
        Some(caller) => {
            let request = ClientRequest {
                info: info.clone(),
                caller: &caller,
                endpoint,
                headers: parts.headers,
                body,
            };
            respond(app, upstream, request).await
        }
        None => auth::unauthorized(app, Some(&info)),
    };
    request_id::stamp(&mut response, &info);
    response
}

/// `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and
/// `/v1/responses` through the router (requests with CORS to answer): one
/// path, the endpoint read from the URL.
pub async fn handle(
    State(app): State<AppState>,
    Extension(info): Extension<RequestInfo>,
    caller: Option<Extension<Caller>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(endpoint) = Endpoint::from_path(uri.path()) else {
        return ApiError::NotFound.into_response();
    };
    let caller = caller.map_or(Caller::Master, |Extension(c)| c);
    let request = ClientRequest {
        info,
        caller: &caller,
        endpoint,
        headers,
        body,
    };
    // This lane serves few requests (CORS ones): the shared client will do.
    respond(&app, &app.upstream, request).await
}

/// A client's request to a proxy endpoint, its caller identified.
struct ClientRequest<'a, B> {
    info: RequestInfo,
    caller: &'a Caller,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: B,
}

async fn respond<B>(app: &AppState, upstream: &Upstream, request: ClientRequest<'_, B>) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let log_info = request.info.clone();
    match proxy(app, upstream, request).await {
        Ok(response) => response,
        Err(Rejection(error, group)) => {
            log_rejected(
                &app.metrics,
                &log_info,
                group.as_deref(),
                error.status().as_u16(),
                error.code(),
            );
            error.into_response()
        }
    }
}

async fn proxy<B>(
    app: &AppState,
    upstream: &Upstream,
    request: ClientRequest<'_, B>,
) -> Result<Response, Rejection>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let ClientRequest {
        info,
        caller,
        endpoint,
        headers,
        body,
    } = request;
    let runtime = app.runtime();
    let config = &runtime.config;
    let in_flight = app.metrics.in_flight();

    let body = read_body(body, &headers, config.max_body_bytes).await?;
    let parsed = crate::payload::parse_for(&body, endpoint).map_err(ApiError::from)?;
    let Some(group) = runtime.routes.resolve(&parsed.model) else {
        let model = parsed.model.clone();
        return Err(Rejection(
            ApiError::ModelNotFound(model.clone()),
            Some(model),
        ));
    };
    if !group.serves(endpoint) {
        let error = ApiError::InvalidRequest {
            message: format!(
                "The model `{}` does not serve /v1{}.",
                group.name,
                endpoint.path()
            ),
            param: Some("model"),
        };
        return Err(Rejection(error, Some(parsed.model.clone())));
    }

    let client = caller.client().cloned();
    let mut rate_headers = None;
    if let Some(c) = &client {
        // Out of scope looks exactly like a model that does not exist.
        if !c.may_use(&group.name, &parsed.model) {
            let model = parsed.model.clone();
            return Err(Rejection(
                ApiError::ModelNotFound(model.clone()),
                Some(model),
            ));
        }
        match c.admit((body.len() / 4) as u64) {
            Ok(h) => rate_headers = Some(h),
            Err(limited) => {
                app.metrics
                    .client_limited
                    .get_or_create(&crate::metrics::ClientLabels {
                        client: c.name.to_string(),
                    })
                    .inc();
                return Err(Rejection(
                    ApiError::ClientLimited(limited),
                    Some(parsed.model.clone()),
                ));
            }
        }
    }

    let deadline = Instant::now() + config.timeouts.total;
    let penalties = (config.request_penalty, config.error_penalty);
    let plan = Plan {
        group: &group,
        endpoint,
        parsed: &parsed,
        body: &body,
        headers: &headers,
        max_attempts: config.retries.max_attempts,
        first_byte: config.timeouts.first_byte,
        deadline,
        cooldown: &config.cooldown,
        penalties,
    };
    let attempt = upstream::send(upstream, &plan, &app.metrics)
        .await
        .map_err(|e| Rejection(all_failed(&e), Some(parsed.model.clone())))?;

    let status = attempt.response.status();
    let exchange = Exchange::new(
        info,
        group.clone(),
        attempt.candidate,
        status.as_u16(),
        attempt.attempts,
        attempt.reservation,
        penalties,
        app.metrics.clone(),
    )
    .with_client(client)
    .with_request_body(body.clone());
    let mut out_headers = upstream::response_headers(attempt.response.headers());
    if let Some(h) = &rate_headers {
        h.apply(&mut out_headers);
    }

    if is_event_stream(attempt.response.headers()) {
        let encoding = compress::negotiate(headers.get(header::ACCEPT_ENCODING));
        let options = RelayOptions {
            strip_usage_chunk: parsed.router_requested_usage(),
            idle: config.timeouts.idle,
            deadline,
            encoding,
            stop: app.streams_stop.clone(),
        };
        let streams = crate::metrics::InFlight::new(app.metrics.open_streams.clone());
        let events = relay::relay(
            BodyDataStream::new(attempt.response.into_body()),
            exchange,
            options,
            (in_flight, streams),
        );
        if let Some(encoding) = encoding {
            out_headers.insert(header::CONTENT_ENCODING, encoding.header_value());
            out_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        out_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        let mut response = Response::new(Body::from_stream(events));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        return Ok(response);
    }

    match read_upstream(attempt.response, config.timeouts.idle, deadline).await {
        Ok(bytes) => {
            // Providers do not bill requests they refused.
            let usage = if status.is_success() {
                sse::body_usage(&bytes)
            } else {
                Some(Default::default())
            };
            exchange.finish(End {
                captured: if usage.is_none() {
                    vec![bytes.clone()]
                } else {
                    Vec::new()
                },
                ..End::ok(usage)
            });
            let body = compress_json(bytes, &headers, &mut out_headers).await;
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = out_headers;
            Ok(response)
        }
        Err(error) => {
            exchange.finish(End {
                failed: true,
                outcome: error.code(),
                ..End::default()
            });
            Err(Rejection(error, Some(parsed.model.clone())))
        }
    }
}

/// Compresses a whole JSON body when the client accepts an encoding we
/// speak (as the router's compression layer would), unless the upstream
/// already encoded it or it is too small to gain.
async fn compress_json(body: Bytes, request: &HeaderMap, out: &mut HeaderMap) -> Bytes {
    const MIN_BYTES: usize = 32;
    let Some(encoding) = compress::negotiate(request.get(header::ACCEPT_ENCODING)) else {
        return body;
    };
    if body.len() < MIN_BYTES || out.contains_key(header::CONTENT_ENCODING) {
        return body;
    }
    // Boxed: an encoder's state is kilobytes, and would otherwise be moved
    // with every request's future.
    match Box::pin(compress::whole(encoding, &body)).await {
        Ok(compressed) => {
            out.insert(header::CONTENT_ENCODING, encoding.header_value());
            out.append(header::VARY, HeaderValue::from_static("accept-encoding"));
            compressed
        }
        Err(_) => body,
    }
}

fn all_failed(e: &FailoverError) -> ApiError {
    if let Some(retry_after) = e.all_rate_limited() {
        ApiError::RateLimited { retry_after }
    } else if e.all_timed_out() {
        ApiError::UpstreamTimeout
    } else {
        ApiError::UpstreamFailed
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Reads the client's body, refusing an oversized one as early as possible:
/// a declared Content-Length over the limit is refused without reading.
async fn read_body<B>(body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(_) => Err(ApiError::InvalidRequest {
            message: "The request body could not be read.".into(),
            param: None,
        }),
    }
}

/// Reads a non-streaming upstream body, with the idle timeout between
/// chunks and the request's overall deadline.
async fn read_upstream(
    response: http::Response<hyper::body::Incoming>,
    idle: std::time::Duration,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    let mut stream = BodyDataStream::new(response.into_body());
    let mut buf = BytesMut::new();
    loop {
        let wait = (Instant::now() + idle).min(deadline);
        match tokio::time::timeout_at(wait, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(ApiError::UpstreamBodyFailed),
            Err(_) => return Err(ApiError::UpstreamTimeout),
        }
    }
}
