//! Bearer authentication for `/v1/*`, constant-time and length-hiding.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};

use super::{AppState, error::ApiError};
use crate::accounting::{RequestInfo, log_rejected};
use crate::clients::Caller;

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

/// Who is calling `/v1/*`: `api_key` or a client key. `None` is a 401.
pub fn identify(app: &AppState, headers: &HeaderMap) -> Option<Caller> {
    bearer_in(headers).and_then(|token| app.runtime().clients.identify(token))
}

/// The 401 for an unknown or missing key, counted and logged.
pub fn unauthorized(app: &AppState, info: Option<&RequestInfo>) -> Response {
    if let Some(info) = info {
        log_rejected(&app.metrics, info, None, 401, ApiError::Unauthorized.code());
    }
    ApiError::Unauthorized.into_response()
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
    unauthorized(&app, request.extensions().get::<RequestInfo>())
}
