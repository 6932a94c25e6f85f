//! Bearer authentication for `/v1/*`, constant-time and length-hiding.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;

use super::{AppState, error::ApiError};
use crate::accounting::{RequestInfo, log_rejected};

/// The token from `Authorization: Bearer <token>`, if well-formed.
pub fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Admits `api_key` or any client key, and records who called.
pub async fn require_client_key(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let runtime = app.runtime();
    let caller = bearer(&request).and_then(|token| runtime.clients.identify(token));
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    if let Some(info) = request.extensions().get::<RequestInfo>() {
        log_rejected(&app.metrics, info, None, 401, ApiError::Unauthorized.code());
    }
    ApiError::Unauthorized.into_response()
}
