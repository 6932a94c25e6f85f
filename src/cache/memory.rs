//! Entries in this process's memory: moka's concurrent cache, weighed in
//! bytes and bounded by `max_bytes`, each entry with its own time to live.
//! Lookups take no global lock; when it is full, the least recently used
//! entries go first (moka also declines to let one-off entries push out
//! frequently used ones).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::{Entry, Key};

/// An entry and how long it lives.
#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<Key, Stored> for PerEntry {
    fn expire_after_create(&self, _: &Key, value: &Stored, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct MemoryCache {
    entries: Cache<Key, Stored>,
}

impl MemoryCache {
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, v: &Stored| u32::try_from(v.entry.size()).unwrap_or(u32::MAX))
            .expire_after(PerEntry)
            .support_invalidation_closures()
            .build();
        Self { entries }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.entries.get(key).map(|s| s.entry)
    }

    pub fn put(&self, key: Key, entry: Entry, ttl: Duration) {
        let stored = Stored {
            entry: Arc::new(entry),
            ttl,
        };
        self.entries.insert(key, stored);
    }

    pub fn purge(&self, group: Option<&str>) -> u64 {
        let before = self.count();
        match group {
            None => self.entries.invalidate_all(),
            Some(g) => {
                let g = g.to_string();
                let _ = self
                    .entries
                    .invalidate_entries_if(move |_, v| v.entry.group == g);
            }
        }
        self.entries.run_pending_tasks();
        before.saturating_sub(self.count())
    }

    pub fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    fn count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Kind;
    use bytes::Bytes;

    fn entry(group: &str, size: usize) -> Entry {
        Entry {
            kind: Kind::Json,
            parts: vec![Bytes::from(vec![b'x'; size])],
            content_type: "application/json".into(),
            usage: Default::default(),
            cost_nanos: None,
            group: group.into(),
        }
    }

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn entries_stay_within_max_bytes() {
        let c = MemoryCache::new(64 * 1024);
        for n in 0..200u8 {
            c.put(key(n), entry("g", 1024), Duration::from_secs(60));
            assert!(c.get(&key(n)).is_some() || c.bytes() <= 64 * 1024);
        }
        assert!(c.bytes() <= 64 * 1024, "{}", c.bytes());
        assert!(c.count() < 200);
    }

    #[test]
    fn purge_empties_a_group_or_everything() {
        let c = MemoryCache::new(1 << 20);
        c.put(key(1), entry("a", 10), Duration::from_secs(60));
        c.put(key(2), entry("b", 10), Duration::from_secs(60));
        c.put(key(3), entry("a", 10), Duration::from_secs(60));
        assert_eq!(c.purge(Some("a")), 2);
        assert!(c.get(&key(1)).is_none() && c.get(&key(2)).is_some());
        assert_eq!(c.purge(None), 1);
        assert!(c.get(&key(2)).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn an_entry_lives_its_own_ttl() {
        let c = MemoryCache::new(1 << 20);
        c.put(key(1), entry("a", 10), Duration::from_millis(30));
        c.put(key(2), entry("a", 10), Duration::from_secs(60));
        assert!(c.get(&key(1)).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(2)).is_some());
    }
}
