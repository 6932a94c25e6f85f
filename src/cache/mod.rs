//! The response cache: answers to requests made before, served again
//! without an upstream call.
//!
//! Groups opt in (`groups[].cache`). An entry's key hashes the endpoint, the
//! group, the request body in canonical form (keys sorted, no whitespace;
//! `stream` and `stream_options` left out) and, unless `cache.shared`, the
//! client key, so clients never see each other's answers; a stream and a
//! JSON answer to the same request are kept apart (a streaming request is
//! served only from a stored stream, and the reverse). Only complete 200
//! answers are stored, never errors or interrupted streams, and none over
//! 1/64 of `max_bytes`.
//!
//! Entries live in memory ([`memory`]: moka, bounded by bytes) or in Redis
//! ([`redis`]: shared between instances, skipped while Redis is down, so an
//! outage fails no request).

mod entry;
mod fill;
mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use entry::{Entry, Kind};
pub use fill::Fill;

use crate::config::{CacheConfig, StoreUrl};

/// A cache key: SHA-256 of what makes two requests the same.
pub type Key = [u8; 32];

/// Where entries live.
pub enum Cache {
    Memory(memory::MemoryCache),
    Redis(redis::RedisCache),
}

impl Cache {
    /// The cache `config` describes; with no `store`, the usage store's
    /// Redis when that is one, else memory.
    pub fn open(config: &CacheConfig, usage_store: &StoreUrl) -> anyhow::Result<Self> {
        let url = match (&config.store, usage_store) {
            (Some(s), _) if s == "memory" => None,
            (Some(s), _) => Some(s.clone()),
            (None, StoreUrl::Redis(url)) => Some(url.clone()),
            (None, _) => None,
        };
        Ok(match url {
            Some(url) => Self::Redis(redis::RedisCache::new(&url)?),
            None => Self::Memory(memory::MemoryCache::new(config.max_bytes)),
        })
    }

    /// The entry stored under `key` in `group`, if it is there and alive.
    pub async fn get(&self, group: &str, key: &Key) -> Option<Arc<Entry>> {
        match self {
            Self::Memory(m) => m.get(key),
            Self::Redis(r) => r.get(group, key).await,
        }
    }

    /// Stores `entry` for `ttl`.
    pub async fn put(&self, group: &str, key: Key, entry: Entry, ttl: Duration) {
        match self {
            Self::Memory(m) => m.put(key, entry, ttl),
            Self::Redis(r) => r.put(group, &key, &entry, ttl).await,
        }
    }

    /// Empties the cache, or one group's part of it. Returns how many
    /// entries went, where the store can tell.
    pub async fn purge(&self, group: Option<&str>) -> anyhow::Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.purge(group)),
            Self::Redis(r) => r.purge(group).await,
        }
    }

    /// Bytes held, for the memory store.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Self::Memory(m) => Some(m.bytes()),
            Self::Redis(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }
}

/// What makes two requests the same, for the cache.
pub struct KeyParts<'a> {
    pub endpoint: &'a str,
    pub group: &'a str,
    pub body: &'a [u8],
    /// The client key's fingerprint (or the router key's); `None` when
    /// clients share entries.
    pub client: Option<&'a str>,
    pub stream: bool,
}

/// The cache key for a request, or `None` if its body is not a JSON
/// object (which no upstream would answer anyway).
pub fn key(parts: &KeyParts<'_>) -> Option<Key> {
    let serde_json::Value::Object(mut body) = serde_json::from_slice(parts.body).ok()? else {
        return None;
    };
    body.remove("stream");
    body.remove("stream_options");
    // serde_json's map is ordered by key: this is the canonical form.
    let canonical = serde_json::to_vec(&body).ok()?;
    let mut h = Sha256::new();
    for part in [
        parts.endpoint.as_bytes(),
        parts.group.as_bytes(),
        parts.client.unwrap_or("*").as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update([u8::from(parts.stream)]);
    h.update(&canonical);
    Some(h.finalize().into())
}

/// How a request's `Cache-Control` uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Look up, and store the fresh answer on a miss.
    Normal,
    /// `no-cache`: skip the lookup, store the fresh answer.
    Refresh,
    /// `no-store`: neither.
    Bypass,
}

impl Mode {
    pub fn from_header(value: Option<&http::HeaderValue>) -> Self {
        let Some(v) = value.and_then(|v| v.to_str().ok()) else {
            return Self::Normal;
        };
        let has = |d: &str| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(d));
        if has("no-store") {
            Self::Bypass
        } else if has("no-cache") {
            Self::Refresh
        } else {
            Self::Normal
        }
    }
}

/// The largest entry a cache of `max_bytes` keeps.
pub fn max_entry_bytes(max_bytes: u64) -> usize {
    usize::try_from(max_bytes / 64).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(body: &str, client: Option<&str>, stream: bool) -> Option<Key> {
        key(&KeyParts {
            endpoint: "chat",
            group: "g",
            body: body.as_bytes(),
            client,
            stream,
        })
    }

    #[test]
    fn the_key_ignores_formatting_order_and_streaming_options() {
        let a = k(
            r#"{"model":"g","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            Some("c1"),
            false,
        );
        let b = k(
            "{ \"temperature\": 0,\n  \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ],\n \"model\": \"g\", \"stream\": false, \"stream_options\": {\"include_usage\": true} }",
            Some("c1"),
            false,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        // What the answer depends on is in the key.
        assert_ne!(
            a,
            k(
                r#"{"model":"g","messages":[{"role":"user","content":"hi!"}],"temperature":0}"#,
                Some("c1"),
                false
            )
        );
        assert_ne!(
            a,
            k(
                r#"{"model":"g","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
                Some("c2"),
                false
            )
        );
        assert_ne!(
            a,
            k(
                r#"{"model":"g","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
                None,
                false
            )
        );
        assert_ne!(
            a,
            k(
                r#"{"model":"g","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
                Some("c1"),
                true
            )
        );
        let other_group = key(&KeyParts {
            endpoint: "chat",
            group: "h",
            body: br#"{"model":"g","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            client: Some("c1"),
            stream: false,
        });
        assert_ne!(a, other_group);
        assert_eq!(k("[1]", None, false), None);
        assert_eq!(k("not json", None, false), None);
    }

    #[test]
    fn cache_control_picks_the_mode() {
        let mode = |v: &'static str| Mode::from_header(Some(&http::HeaderValue::from_static(v)));
        assert_eq!(Mode::from_header(None), Mode::Normal);
        assert_eq!(mode("no-cache"), Mode::Refresh);
        assert_eq!(mode("max-age=0, No-Store"), Mode::Bypass);
        assert_eq!(mode("no-cache, no-store"), Mode::Bypass);
        assert_eq!(mode("max-age=60"), Mode::Normal);
        assert_eq!(max_entry_bytes(256 << 20), 4 << 20);
    }
}
