//! Admin authentication: the admin key, never the client key.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::error::ApiError;

/// How a request stands against the admin key.
pub enum AdminAccess {
    Disabled,
    Granted,
    /// The client key was presented: authenticated, but never an admin.
    ClientKey,
    Denied,
}

pub fn check(app: &AppState, token: Option<&[u8]>) -> AdminAccess {
    let runtime = app.runtime();
    let Some(admin) = &runtime.config.admin_key else {
        return AdminAccess::Disabled;
    };
    match token {
        Some(t) if admin.matches(t) => AdminAccess::Granted,
        // Any key that opens /v1 (api_key or a client key) never opens admin.
        Some(t) if runtime.clients.identify(t).is_some() => AdminAccess::ClientKey,
        _ => AdminAccess::Denied,
    }
}

pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let token = crate::http::bearer(&request);
    match check(&app, token) {
        AdminAccess::Granted => next.run(request).await,
        AdminAccess::Disabled => ApiError::NotFound.into_response(),
        AdminAccess::ClientKey => ApiError::Forbidden.into_response(),
        AdminAccess::Denied => ApiError::Unauthorized.into_response(),
    }
}
