//! The request path, for both wire formats (OpenAI's endpoints and
//! Anthropic's `/v1/messages`). [`proxy`] reads as its steps, each a
//! function below:
//!
//! 1. [`admit`]: the body, within its size limit, and the few fields
//!    routing needs (`model`, `stream`);
//! 2. [`route`]: the group the client named, its right to use it, and its
//!    rate limits; then [`prepare`]: the body for each provider in the
//!    group, the client's own or translated to the provider's API;
//! 3. [`send`]: the best candidate, failing over before the client has
//!    seen a byte;
//! 4. [`relay_stream`] or [`relay_json`]: the answer, as it arrives;
//! 5. settle: usage, metrics and the log line, by the [`Exchange`] the
//!    relay carries, when the answer ends however it ends (see
//!    `accounting`).
//!
//! A step that refuses the request returns a [`Rejection`]: the error the
//! client gets, and the group (for the log), if the request got that far.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Body as HttpBody;
use tokio::time::Instant;

use super::cached::{self, Lookup};
use super::error::ApiError;
use super::{AppState, auth, request_id};
use crate::accounting::{Billing, End, Exchange, Outcome, RequestInfo, Routed, log_rejected};
use crate::app::Runtime;
use crate::cache::{Fill, Kind};
use crate::clients::{Caller, Client, RateHeaders};
use crate::metrics::{ClientLabels, InFlight};
use crate::payload::{Api, Endpoint, Parsed};
use crate::relay::body::{self as json_body, BodyOptions};
use crate::relay::{self, Formats, RelayOptions, compress, sse};
use crate::routing::Group;
use crate::upstream::{self, Attempt, Bodies, FailoverError, Plan, Prepared, Upstream};
use crate::usage::Penalties;
use crate::usage::cost::usd;

/// An error for the client, and the group it concerned if we got that far.
struct Rejection(ApiError, Option<String>);

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Self(e, None)
    }
}

/// What the direct lane needs: the state, and this worker's own upstream
/// client. Each worker has its own `Arc` of it, so the one reference count a
/// request takes is on the worker's own cache line. Cloning the state and
/// the client per request took three, one of them on a line every worker
/// writes.
pub struct Lane {
    pub app: AppState,
    pub upstream: Upstream,
}

/// The public listener's direct lane (see `http::Service`): the request
/// id, the key check and the proxy, without the router's middleware stack.
///
/// The id and the key check are done here, before the future exists, and
/// the future holds the request once: the steps below borrow it. Each
/// `async fn` that took it by value kept its own copies (its argument and
/// its body's binding) in every request's future, which is allocated and
/// copied once per request.
pub fn direct(
    lane: Arc<Lane>,
    endpoint: Endpoint,
    request: http::Request<hyper::body::Incoming>,
) -> impl Future<Output = Response> + Send + 'static {
    let (parts, body) = request.into_parts();
    let info = request_id::info_for(&parts.headers, parts.uri.path());
    let caller = auth::identify(&lane.app, &parts.headers);
    let request = ClientRequest {
        info,
        endpoint,
        uri: parts.uri,
        headers: parts.headers,
    };
    async move {
        let Lane { app, upstream } = &*lane;
        let mut response = match &caller {
            Some(caller) => respond(app, upstream, &request, caller, body).await,
            None => auth::unauthorized(app, Some(&request.info), endpoint.api()),
        };
        request_id::stamp(&mut response, &request.info);
        response
    }
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
        endpoint,
        uri,
        headers,
    };
    // This lane serves few requests (CORS ones): the shared client will do.
    respond(&app, &app.upstream, &request, &caller, body).await
}

/// A client's request to a proxy endpoint: its head, which the steps
/// borrow (the body is passed on by value, and read once).
struct ClientRequest {
    info: RequestInfo,
    endpoint: Endpoint,
    uri: http::Uri,
    headers: HeaderMap,
}

async fn respond<B>(
    app: &AppState,
    upstream: &Upstream,
    request: &ClientRequest,
    caller: &Caller,
    body: B,
) -> Response
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    match proxy(app, upstream, request, caller, body).await {
        Ok(response) => response,
        Err(Rejection(error, group)) => {
            log_rejected(
                &app.metrics,
                &request.info,
                group.as_deref(),
                error.status().as_u16(),
                error.code(),
            );
            error.response_in(request.endpoint.api())
        }
    }
}

