//! Bearer authentication for `/v1/*`, constant-time and length-hiding.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, header};

use super::{AppState, error::ApiError};
use crate::accounting::{RequestInfo, log_rejected};
use crate::clients::Caller;
use crate::payload::Api;

/// The token from `Authorization: Bearer <token>`, if well-formed.
pub fn bearer(request: &Request) -> Option<&[u8]> {
    bearer_in(request.headers())
}

/// The bearer token among `headers`, if well-formed.
pub fn bearer_in(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// The client key a request carries: `Authorization: Bearer`, or
/// `x-api-key` as Anthropic's clients send it.
pub fn client_key(headers: &HeaderMap) -> Option<&[u8]> {
    bearer_in(headers).or_else(|| {
        headers
            .get("x-api-key")
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|k| !k.is_empty())
    })
}

/// Who is calling `/v1/*`: `api_key` or a client key. `None` is a 401.
pub fn identify(app: &AppState, headers: &HeaderMap) -> Option<Caller> {
    client_key(headers).and_then(|token| app.runtime().clients.identify(token))
}

/// The 401 for an unknown or missing key, counted and logged, in the wire
/// format of the endpoint asked.
pub fn unauthorized(app: &AppState, info: Option<&RequestInfo>, api: Api) -> Response {
    if let Some(info) = info {
        log_rejected(&app.metrics, info, None, 401, ApiError::Unauthorized.code());
    }
    ApiError::Unauthorized.response_in(api)
}

/// Admits `api_key` or any client key, and records who called.
pub async fn require_client_key(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(caller) = identify(&app, request.headers()) {
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    let api = Api::of_path(request.uri().path());
    unauthorized(&app, request.extensions().get::<RequestInfo>(), api)
}
