//! Rolling usage windows, maintained by the syncer, off the request path.
//!
//! Each tick the syncer samples every cell's cumulative tokens. A cell's
//! `window_base` is set to the cumulative count at the start of the window,
//! so selection (which subtracts it) balances on the last minute, hour or
//! day. Memory is bounded: at most [`SAMPLES`] samples per cell.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::usage::{UsageCell, UsageKey};

const SAMPLES: usize = 60;

pub struct UsageWindow {
    span: Option<Duration>,
    samples: HashMap<UsageKey, VecDeque<(Instant, u64)>>,
}

impl UsageWindow {
    /// `None` counts usage cumulatively, as the Go router does.
    pub fn new(span: Option<Duration>) -> Self {
        Self {
            span,
            samples: HashMap::new(),
        }
    }

    pub fn update(&mut self, cells: &[(UsageKey, Arc<UsageCell>)]) {
        self.update_at(cells, Instant::now());
    }

    fn update_at(&mut self, cells: &[(UsageKey, Arc<UsageCell>)], now: Instant) {
        let Some(span) = self.span else {
            return;
        };
        let step = span / SAMPLES as u32;
        for (key, cell) in cells {
            let total = cell.cumulative_tokens();
            let ring = self.samples.entry(key.clone()).or_default();
            if ring
                .back()
                .is_none_or(|(at, _)| now.duration_since(*at) >= step)
            {
                ring.push_back((now, total));
            }
            // Keep one sample at or before the window's start, drop older ones.
            while ring.len() > 1 && now.duration_since(ring[1].0) >= span {
                ring.pop_front();
            }
            while ring.len() > SAMPLES + 1 {
                ring.pop_front();
            }
            let base = ring.front().map_or(0, |(_, t)| *t).min(total);
            cell.set_window_base(base);
        }
    }

    pub fn forget(&mut self, keys: &[UsageKey]) {
        for k in keys {
            self.samples.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Settlement, TokenUsage};

    fn spend(cell: &Arc<UsageCell>, tokens: u64) {
        cell.reserve(0).settle(Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: 0,
                completion_tokens: tokens,
                total_tokens: tokens,
            }),
            ..Default::default()
        });
    }

    #[test]
    fn old_usage_leaves_the_window() {
        let key = UsageKey {
            provider: "p".into(),
            key_fingerprint: "f".into(),
            model: "m".into(),
        };
        let cell = Arc::new(UsageCell::default());
        let cells = vec![(key, cell.clone())];
        let mut w = UsageWindow::new(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        spend(&cell, 100);
        w.update_at(&cells, t0);
        spend(&cell, 50);
        w.update_at(&cells, t0 + Duration::from_secs(30));
        // Within the window: only what happened since the first sample.
        assert_eq!(cell.load(), 50);
        w.update_at(&cells, t0 + Duration::from_secs(95));
        // The 50 tokens spent at t0+~0..30 are now older than the window.
        assert_eq!(cell.load(), 0);
        spend(&cell, 7);
        w.update_at(&cells, t0 + Duration::from_secs(100));
        assert_eq!(cell.load(), 7);
        assert!(w.samples.values().all(|r| r.len() <= SAMPLES + 1));
    }

    #[test]
    fn cumulative_mode_never_subtracts() {
        let cell = Arc::new(UsageCell::default());
        spend(&cell, 10);
        let key = UsageKey {
            provider: "p".into(),
            key_fingerprint: "f".into(),
            model: "m".into(),
        };
        UsageWindow::new(None).update(&[(key, cell.clone())]);
        assert_eq!(cell.load(), 10);
    }
}
