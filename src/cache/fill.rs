//! A fresh answer on its way into the cache: its parts are kept as they
//! leave for the client (up to the entry limit), and stored when the answer
//! ends complete.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Cache, Entry, Key, Kind};
use crate::usage::TokenUsage;
use crate::usage::cost::Price;

pub struct Fill {
    cache: Arc<Cache>,
    group: String,
    key: Key,
    ttl: Duration,
    max_entry: usize,
    price: Option<Price>,
    parts: Vec<Bytes>,
    bytes: usize,
    too_large: bool,
}

impl Fill {
    pub fn new(cache: Arc<Cache>, group: &str, key: Key, ttl: Duration, max_entry: usize) -> Self {
        Self {
            cache,
            group: group.to_string(),
            key,
            ttl,
            max_entry,
            price: None,
            parts: Vec::new(),
            bytes: 0,
            too_large: false,
        }
    }

    /// The candidate's prices, for what a hit will save.
    pub fn priced(mut self, price: Option<Price>) -> Self {
        self.price = price;
        self
    }

    /// Keeps one part (the body, or an event) as the client got it. An
    /// answer over the entry limit is let go: it will not be stored.
    pub fn push(&mut self, part: &Bytes) {
        if self.too_large {
            return;
        }
        self.bytes += part.len();
        if self.bytes > self.max_entry {
            self.too_large = true;
            self.parts = Vec::new();
            return;
        }
        self.parts.push(part.clone());
    }

    /// The answer ended complete: store it, off the request's path.
    pub fn finish(self, kind: Kind, content_type: &str, usage: Option<TokenUsage>) {
        if self.too_large || self.parts.is_empty() {
            return;
        }
        let usage = usage.unwrap_or_default();
        let entry = Entry {
            kind,
            parts: self.parts,
            content_type: content_type.to_string(),
            cost_nanos: self.price.map(|p| p.cost_nanos(&usage)),
            usage,
            group: self.group.clone(),
        };
        let (cache, group, key, ttl) = (self.cache, self.group, self.key, self.ttl);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { cache.put(&group, key, entry, ttl).await });
        }
    }
}
