//! The last requests, for the dashboard: a fixed ring of slots, each behind
//! its own lock. A shared counter hands consecutive requests consecutive
//! slots, so two writers meet on one lock only when the ring has gone all
//! the way round between them; the dashboard's read takes each lock in turn.
//!
//! The slots were `ArcSwapOption`s, but a store there pays every reader's
//! debts: a walk over all threads' debt lists, ten times the cost of an
//! uncontended lock and unlock.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

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

/// One slot, on a cache line of its own: consecutive requests, which take
/// consecutive slots, often finish on different cores, and four slots to a
/// line made each record wait for the line to come over from the other.
#[repr(align(128))]
struct Slot(Mutex<Option<Arc<RecentRequest>>>);

pub struct Recent {
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            slots: (0..RECENT).map(|_| Slot(Mutex::new(None))).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Recent {
    pub fn record(&self, mut r: RecentRequest) {
        r.at = unix_secs();
        let i = self.next.fetch_add(1, Relaxed) % RECENT;
        let new = Some(Arc::new(r));
        // The one it replaces is dropped after the lock is let go.
        let _old = std::mem::replace(&mut *lock(&self.slots[i].0), new);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<Arc<RecentRequest>> {
        let end = self.next.load(Relaxed);
        (0..RECENT.min(end))
            .filter_map(|back| lock(&self.slots[(end - 1 - back) % RECENT].0).clone())
            .collect()
    }
}

/// A slot's lock. Its holders only move a pointer in or out, so a panic
/// while holding it leaves nothing half-written.
fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn writers_on_many_threads_fill_distinct_slots() {
        let r = Recent::default();
        std::thread::scope(|s| {
            for t in 0..4 {
                let r = &r;
                s.spawn(move || {
                    for i in 0..1000 {
                        r.record(req(&format!("{t}-{i}")));
                    }
                });
            }
        });
        let list = r.list();
        assert_eq!(list.len(), RECENT);
        let mut ids: Vec<_> = list.iter().map(|x| x.request_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RECENT, "each slot holds its own request");
    }
}
