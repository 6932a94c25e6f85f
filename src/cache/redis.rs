//! Entries in Redis, shared by every instance that points at it.
//!
//! A lookup is a network call on the request path, the one exception the
//! cache makes, so it is held to a short deadline, and a Redis that fails
//! or is slow is skipped for a while (a circuit breaker): requests then go
//! upstream as if the cache were empty, and no request fails because of it.
//! Keys are `llm-router:cache:<group>:<hex key>`, so a group's entries can
//! be purged by prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::{Entry, Key};

const PREFIX: &str = "llm-router:cache";

/// The longest a lookup or a store may take before it counts as a failure.
const DEADLINE: Duration = Duration::from_millis(100);

/// How long the cache is skipped after a failure.
const OPEN_FOR: Duration = Duration::from_secs(5);

pub struct RedisCache {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// Milliseconds since `epoch` until which Redis is skipped.
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl RedisCache {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            conn: OnceCell::new(),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn open(&self) -> bool {
        self.now_ms() < self.open_until_ms.load(Relaxed)
    }

    fn trip(&self, what: &str, error: &dyn std::fmt::Display) {
        let until = self.now_ms() + OPEN_FOR.as_millis() as u64;
        if self.open_until_ms.swap(until, Relaxed) < self.now_ms() {
            tracing::warn!(error = %error, what, "cache store failing; requests skip the cache for a while");
        }
    }

    /// The shared connection, made on first use (it reconnects by itself).
    async fn connection(&self) -> anyhow::Result<ConnectionManager> {
        let conn = tokio::time::timeout(
            DEADLINE * 10,
            self.conn
                .get_or_try_init(|| ConnectionManager::new(self.client.clone())),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
        Ok(conn.clone())
    }

    fn name(group: &str, key: &Key) -> String {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}:{group}:{hex}")
    }

    pub async fn get(&self, group: &str, key: &Key) -> Option<Arc<Entry>> {
        if self.open() {
            return None;
        }
        let lookup = async {
            let mut conn = self.connection().await?;
            let bytes: Option<Vec<u8>> = conn.get(Self::name(group, key)).await?;
            anyhow::Ok(bytes)
        };
        match tokio::time::timeout(DEADLINE, lookup).await {
            Ok(Ok(bytes)) => bytes.and_then(|b| Entry::decode(&b)).map(Arc::new),
            Ok(Err(e)) => {
                self.trip("lookup", &e);
                None
            }
            Err(_) => {
                self.trip("lookup", &"timed out");
                None
            }
        }
    }

    pub async fn put(&self, group: &str, key: &Key, entry: &Entry, ttl: Duration) {
        if self.open() {
            return;
        }
        let bytes = entry.encode();
        let store = async {
            let mut conn = self.connection().await?;
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let () = conn.pset_ex(Self::name(group, key), bytes, ms).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(DEADLINE * 5, store).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.trip("store", &e),
            Err(_) => self.trip("store", &"timed out"),
        }
    }

    /// Deletes a group's entries (or all) by key prefix.
    pub async fn purge(&self, group: Option<&str>) -> anyhow::Result<u64> {
        let mut conn = self.connection().await?;
        let pattern = match group {
            Some(g) => format!("{PREFIX}:{}:*", escape_glob(g)),
            None => format!("{PREFIX}:*"),
        };
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k?);
            }
            keys
        };
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            let n: u64 = conn.del(chunk).await?;
            removed += n;
        }
        Ok(removed)
    }
}

/// A group name as a literal inside a Redis glob pattern.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_literal_in_purge_patterns() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(escape_glob("plain"), "plain");
    }
}
