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

use crate::config::Cooldown;

/// Milliseconds on a process-wide monotonic clock (never 0).
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] at `now`, for a caller that has just read the clock anyway
/// (a clock read is a good part of a proxied request's own work).
pub fn ms_at(now: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(|| now);
    ms_since(*start, now)
}

/// Milliseconds from `start` to `now`, plus one, so the clock's first
/// reading is 1 (0 means "never" in the cells that store these).
fn ms_since(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_millis() as u64 + 1
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
    /// The provider answered with a redirect: its URL is not where the
    /// config says it is, or something in between is wrong.
    Redirected,
    /// The answer broke off, stalled, or grew past a limit after it began.
    BrokenAnswer,
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
            8 => Self::Redirected,
            9 => Self::BrokenAnswer,
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
            Self::Redirected => "redirected",
            Self::BrokenAnswer => "broken_answer",
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthState {
    pub cooling_down: bool,
    pub reason: Reason,
    pub consecutive_failures: u32,
    pub remaining_ms: u64,
}

/// One reading of both clocks health runs on: the monotonic one that
/// cooldowns (and selection) use, and Unix time, the only clock other
/// instances share, for trading cooldowns through the store. Passed in
/// rather than read inside, so tests drive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// [`now_ms`]: monotonic, never 0.
    pub mono_ms: u64,
    pub unix_ms: u64,
}

impl Now {
    pub fn read() -> Self {
        Self {
            mono_ms: now_ms(),
            unix_ms: unix_ms(),
        }
    }
}

impl Health {
    pub fn ready_at(&self) -> u64 {
        self.ready_at.load(Relaxed)
    }

