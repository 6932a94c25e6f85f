//! Dashboard sessions: log in once with the admin key, then a cookie.
//!
//! The cookie is a random token, `HttpOnly` and `SameSite=Strict`; the
//! server keeps only its SHA-256. Each session also has a CSRF token that
//! the page sends in `x-csrf-token` with every edit. API clients may skip the
//! cookie and send `Authorization: Bearer <admin_key>` instead.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use subtle::ConstantTimeEq;

use crate::admin::auth::{AdminAccess, attempt, check};
use crate::app::AppState;
use crate::http::Conn;
use crate::http::error::ApiError;

pub const COOKIE: &str = "llmr_session";

/// The session token from the request's cookies.
pub fn cookie_token(request_headers: &http::HeaderMap) -> Option<String> {
    request_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

/// Guards `/ui/api/*`: a live session (with CSRF on writes) or the admin key.
pub async fn require_session(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let bearer = crate::http::bearer(&request).map(<[u8]>::to_vec);
    let access = match bearer {
        // A key to check (and to count, if wrong).
        Some(_) => attempt(&app, bearer.as_deref(), request.extensions().get::<Conn>()),
        // A session cookie, perhaps: no key is being guessed.
        None => Ok(check(&app, None)),
    };
    match access {
        Err(locked) => return locked.into_response(),
        Ok(AdminAccess::Disabled) => return ApiError::NotFound.into_response(),
        Ok(AdminAccess::Granted) => return next.run(request).await,
        Ok(AdminAccess::ClientKey) => return ApiError::Forbidden.into_response(),
        Ok(AdminAccess::Denied) if bearer.is_some() => {
            return ApiError::Unauthorized.into_response();
        }
        Ok(AdminAccess::Denied) => {}
    }
    let Some(csrf) = cookie_token(request.headers()).and_then(|t| app.sessions.csrf_for(&t)) else {
        return ApiError::Unauthorized.into_response();
    };
    if request.method() != Method::GET {
        let sent = request
            .headers()
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(sent.ct_eq(csrf.as_bytes())) {
            return ApiError::Forbidden.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; llmr_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("abc"));
    }
}