/// The steps, in order, on one config snapshot.
async fn proxy<B>(
    app: &AppState,
    upstream: &Upstream,
    request: &ClientRequest,
    caller: &Caller,
    body: B,
) -> Result<Response, Rejection>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let ClientRequest {
        info,
        endpoint,
        uri,
        headers,
    } = request;
    let endpoint = *endpoint;
    let runtime = app.runtime();
    let in_flight = app.metrics.in_flight();

    let Admitted { body, parsed } = admit(&runtime, endpoint, headers, body).await?;
    note_input(info, &body);
    let route = route(app, &runtime, caller, &parsed, &body)?;
    if endpoint == Endpoint::CountTokens && !speaks(&route.group, Api::Anthropic) {
        return Ok(count_locally(app, info, &route.group, &body));
    }
    let request = (endpoint, &parsed, &body[..], headers);
    let cache = match cached::lookup(app, &route.group, request, caller, info).await {
        Lookup::Hit(response) => return Ok(response),
        Lookup::Miss { fill, label } => Some((fill, label)),
        Lookup::Off => None,
    };
    let deadline = Instant::now() + runtime.config.timeouts.total;
    let penalties = Penalties {
        request: runtime.config.request_penalty,
        error: runtime.config.error_penalty,
    };
    // The blocks below end what their locals borrow: rustc keeps a local
    // that was ever borrowed in the future until its scope ends, so
    // without them the plan, the bodies and the attempt would all be kept
    // while the answer is relayed.
    let sent = {
        let bodies = prepare(endpoint, &body, &parsed, &route.group)?;
        let plan = Plan {
            group: &route.group,
            endpoint,
            bodies: &bodies,
            body_len: body.len(),
            query: uri.query(),
            headers,
            max_attempts: runtime.config.retries.max_attempts,
            first_byte: runtime.config.timeouts.first_byte,
            deadline,
            cooldown: &runtime.config.cooldown,
            penalties,
            trace: &info.trace,
        };
        send(app, upstream, &plan).await?
    };

    let (response, answer, formats) = {
        let Attempt {
            response,
            candidate,
            attempts,
            reservation,
            trace,
        } = sent;
        let status = response.status();
        let chosen = &route.group.candidates[candidate];
        let formats = Formats {
            client: endpoint.api(),
            provider: chosen.provider.api(),
        };
        let chosen_price = chosen.price;
        let exchange = Exchange::new(
            info.clone(),
            Routed {
                group: route.group.clone(),
                candidate,
                attempts,
                status: status.as_u16(),
                reservation,
                trace,
            },
            Billing {
                penalties,
                cooldown: runtime.config.cooldown.clone(),
                client: route.client,
                request_body: body.clone(),
                metrics: app.metrics.clone(),
            },
        );
        let mut out_headers = upstream::response_headers(response.headers());
        if let Some(h) = &route.rate_headers {
            h.apply(&mut out_headers);
        }
        let fill = match cache {
            Some((fill, label)) => {
                out_headers.insert(cached::HEADER, HeaderValue::from_static(label));
                // Only complete 200 answers are kept.
                fill.filter(|_| status == StatusCode::OK)
                    .map(|f| f.priced(chosen_price))
            }
            None => None,
        };
        let answer = Answer {
            status,
            headers: out_headers,
            exchange,
            in_flight,
            price: chosen_price,
            fill,
        };
        if is_event_stream(response.headers()) {
            let options = RelayOptions {
                formats,
                model: chosen.model.clone(),
                include_usage: parsed.include_usage,
                strip_usage_chunk: parsed.router_requested_usage(),
                idle: runtime.config.timeouts.idle,
                deadline,
                encoding: compress::negotiate(headers.get(header::ACCEPT_ENCODING)),
                stop: app.streams_stop.clone(),
                max_event_bytes: usize::try_from(runtime.config.limits.max_event_bytes)
                    .unwrap_or(usize::MAX),
            };
            let streams = InFlight::new(app.metrics.open_streams.clone());
            return Ok(relay_stream(response, answer, options, streams));
        }
        (response, answer, formats)
    };
    let options = BodyOptions {
        idle: runtime.config.timeouts.idle,
        deadline,
        max_bytes: runtime.config.limits.max_response_bytes,
    };
    relay_json(response, answer, headers, options, (formats, endpoint))
        .await
        .map_err(|e| Rejection(e, Some(parsed.model.clone())))
}