    pub fn succeeded(&self) {
        // Writes only when there is something to clear: this runs on every
        // successful request. (Failures always leave `ready_at` above zero.)
        if self.ready_at.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
            self.ready_at.store(0, Relaxed);
            self.reason.store(0, Relaxed);
        }
    }

    /// Records a failure at `now` (see [`now_ms`]). `retry_after` (from the
    /// provider) wins over backoff; either is capped at `cooldown.max`. A
    /// cooldown already running longer is never shortened.
    pub fn failed(
        &self,
        now: u64,
        reason: Reason,
        retry_after: Option<Duration>,
        cooldown: &Cooldown,
    ) {
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        let wait = match retry_after {
            Some(d) => d.min(cooldown.max),
            None => backoff(failures, cooldown, rand::random_range(0.8..1.2)),
        };
        let until = now.saturating_add(wait.as_millis() as u64);
        self.ready_at.fetch_max(until, Relaxed);
        self.reason.store(reason as u8, Relaxed);
    }

    /// Marks down for `down_for` from `now`, or up, from an active health check.
    pub fn set_down(&self, now: u64, down_for: Option<Duration>) {
        match down_for {
            Some(d) => {
                self.ready_at
                    .store(now.saturating_add(d.as_millis() as u64), Relaxed);
                self.reason.store(Reason::HealthCheck as u8, Relaxed);
            }
            None => self.succeeded(),
        }
    }

    /// When the cooldown ends as Unix milliseconds, or 0 if not cooling.
    pub fn cooldown_until_unix_ms(&self, now: Now) -> u64 {
        let remaining = self.ready_at.load(Relaxed).saturating_sub(now.mono_ms);
        if remaining == 0 {
            return 0;
        }
        now.unix_ms + remaining
    }

    /// Extends the cooldown to `until` (Unix ms), a time another instance
    /// reported. A cooldown of ours that runs longer stays as it is.
    pub fn extend_to_unix_ms(&self, until: u64, now: Now) {
        let remaining = until.saturating_sub(now.unix_ms);
        if remaining == 0 {
            return;
        }
        let target = now.mono_ms + remaining;
        if self.ready_at.fetch_max(target, Relaxed) < target {
            self.reason.store(Reason::Peer as u8, Relaxed);
        }
    }

    /// The state at `now` (see [`now_ms`]).
    pub fn state(&self, now: u64) -> HealthState {
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

/// `base × 2^(n-1)` for the `n`th consecutive failure, capped at `max`,
/// times `jitter` (drawn from 0.8..1.2, so keys that failed together do not
/// all come back in the same millisecond), and capped at `max` again.
fn backoff(failures: u32, cooldown: &Cooldown, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let raw = cooldown.base.saturating_mul(1 << exp).min(cooldown.max);
    raw.mul_f64(jitter).min(cooldown.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_starts_at_one_and_counts_milliseconds() {
        let t = Instant::now();
        assert_eq!(ms_since(t, t), 1);
        assert_eq!(ms_since(t, t + Duration::from_millis(2500)), 2501);
        assert_eq!(ms_since(t + Duration::from_secs(1), t), 1);
        assert!(now_ms() >= 1);
    }

    #[test]
    fn a_reading_taken_earlier_is_on_the_same_clock() {
        let t = Instant::now();
        let at = ms_at(t);
        assert!(at >= 1);
        assert!(at <= now_ms());
        assert_eq!(ms_at(t + Duration::from_millis(5)), at + 5);
    }

    fn cooldown(base_ms: u64, max_ms: u64) -> Cooldown {
        Cooldown {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    const SECOND: u64 = 1_000;

    #[test]
    fn a_retry_after_cooldown_ends_exactly_when_its_time_is_up() {
        let h = Health::default();
        let t0 = 50 * SECOND;
        h.failed(
            t0,
            Reason::RateLimited,
            Some(Duration::from_secs(30)),
            &cooldown(1_000, 300_000),
        );
        assert_eq!(h.ready_at(), t0 + 30 * SECOND);
        let before = h.state(t0 + 30 * SECOND - 1);
        assert!(before.cooling_down);
        assert_eq!(before.remaining_ms, 1);
        assert_eq!(before.reason, Reason::RateLimited);
        assert_eq!(before.consecutive_failures, 1);
        let after = h.state(t0 + 30 * SECOND);
        assert!(!after.cooling_down);
        assert_eq!((after.remaining_ms, after.reason), (0, Reason::None));
    }

    #[test]
    fn retry_after_is_capped_at_the_maximum_cooldown() {
        let h = Health::default();
        h.failed(
            1,
            Reason::RateLimited,
            Some(Duration::from_secs(3600)),
            &cooldown(1_000, 10_000),
        );
        assert_eq!(h.ready_at(), 1 + 10_000);
    }

    #[test]
    fn a_shorter_cooldown_never_cuts_a_longer_one_short() {
        let h = Health::default();
        let c = cooldown(1_000, 600_000);
        h.failed(
            1_000,
            Reason::RateLimited,
            Some(Duration::from_secs(60)),
            &c,
        );
        h.failed(2_000, Reason::ServerError, Some(Duration::from_secs(1)), &c);
        assert_eq!(h.ready_at(), 61_000);
        assert_eq!(h.state(2_000).consecutive_failures, 2);
        // The latest failure names the reason.
        assert_eq!(h.state(2_000).reason, Reason::ServerError);
    }

    #[test]
    fn without_retry_after_the_wait_is_backoff_with_jitter() {
        let h = Health::default();
        let c = cooldown(1_000, 60_000);
        for n in 1..=3u64 {
            h.failed(10_000, Reason::ServerError, None, &c);
            let wait = h.ready_at() - 10_000;
            let nominal = 1_000 << (n - 1);
            assert!(
                (nominal * 8 / 10..=nominal * 12 / 10).contains(&wait),
                "failure {n}: waited {wait} ms"
            );
        }
    }

    #[test]
    fn backoff_doubles_per_failure_and_stays_under_the_maximum() {
        let c = cooldown(1_000, 60_000);
        let ms = |n, jitter| backoff(n, &c, jitter).as_millis();
        assert_eq!(ms(1, 1.0), 1_000);
        assert_eq!(ms(2, 1.0), 2_000);
        assert_eq!(ms(4, 1.0), 8_000);
        assert_eq!(ms(2, 0.8), 1_600);
        assert_eq!(ms(2, 1.2), 2_400);
        // Capped before and after jitter.
        assert_eq!(ms(7, 1.0), 60_000);
        assert_eq!(ms(6, 1.2), 38_400);
        assert_eq!(ms(7, 1.2), 60_000);
        assert_eq!(ms(7, 0.8), 48_000);
        // The exponent stops growing after 21 failures: no overflow.
        let tiny = cooldown(1, u64::MAX / 2);
        assert_eq!(backoff(21, &tiny, 1.0), Duration::from_millis(1 << 20));
        assert_eq!(
            backoff(u32::MAX, &tiny, 1.0),
            Duration::from_millis(1 << 20)
        );
        // A first failure with no history counts as the first.
        assert_eq!(backoff(0, &c, 1.0).as_millis(), 1_000);
    }

    #[test]
    fn success_clears_the_cooldown_the_count_and_the_reason() {
        let h = Health::default();
        let c = cooldown(1_000, 60_000);
        h.failed(5_000, Reason::Timeout, None, &c);
        h.failed(5_000, Reason::Timeout, None, &c);
        assert_eq!(h.state(5_000).consecutive_failures, 2);
        h.succeeded();
        assert_eq!(h.ready_at(), 0);
        assert_eq!(
            h.state(5_000),
            HealthState {
                cooling_down: false,
                reason: Reason::None,
                consecutive_failures: 0,
                remaining_ms: 0,
            }
        );
        // The count starts again from one.
        h.failed(5_000, Reason::Timeout, None, &c);
        assert!(h.ready_at() - 5_000 <= 1_200);
    }

    #[test]
    fn a_health_check_marks_down_for_its_time_and_back_up() {
        let h = Health::default();
        h.set_down(7_000, Some(Duration::from_secs(65)));
        assert_eq!(h.ready_at(), 72_000);
        assert_eq!(h.state(71_999).reason, Reason::HealthCheck);
        assert!(!h.state(72_000).cooling_down);
        h.set_down(8_000, None);
        assert_eq!(h.ready_at(), 0);
        assert!(!h.state(8_000).cooling_down);
    }

    #[test]
    fn a_cooldown_is_shared_as_unix_time() {
        let h = Health::default();
        let now = Now {
            mono_ms: 2_000,
            unix_ms: 1_700_000_000_000,
        };
        assert_eq!(h.cooldown_until_unix_ms(now), 0);
        h.failed(
            2_000,
            Reason::RateLimited,
            Some(Duration::from_secs(9)),
            &cooldown(1, 60_000),
        );
        assert_eq!(h.cooldown_until_unix_ms(now), 1_700_000_009_000);
        let later = Now {
            mono_ms: 11_000,
            unix_ms: 1_700_000_009_000,
        };
        assert_eq!(h.cooldown_until_unix_ms(later), 0);
    }

    #[test]
    fn a_peers_cooldown_is_honoured_until_it_ends() {
        let h = Health::default();
        let now = Now {
            mono_ms: 4_000,
            unix_ms: 1_700_000_000_000,
        };
        h.extend_to_unix_ms(1_700_000_012_000, now);
        assert_eq!(h.ready_at(), 16_000);
        let state = h.state(15_999);
        assert!(state.cooling_down);
        assert_eq!(state.reason, Reason::Peer);
        assert!(!h.state(16_000).cooling_down);
        // A peer's cooldown that already ended changes nothing.
        let fresh = Health::default();
        fresh.extend_to_unix_ms(1_699_999_999_000, now);
        fresh.extend_to_unix_ms(1_700_000_000_000, now);
        assert_eq!(fresh.ready_at(), 0);
    }

    #[test]
    fn a_peers_shorter_cooldown_leaves_ours_and_its_reason() {
        let h = Health::default();
        let now = Now {
            mono_ms: 1_000,
            unix_ms: 1_700_000_000_000,
        };
        h.failed(
            1_000,
            Reason::Unauthorized,
            Some(Duration::from_secs(60)),
            &cooldown(1, 600_000),
        );
        h.extend_to_unix_ms(1_700_000_005_000, now);
        assert_eq!(h.ready_at(), 61_000);
        assert_eq!(h.state(1_000).reason, Reason::Unauthorized);
        // One that ends exactly when ours does changes nothing, reason included.
        h.extend_to_unix_ms(1_700_000_060_000, now);
        assert_eq!(h.ready_at(), 61_000);
        assert_eq!(h.state(1_000).reason, Reason::Unauthorized);
        // A longer one extends ours.
        h.extend_to_unix_ms(1_700_000_100_000, now);
        assert_eq!(h.ready_at(), 101_000);
        assert_eq!(h.state(1_000).reason, Reason::Peer);
    }

    #[test]
    fn every_reason_survives_the_atomic_round_trip() {
        let all = [
            Reason::RateLimited,
            Reason::ServerError,
            Reason::Unreachable,
            Reason::Timeout,
            Reason::Unauthorized,
            Reason::HealthCheck,
            Reason::Peer,
            Reason::Redirected,
            Reason::BrokenAnswer,
        ];
        let names: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "rate_limited",
                "server_error",
                "unreachable",
                "timeout",
                "unauthorized",
                "health_check",
                "peer",
                "redirected",
                "broken_answer"
            ]
        );
        for reason in all {
            let h = Health::default();
            h.failed(
                1,
                reason,
                Some(Duration::from_secs(1)),
                &cooldown(1, 10_000),
            );
            assert_eq!(h.state(1).reason, reason);
        }
        assert_eq!(Reason::from_u8(0), Reason::None);
        assert_eq!(Reason::from_u8(200), Reason::None);
        assert_eq!(Reason::None.as_str(), "none");
    }

    #[test]
    fn the_monotonic_clock_starts_above_zero_and_advances() {
        let first = now_ms();
        assert!(first >= 1);
        std::thread::sleep(Duration::from_millis(3));
        assert!(now_ms() >= first + 3);
        let now = Now::read();
        assert!(now.mono_ms >= first + 3);
        // Unix time is Unix time: after 2020, before 2100.
        assert!((1_577_836_800_000..4_102_444_800_000).contains(&now.unix_ms));
    }
}
