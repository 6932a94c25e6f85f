//! Dashboard sessions: the token store behind the login cookie.
//!
//! A session is a random token the browser holds in a cookie; the server
//! keeps only its SHA-256, with the session's CSRF token and expiry. The
//! cookie and CSRF checks themselves are the dashboard's (`ui::session`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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
    fn session_count_is_bounded() {
        let s = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            s.create();
        }
        assert!(s.by_hash.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