/// What step 1 admitted: the body, and what routing reads of it.
struct Admitted {
    body: Bytes,
    parsed: Parsed,
}

/// Step 1, when the request head is in: reads the body (refusing one over
/// `max_body_bytes`, by its declared length before reading any of it) and
/// parses the fields routing needs. An error here is the client's (400,
/// 413), and names no group.
async fn admit<B>(
    runtime: &Runtime,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: B,
) -> Result<Admitted, Rejection>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let limits = BodyLimits {
        max_bytes: runtime.config.max_body_bytes,
        total: runtime.config.timeouts.request_body,
        idle: runtime.config.timeouts.request_body_idle,
    };
    let body = read_body(body, headers, limits).await?;
    let parsed = crate::payload::parse_for(&body, endpoint).map_err(ApiError::from)?;
    Ok(Admitted { body, parsed })
}

/// The client's prompt on the request's span, when content is captured:
/// its messages (or `prompt`, or `input`) and its system instructions, as
/// it sent them.
fn note_input(info: &RequestInfo, body: &[u8]) {
    use crate::payload::scan::top_level_value;
    if !info.trace.is_on() || !crate::telemetry::traces::capture_content() {
        return;
    }
    if let Some(input) = ["messages", "input", "prompt"]
        .into_iter()
        .find_map(|key| top_level_value(body, key))
    {
        info.trace.set_content("gen_ai.input.messages", input);
    }
    if let Some(system) = ["system", "instructions"]
        .into_iter()
        .find_map(|key| top_level_value(body, key))
    {
        info.trace.set_content("gen_ai.system_instructions", system);
    }
}

/// Whether any candidate of `group` speaks `api`.
fn speaks(group: &Group, api: Api) -> bool {
    group.candidates.iter().any(|c| c.provider.api() == api)
}

