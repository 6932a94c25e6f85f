//! Traffic over time, for the dashboard's charts: a bounded ring of points,
//! each what happened since the one before. A background task samples the
//! ledger's totals into it (see `tasks`), off the request path.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::usage::Totals;

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

impl Series {
    /// Records the change from `prev` to `now` (cumulative totals at
    /// Unix second `at`), and returns `now` as the next `prev`.
    pub fn sample<'a>(
        &self,
        at: u64,
        now: impl IntoIterator<Item = &'a Totals>,
        prev: Option<Point>,
    ) -> Point {
        let mut point = Point {
            at,
            ..Point::default()
        };
        for t in now {
            point.requests += t.requests;
            point.errors += t.errors;
            point.prompt_tokens += t.prompt_tokens;
            point.completion_tokens += t.completion_tokens;
        }
        if let Some(prev) = prev {
            self.push(Point {
                at,
                requests: point.requests.saturating_sub(prev.requests),
                errors: point.errors.saturating_sub(prev.errors),
                prompt_tokens: point.prompt_tokens.saturating_sub(prev.prompt_tokens),
                completion_tokens: point
                    .completion_tokens
                    .saturating_sub(prev.completion_tokens),
            });
        }
        point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, prompt_tokens: u64) -> Totals {
        Totals {
            requests,
            prompt_tokens,
            errors: requests / 2,
            completion_tokens: prompt_tokens * 2,
            ..Totals::default()
        }
    }

    #[test]
    fn points_are_differences_between_samples_and_bounded() {
        let s = Series::default();
        let first = s.sample(100, &[totals(2, 10), totals(4, 5)], None);
        assert!(s.points().is_empty());
        let second = s.sample(105, &[totals(3, 12), totals(6, 9)], Some(first));
        let p = s.points();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (
                p[0].at,
                p[0].requests,
                p[0].errors,
                p[0].prompt_tokens,
                p[0].completion_tokens
            ),
            (105, 3, 1, 6, 12)
        );
        // A reset (totals going down) is a zero, not a wrap-around.
        s.sample(110, &[totals(0, 0)], Some(second));
        assert_eq!(s.points()[1].requests, 0);
        let mut prev = None;
        for i in 0..POINTS as u64 + 10 {
            prev = Some(s.sample(i, &[totals(i, i)], prev));
        }
        assert_eq!(s.points().len(), POINTS);
    }
}
