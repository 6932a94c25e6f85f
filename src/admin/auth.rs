//! Admin authentication: the admin key, never the client key.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::http::Conn;
use crate::http::error::ApiError;
use crate::metrics::CodeLabels;

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

/// [`check`] for a request from `conn`, counting wrong keys against its
/// address: `Err` (a 429) while the address is locked out (see
/// `lockout`), whatever the key. Without a connection (in-process callers)
/// nothing is counted.
pub fn attempt(
    app: &AppState,
    token: Option<&[u8]>,
    conn: Option<&Conn>,
) -> Result<AdminAccess, ApiError> {
    let now = crate::routing::now_ms();
    let ip = conn.map(|c| c.peer.ip());
    let count = |outcome: &'static str| {
        app.metrics
            .admin_auth_failures
            .get_or_create(&CodeLabels { code: outcome })
            .inc();
    };
    if let Some(ip) = ip
        && let Some(wait) = app.lockout.check(ip, now)
    {
        count("locked_out");
        return Err(ApiError::LockedOut(wait));
    }
    let access = check(app, token);
    match (&access, ip) {
        (AdminAccess::Granted, Some(ip)) => app.lockout.succeeded(ip),
        (AdminAccess::Denied | AdminAccess::ClientKey, ip) if token.is_some() => {
            count("wrong_key");
            if let Some(ip) = ip {
                app.lockout.failed(ip, now);
            }
        }
        _ => {}
    }
    Ok(access)
}

pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let token = crate::http::bearer(&request);
    match attempt(&app, token, request.extensions().get::<Conn>()) {
        Ok(AdminAccess::Granted) => next.run(request).await,
        Ok(AdminAccess::Disabled) => ApiError::NotFound.into_response(),
        Ok(AdminAccess::ClientKey) => ApiError::Forbidden.into_response(),
        Ok(AdminAccess::Denied) => ApiError::Unauthorized.into_response(),
        Err(locked) => locked.into_response(),
    }
}
