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
                cached_prompt_tokens: 0,
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

    fn key(name: &str) -> UsageKey {
        UsageKey {
            provider: "p".into(),
            key_fingerprint: name.into(),
            model: "m".into(),
        }
    }

    #[test]
    fn a_steady_stream_of_usage_counts_exactly_one_window() {
        // One token a second, sampled every second, for over three windows.
        let cell = Arc::new(UsageCell::default());
        let cells = vec![(key("f"), cell.clone())];
        let mut w = UsageWindow::new(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        for s in 0..=200u64 {
            w.update_at(&cells, t0 + Duration::from_secs(s));
            assert_eq!(cell.load(), s.min(60), "at {s} s");
            spend(&cell, 1);
        }
        assert_eq!(w.samples[&key("f")].len(), SAMPLES + 1);
    }

    #[test]
    fn samples_are_taken_at_most_once_a_step() {
        let cell = Arc::new(UsageCell::default());
        let cells = vec![(key("f"), cell.clone())];
        let mut w = UsageWindow::new(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        for ms in [0, 400, 999, 1_000, 1_500, 2_000] {
            w.update_at(&cells, t0 + Duration::from_millis(ms));
        }
        let at: Vec<_> = w.samples[&key("f")]
            .iter()
            .map(|(at, _)| at.duration_since(t0).as_millis())
            .collect();
        assert_eq!(at, [0, 1_000, 2_000]);
    }

    #[test]
    fn forgotten_keys_start_a_new_window() {
        let (a, b) = (
            Arc::new(UsageCell::default()),
            Arc::new(UsageCell::default()),
        );
        let cells = vec![(key("a"), a.clone()), (key("b"), b.clone())];
        let mut w = UsageWindow::new(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        w.update_at(&cells, t0);
        spend(&a, 20);
        spend(&b, 20);
        w.forget(&[key("a")]);
        w.update_at(&cells, t0 + Duration::from_secs(5));
        // `a` starts over from now; `b` keeps its window.
        assert_eq!((a.load(), b.load()), (0, 20));
    }

    #[test]
    fn update_reads_the_clock_itself() {
        let cell = Arc::new(UsageCell::default());
        spend(&cell, 30);
        let mut w = UsageWindow::new(Some(Duration::from_secs(3600)));
        w.update(&[(key("f"), cell.clone())]);
        // The window starts now: what came before is outside it.
        assert_eq!(cell.load(), 0);
        assert_eq!(w.samples[&key("f")].len(), 1);
    }
}