/// Step 2, continued, once the group is known: the request as each of its
/// providers needs it. Providers that speak the client's API get the
/// client's body (only `model` will change); the others get a translation,
/// made once per provider. A provider that cannot take this request (a
/// parameter with no equivalent in its API) is left out; if no candidate
/// is left, that is the client's 400, naming the parameter and provider.
fn prepare(
    endpoint: Endpoint,
    body: &Bytes,
    parsed: &Parsed,
    group: &Group,
) -> Result<Bodies, Rejection> {
    let refuse = |e| Rejection(e, Some(parsed.model.clone()));
    let mut bodies = Bodies {
        client_api: endpoint.api(),
        own: Prepared {
            body: body.clone(),
            parsed: parsed.clone(),
        },
        translated: Vec::new(),
    };
    let mut refusal = None;
    let mut seen: Vec<&str> = Vec::new();
    for c in &group.candidates {
        let provider = &c.provider;
        let api = provider.api();
        if api == endpoint.api() || seen.contains(&&*provider.name) {
            continue;
        }
        seen.push(&provider.name);
        let Some(to) = endpoint.for_provider(api) else {
            continue;
        };
        let target = crate::wire::Target {
            provider: &provider.name,
            default_max_tokens: provider.default_max_tokens,
        };
        let translated = crate::wire::translate_request(endpoint, to, body, target)
            .map_err(|e| ApiError::InvalidRequest {
                message: e.message,
                param: None,
            })
            .and_then(|bytes| {
                let bytes = Bytes::from(bytes);
                let parsed = crate::payload::parse_for(&bytes, to).map_err(ApiError::from)?;
                Ok(Prepared {
                    body: bytes,
                    parsed,
                })
            });
        match translated {
            Ok(prepared) => bodies.translated.push((provider.name.clone(), prepared)),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    let servable = group.candidates.iter().any(|c| {
        endpoint
            .for_provider(c.provider.api())
            .is_some_and(|e| c.uri(e).is_some())
            && bodies.get(c).is_some()
    });
    if servable {
        return Ok(bodies);
    }
    Err(refuse(refusal.unwrap_or_else(|| {
        ApiError::InvalidRequest {
            message: format!(
                "The model `{}` does not serve /v1{}.",
                group.name,
                endpoint.path()
            ),
            param: Some("model"),
        }
    })))
}

/// `POST /v1/messages/count_tokens` to a group with no Anthropic provider
/// to ask: the router counts (tiktoken), and says so in
/// `x-llm-router-usage-estimated`.
fn count_locally(app: &AppState, info: &RequestInfo, group: &Group, body: &[u8]) -> Response {
    let tokens = crate::usage::estimate::estimate(body, &[]).prompt_tokens;
    crate::accounting::log_local(&app.metrics, info, &group.name, "counted_locally");
    let mut response = whole(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from(format!("{{\"input_tokens\":{tokens}}}")),
    );
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-llm-router-usage-estimated",
        HeaderValue::from_static("true"),
    );
    response
}

/// Where step 2 sends the request, and for whom.
struct Route {
    group: Arc<Group>,
    client: Option<Arc<Client>>,
    /// The client key's `x-ratelimit-*` state, for the response.
    rate_headers: Option<RateHeaders>,
}

/// Step 2, with the body parsed: resolves `model` (a group, an alias, or
/// `provider/model`), checks that the group serves this endpoint and that
/// the caller's key may use it, and admits the request against the key's
/// rpm, tpm and budget. A group out of the key's scope is a 404, exactly
/// as one that does not exist.
fn route(
    app: &AppState,
    runtime: &Runtime,
    caller: &Caller,
    parsed: &Parsed,
    body: &[u8],
) -> Result<Route, Rejection> {
    let refuse = |e| Rejection(e, Some(parsed.model.clone()));
    let not_found = || refuse(ApiError::ModelNotFound(parsed.model.clone()));
    let group = runtime
        .routes
        .resolve(&parsed.model)
        .ok_or_else(not_found)?;
    if !group.serves(parsed.endpoint) {
        return Err(refuse(ApiError::InvalidRequest {
            message: format!(
                "The model `{}` does not serve /v1{}.",
                group.name,
                parsed.endpoint.path()
            ),
            param: Some("model"),
        }));
    }
    let client = caller.client().cloned();
    let mut rate_headers = None;
    if let Some(c) = &client {
        if !c.may_use(&group.name, &parsed.model) {
            return Err(not_found());
        }
        match c.admit((body.len() / 4) as u64) {
            Ok(h) => rate_headers = Some(h),
            Err(limited) => {
                app.metrics
                    .client_limited
                    .get_or_create(&ClientLabels {
                        client: c.name.to_string(),
                    })
                    .inc();
                return Err(refuse(ApiError::ClientLimited(limited)));
            }
        }
    }
    Ok(Route {
        group,
        client,
        rate_headers,
    })
}

/// Step 3, once routed: tries the group's candidates, best first, until
/// one answers with something to pass on (see `upstream::send`). When
/// every attempt failed: 429 if all were rate limits (with the soonest
/// `Retry-After`), 504 if all timed out, else 502.
async fn send(app: &AppState, upstream: &Upstream, plan: &Plan<'_>) -> Result<Attempt, Rejection> {
    upstream::send(upstream, plan, &app.metrics)
        .await
        .map_err(|e| Rejection(all_failed(&e), Some(plan.bodies.own.parsed.model.clone())))
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

/// An upstream's answer on its way to the client.
struct Answer {
    status: StatusCode,
    /// The upstream's headers as the client gets them.
    headers: HeaderMap,
    exchange: Exchange,
    in_flight: InFlight,
    /// The candidate's prices, for the cost header of whole answers.
    price: Option<crate::usage::cost::Price>,
    /// Keeps the answer for the cache, when the group caches.
    fill: Option<Fill>,
}

/// Step 4 for `text/event-stream` answers: the client's response, whose
/// body relays the upstream's events one by one as they arrive (see
/// `relay`). The relay owns the exchange, and settles it when the stream
/// ends, breaks, stalls, or its client goes away.
fn relay_stream(
    response: crate::upstream::UpstreamResponse,
    answer: Answer,
    options: RelayOptions,
    streams: InFlight,
) -> Response {
    let Answer {
        status,
        mut headers,
        exchange,
        in_flight,
        fill,
        ..
    } = answer;
    if let Some(encoding) = options.encoding {
        headers.insert(header::CONTENT_ENCODING, encoding.header_value());
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let events = relay::relay(
        BodyDataStream::new(response.into_body()),
        exchange,
        options,
        (in_flight, streams),
        fill,
    );
    let mut response = Response::new(Body::from_stream(events));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Most of a provider's error body (a 4xx passed through) that is read.
const ERROR_BODY_WINDOW: usize = 64 * 1024;

/// The largest answer translated between wire formats (translating needs
/// the whole answer in hand).
const TRANSLATE_WINDOW: usize = 16 * 1024 * 1024;

/// Step 4 for other answers (see `relay::body`): a body that ends within
/// its first window is answered whole, with the `usage` it reports settled
/// first (refused requests cost nothing), translated to the client's wire
/// format if the provider speaks the other, and compressed when the client
/// accepts it; a longer one is relayed as it arrives and settles at its
/// end. A provider's 4xx reaches the client as an error in the client's
/// format. A body that stalls, breaks or grows past
/// `limits.max_response_bytes` before the client saw a byte is a 504 or
/// 502, and settles as a failure.
///
/// An `async` block rather than an `async fn`, and `answer` used in place:
/// both keep each of its fields once in the request's future, where an
/// `async fn` that took it apart kept the whole and the parts.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in the future"
)]
fn relay_json<'a>(
    response: crate::upstream::UpstreamResponse,
    mut answer: Answer,
    request: &'a HeaderMap,
    options: BodyOptions,
    (formats, endpoint): (Formats, Endpoint),
) -> impl Future<Output = Result<Response, ApiError>> + Send + 'a {
    async move {
        let status = answer.status;
        let declared = content_length(response.headers());
        let mut upstream = BodyDataStream::new(response.into_body());
        let failed = |exchange: Exchange, outcome: Outcome| {
            exchange.finish(End::with(outcome));
            match outcome {
                Outcome::UpstreamTimeout => ApiError::UpstreamTimeout,
                Outcome::ResponseTooLarge => ApiError::UpstreamTooLarge,
                _ => ApiError::UpstreamBodyFailed,
            }
        };
        if !status.is_success() {
            // Providers do not bill requests they refused.
            let head = match json_body::read_head(&mut upstream, ERROR_BODY_WINDOW, &options).await
            {
                Ok(head) => head,
                Err(outcome) => return Err(failed(answer.exchange, outcome)),
            };
            answer.exchange.finish(End::ok(Some(Default::default())));
            let mut body = head.concat();
            if let Some(shaped) = client_error(status.as_u16(), &body, formats) {
                body = shaped;
                json_headers(&mut answer.headers);
            }
            return Ok(whole(status, answer.headers, body));
        }
        if let (Some(max), Some(declared)) = (options.max_bytes, declared)
            && declared > max
        {
            return Err(failed(answer.exchange, Outcome::ResponseTooLarge));
        }
        let window = if formats.translated() {
            TRANSLATE_WINDOW
        } else {
            json_body::WHOLE_BODY_WINDOW
        };
        let head = match json_body::read_head(&mut upstream, window, &options).await {
            Ok(head) => head,
            Err(outcome) => return Err(failed(answer.exchange, outcome)),
        };
        if !head.ended {
            if formats.translated() {
                return Err(failed(answer.exchange, Outcome::ResponseTooLarge));
            }
            let encoding = if answer.headers.contains_key(header::CONTENT_ENCODING) {
                None
            } else {
                compress::negotiate(request.get(header::ACCEPT_ENCODING))
            };
            if let Some(encoding) = encoding {
                answer
                    .headers
                    .insert(header::CONTENT_ENCODING, encoding.header_value());
                answer
                    .headers
                    .append(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            let usage = match formats.provider {
                Api::OpenAi => sse::usage_value,
                Api::Anthropic => crate::wire::anthropic::response::usage_value,
            };
            let output = json_body::Output { encoding, usage };
            let rest = json_body::relay_body(
                head,
                upstream,
                answer.exchange,
                options,
                output,
                answer.in_flight,
            );
            let mut response = Response::new(Body::from_stream(rest));
            *response.status_mut() = status;
            *response.headers_mut() = answer.headers;
            return Ok(response);
        }
        let bytes = head.concat();
        answer.exchange.note_output(&bytes);
        let usage = match (endpoint, formats.provider) {
            // Counting tokens is free.
            (Endpoint::CountTokens, _) => Some(Default::default()),
            (_, Api::OpenAi) => sse::body_usage(&bytes),
            (_, Api::Anthropic) => crate::wire::anthropic::response::message_usage(&bytes),
        };
        let body = if formats.translated() {
            let Some(translated) = translate_answer(&bytes, formats) else {
                tracing::warn!("an upstream answer could not be read for translation");
                return Err(failed(answer.exchange, Outcome::UpstreamBodyFailed));
            };
            json_headers(&mut answer.headers);
            Bytes::from(translated)
        } else {
            bytes.clone()
        };
        if let Some(mut fill) = answer.fill
            && !answer.headers.contains_key(header::CONTENT_ENCODING)
        {
            fill.push(&body);
            let content_type = answer
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            fill.finish(Kind::Json, content_type, usage);
        }
        // The answer's cost, for clients that track their own spending.
        if let (Some(price), Some(usage)) = (answer.price, usage)
            && let Ok(cost) = HeaderValue::from_str(&usd(price.cost_nanos(&usage)).to_string())
        {
            answer.headers.insert("x-llm-router-cost-usd", cost);
        }
        answer.exchange.finish(End {
            captured: if usage.is_none() {
                vec![bytes]
            } else {
                Vec::new()
            },
            ..End::ok(usage)
        });
        let body = compress_json(body, request, &mut answer.headers).await;
        Ok(whole(status, answer.headers, body))
    }
}

/// A whole answer in the client's wire format.
fn translate_answer(bytes: &[u8], formats: Formats) -> Option<Vec<u8>> {
    use crate::wire::anthropic::response;
    match (formats.provider, formats.client) {
        (Api::OpenAi, Api::Anthropic) => response::chat_to_message(bytes),
        (Api::Anthropic, Api::OpenAi) => response::message_to_chat(bytes),
        _ => Some(bytes.to_vec()),
    }
}

/// A provider's error body in the client's error shape: `None` when it
/// already has that shape (it then passes through unchanged).
fn client_error(status: u16, body: &[u8], formats: Formats) -> Option<Bytes> {
    use crate::wire::anthropic::error as anthropic;
    match (formats.client, formats.provider) {
        (Api::OpenAi, Api::OpenAi) => crate::wire::openai::error_body(status, body),
        (Api::OpenAi, Api::Anthropic) => Some(anthropic::to_openai(status, body)),
        (Api::Anthropic, _) => {
            let shaped = anthropic::from_openai(status, body);
            (shaped != body).then_some(shaped)
        }
    }
}

/// The headers of a body the router wrote: JSON, and not encoded (yet).
fn json_headers(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
}

/// A response with a body already in hand.
fn whole(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
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

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// What a client's body may cost: its size, and its time.
struct BodyLimits {
    max_bytes: u64,
    /// The whole body, from the end of the head.
    total: std::time::Duration,
    /// Between two pieces of it.
    idle: std::time::Duration,
}

/// Reads the client's body, refusing an oversized one as early as possible
/// (a declared Content-Length over the limit is refused without reading),
/// and one that arrives too slowly (a 408, and the connection closes).
async fn read_body<B>(body: B, headers: &HeaderMap, limits: BodyLimits) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let limit = limits.max_bytes;
    if content_length(headers).is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let mut frames = std::pin::pin!(limited);
    let deadline = Instant::now() + limits.total;
    let mut buf = BytesMut::new();
    loop {
        let wait = (Instant::now() + limits.idle).min(deadline);
        let frame = match tokio::time::timeout_at(wait, frames.frame()).await {
            Err(_elapsed) => return Err(ApiError::RequestTimeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            Ok(Some(Err(_))) => {
                return Err(ApiError::InvalidRequest {
                    message: "The request body could not be read.".into(),
                    param: None,
                });
            }
        };
        if let Ok(data) = frame.into_data() {
            if buf.is_empty() && frames.is_end_stream() {
                // The usual case: the whole body in one piece, no copy.
                return Ok(data);
            }
            buf.extend_from_slice(&data);
        }
    }
}
