//! Dashboard sessions: log in once with the admin key, then a cookie.
//!
//! The cookie is a random token, `HttpOnly` and `SameSite=Strict`; the
//! server keeps only its SHA-256. Each session also has a CSRF token that
//! the page sends in `x-csrf-token` with every edit. API clients may skip the
//! cookie and send `Authorization: Bearer <admin_key>` instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admin::auth::{AdminAccess, check};
use crate::app::AppState;
use crate::http::error::ApiError;

pub const COOKIE: &str = "llmr_session";
const TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 1024;

struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Starts a session: returns (cookie token, CSRF token).
    pub fn create(&self) -> (String, String) {
        let (token, csrf) = (random_token(), random_token());
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            // Drop the session closest to expiry rather than grow without bound.
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            hash(&token),
            Session {
                csrf: csrf.clone(),
                expires: now + TTL,
            },
        );
        (token, csrf)
    }

    /// The session's CSRF token, if the cookie names a live session.
    pub fn csrf_for(&self, token: &str) -> Option<String> {
        let map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&hash(token))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    pub fn remove(&self, token: &str) {
        self.by_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash(token));
    }
}

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
    match check(&app, bearer.as_deref()) {
        AdminAccess::Disabled => return ApiError::NotFound.into_response(),
        AdminAccess::Granted => return next.run(request).await,
        AdminAccess::ClientKey => return ApiError::Forbidden.into_response(),
        AdminAccess::Denied if bearer.is_some() => return ApiError::Unauthorized.into_response(),
        AdminAccess::Denied => {}
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
    fn sessions_are_found_by_token_and_removed() {
        let s = Sessions::default();
        let (token, csrf) = s.create();
        assert_eq!(s.csrf_for(&token), Some(csrf));
        assert_eq!(s.csrf_for("other"), None);
        s.remove(&token);
        assert_eq!(s.csrf_for(&token), None);
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; llmr_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("abc"));
    }

    #[test]
    fn session_count_is_bounded() {
        let s = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            s.create();
        }
        assert!(s.by_hash.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
