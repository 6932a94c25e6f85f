//! Passive health: failing keys and (key, model) pairs cool down.
//!
//! A [`Health`] is a handful of atomics, shared by every table that names the
//! same key (or key and model), and read by selection as a `ready_at` time.
//! A failure pushes `ready_at` out with exponential backoff and jitter, or to
//! the provider's `Retry-After` when it gave one; a success clears it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

/// Why a candidate was put in cooldown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    None,
    RateLimited,
    ServerError,
    Unreachable,
    Timeout,
    Unauthorized,
    HealthCheck,
    /// Another router instance put it in cooldown (shared through Redis).
    Peer,
}

impl Reason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::RateLimited,
            2 => Self::ServerError,
            3 => Self::Unreachable,
            4 => Self::Timeout,
            5 => Self::Unauthorized,
            6 => Self::HealthCheck,
            7 => Self::Peer,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Unauthorized => "unauthorized",
            Self::HealthCheck => "health_check",
            Self::Peer => "peer",
        }
    }
}

#[derive(Debug, Default)]
pub struct Health {
    ready_at: AtomicU64,
    failures: AtomicU32,
    reason: AtomicU8,
}

/// A copy of a [`Health`] for admin views and metrics.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HealthState {
    pub cooling_down: bool,
    pub reason: Reason,
    pub consecutive_failures: u32,
    pub remaining_ms: u64,
}

impl Health {
    pub fn ready_at(&self) -> u64 {
        self.ready_at.load(Relaxed)
    }

    pub fn succeeded(&self) {
        if self.failures.load(Relaxed) != 0 || self.ready_at.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
            self.ready_at.store(0, Relaxed);
            self.reason.store(0, Relaxed);
        }
    }

    /// Records a failure. `retry_after` (from the provider) wins over backoff.
    pub fn failed(
        &self,
        reason: Reason,
        retry_after: Option<Duration>,
        base: Duration,
        max: Duration,
    ) {
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        let wait = match retry_after {
            Some(d) => d.min(max),
            None => backoff(failures, base, max),
        };
        let until = now_ms() + wait.as_millis() as u64;
        self.ready_at.fetch_max(until, Relaxed);
        self.reason.store(reason as u8, Relaxed);
    }

    /// Marks down (or up) from an active health check.
    pub fn set_down(&self, down_for: Option<Duration>) {
        match down_for {
            Some(d) => {
                self.ready_at
                    .store(now_ms() + d.as_millis() as u64, Relaxed);
                self.reason.store(Reason::HealthCheck as u8, Relaxed);
            }
            None => self.succeeded(),
        }
    }

    /// When the cooldown ends as Unix milliseconds, or 0 if not cooling.
    pub fn cooldown_until_unix_ms(&self) -> u64 {
        let remaining = self.ready_at.load(Relaxed).saturating_sub(now_ms());
        if remaining == 0 {
            return 0;
        }
        unix_ms() + remaining
    }

    /// Extends the cooldown to a time another instance reported.
    pub fn extend_to_unix_ms(&self, until: u64) {
        let remaining = until.saturating_sub(unix_ms());
        if remaining == 0 {
            return;
        }
        let target = now_ms() + remaining;
        if self.ready_at.fetch_max(target, Relaxed) < target {
            self.reason.store(Reason::Peer as u8, Relaxed);
        }
    }

    pub fn state(&self) -> HealthState {
        let now = now_ms();
        let ready_at = self.ready_at.load(Relaxed);
        let cooling = ready_at > now;
        HealthState {
            cooling_down: cooling,
            reason: if cooling {
                Reason::from_u8(self.reason.load(Relaxed))
            } else {
                Reason::None
            },
            consecutive_failures: self.failures.load(Relaxed),
            remaining_ms: ready_at.saturating_sub(now),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `base × 2^(n-1)`, capped at `max`, with ±20% jitter so that keys that
/// failed together do not all come back in the same millisecond.
fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = base.saturating_mul(1 << exp).min(max);
    let jitter = rand::random_range(0.8..1.2);
    raw.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_and_success_clears() {
        let h = Health::default();
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        h.failed(Reason::ServerError, None, base, max);
        let first = h.state().remaining_ms;
        assert!((700..=1200).contains(&first), "{first}");
        h.failed(Reason::ServerError, None, base, max);
        h.failed(Reason::ServerError, None, base, max);
        let third = h.state().remaining_ms;
        assert!((3000..=4800).contains(&third), "{third}");
        assert_eq!(h.state().reason, Reason::ServerError);
        h.succeeded();
        assert!(!h.state().cooling_down);
        assert_eq!(h.state().consecutive_failures, 0);
    }

    #[test]
    fn retry_after_sets_the_cooldown_capped_at_max() {
        let h = Health::default();
        let max = Duration::from_secs(10);
        h.failed(
            Reason::RateLimited,
            Some(Duration::from_secs(5)),
            Duration::from_secs(1),
            max,
        );
        let left = h.state().remaining_ms;
        assert!((4900..=5000).contains(&left), "{left}");
        h.failed(
            Reason::RateLimited,
            Some(Duration::from_secs(3600)),
            Duration::from_secs(1),
            max,
        );
        assert!(h.state().remaining_ms <= 10_000);
    }
}
