//! Traffic over time for the dashboard's charts, and recent requests.
//!
//! A sampler task reads the ledger's totals every few seconds and keeps the
//! differences in a bounded ring (off the request path). Recent requests
//! live in a fixed ring of `ArcSwapOption` slots: recording one is an
//! allocation and two atomic operations, never a lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Serialize;

use crate::app::AppState;

/// One sample: what happened since the previous one.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Point {
    pub at: u64,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const POINTS: usize = 180; // 15 minutes

#[derive(Default)]
pub struct Series {
    points: Mutex<VecDeque<Point>>,
}

impl Series {
    pub fn points(&self) -> Vec<Point> {
        self.points
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn push(&self, p: Point) {
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if points.len() == POINTS {
            points.pop_front();
        }
        points.push_back(p);
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Samples totals until the process exits.
pub async fn sample(app: AppState) {
    let mut last: Option<Point> = None;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let mut now = Point {
            at: unix_secs(),
            ..Point::default()
        };
        for (_, cell) in app.ledger.cells() {
            let t = cell.local_totals();
            now.requests += t.requests;
            now.errors += t.errors;
            now.prompt_tokens += t.prompt_tokens;
            now.completion_tokens += t.completion_tokens;
        }
        if let Some(prev) = last {
            app.series.push(Point {
                at: now.at,
                requests: now.requests.saturating_sub(prev.requests),
                errors: now.errors.saturating_sub(prev.errors),
                prompt_tokens: now.prompt_tokens.saturating_sub(prev.prompt_tokens),
                completion_tokens: now.completion_tokens.saturating_sub(prev.completion_tokens),
            });
        }
        last = Some(now);
    }
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
