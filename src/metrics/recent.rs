//! The last requests, for the dashboard: a fixed ring of `ArcSwapOption`
//! slots, so recording one is an allocation and two atomic operations,
//! never a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Serialize;

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A finished request, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentRequest {
    pub at: u64,
    pub request_id: Arc<str>,
    pub group: Arc<str>,
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub key: Arc<str>,
    pub status: u16,
    pub outcome: &'static str,
    pub total_tokens: u64,
    pub latency_ms: f64,
}

const RECENT: usize = 64;

pub struct Recent {
    slots: Box<[ArcSwapOption<RecentRequest>]>,
    next: AtomicUsize,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            slots: (0..RECENT).map(|_| ArcSwapOption::empty()).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Recent {
    pub fn record(&self, mut r: RecentRequest) {
        r.at = unix_secs();
        let i = self.next.fetch_add(1, Relaxed) % RECENT;
        self.slots[i].store(Some(Arc::new(r)));
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Arc<RecentRequest>> {
        let end = self.next.load(Relaxed);
        (0..RECENT.min(end))
            .filter_map(|back| self.slots[(end - 1 - back) % RECENT].load_full())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str) -> RecentRequest {
        RecentRequest {
            at: 0,
            request_id: id.into(),
            group: "g".into(),
            provider: "p".into(),
            model: "m".into(),
            key: "p#0".into(),
            status: 200,
            outcome: "ok",
            total_tokens: 1,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn recent_requests_are_newest_first_and_bounded() {
        let r = Recent::default();
        for i in 0..100 {
            r.record(req(&i.to_string()));
        }
        let list = r.list();
        assert_eq!(list.len(), RECENT);
        assert_eq!(&*list[0].request_id, "99");
        assert_eq!(&*list[RECENT - 1].request_id, "36");
    }
}
