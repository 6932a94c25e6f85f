//! Failed admin logins, counted per client address: after
//! [`Lockout::MAX_FAILURES`] wrong keys within a minute, that address is
//! refused (429, `Retry-After`) until the oldest of them is a minute old,
//! whatever it sends, so guessing the admin key is slow.
//!
//! IPv6 addresses count by their /64 (one host usually holds a whole /64).
//! Behind a proxy every client shares the proxy's address: terminate TLS at
//! the router (`tls:`) to keep them apart. Memory is bounded: at most
//! [`Lockout::MAX_ADDRESSES`] addresses are tracked, and the stalest go
//! first.
//!
//! Time is passed in (milliseconds on any monotonic clock), so tests drive
//! it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The address a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The /64.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.into()),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Default)]
pub struct Lockout {
    failures: Mutex<HashMap<Source, VecDeque<u64>>>,
}

impl Lockout {
    /// Wrong keys an address may send within [`Lockout::WINDOW`].
    pub const MAX_FAILURES: usize = 10;
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Addresses tracked at most.
    pub const MAX_ADDRESSES: usize = 10_000;

    pub fn new() -> Self {
        Self::default()
    }

    fn window_ms() -> u64 {
        Self::WINDOW.as_millis() as u64
    }

    /// `Some(wait)` while `ip` is locked out at `now_ms`.
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = map.get_mut(&Source::of(ip))?;
        expire(times, now_ms);
        if times.len() < Self::MAX_FAILURES {
            return None;
        }
        let oldest = times.front().copied().unwrap_or(now_ms);
        let free_at = oldest + Self::window_ms();
        // Whole seconds, rounded up: a client that waits that long is let in.
        Some(Duration::from_secs(
            (free_at - now_ms).div_ceil(1000).max(1),
        ))
    }

    /// Counts a wrong key from `ip` at `now_ms`.
    pub fn failed(&self, ip: IpAddr, now_ms: u64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let source = Source::of(ip);
        if !map.contains_key(&source) && map.len() >= Self::MAX_ADDRESSES {
            map.retain(|_, times| {
                expire(times, now_ms);
                !times.is_empty()
            });
            if map.len() >= Self::MAX_ADDRESSES {
                // Still full of live windows: forget the stalest.
                let stalest = map
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied().unwrap_or(0))
                    .map(|(k, _)| *k);
                if let Some(k) = stalest {
                    map.remove(&k);
                }
            }
        }
        let times = map.entry(source).or_default();
        expire(times, now_ms);
        times.push_back(now_ms);
        // Only the newest MAX_FAILURES matter.
        while times.len() > Self::MAX_FAILURES {
            times.pop_front();
        }
    }

    /// A success clears the address's record.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&Source::of(ip));
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Drops failures older than the window.
fn expire(times: &mut VecDeque<u64>, now_ms: u64) {
    while times
        .front()
        .is_some_and(|&t| now_ms.saturating_sub(t) >= Lockout::window_ms())
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ten_failures_in_a_minute_lock_the_address_until_the_first_is_a_minute_old() {
        let l = Lockout::new();
        let a = ip("203.0.113.7");
        for i in 0..10 {
            assert_eq!(l.check(a, i * 1000), None, "failure {i} is still allowed");
            l.failed(a, i * 1000);
        }
        // The 11th attempt, at 10 s: refused until the first (at 0) is 60 s old.
        assert_eq!(l.check(a, 10_000), Some(Duration::from_secs(50)));
        assert_eq!(l.check(a, 59_500), Some(Duration::from_secs(1)));
        assert_eq!(l.check(a, 60_000), None);
        // Another address is not affected.
        assert_eq!(l.check(ip("203.0.113.8"), 10_000), None);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_never_lock() {
        let l = Lockout::new();
        let a = ip("198.51.100.1");
        for i in 0..100u64 {
            assert_eq!(l.check(a, i * 7_000), None, "at attempt {i}");
            l.failed(a, i * 7_000);
        }
    }

    #[test]
    fn a_success_clears_the_record() {
        let l = Lockout::new();
        let a = ip("198.51.100.2");
        for i in 0..9 {
            l.failed(a, i);
        }
        l.succeeded(a);
        l.failed(a, 10);
        assert_eq!(l.check(a, 11), None);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = Lockout::new();
        for i in 0..10 {
            l.failed(ip(&format!("2001:db8:1:2::{i:x}")), 0);
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::1"), 1).is_some());
        assert!(l.check(ip("2001:db8:1:3::1"), 1).is_none());
        for _ in 0..10 {
            l.failed(ip("::ffff:192.0.2.1"), 0);
        }
        assert!(l.check(ip("192.0.2.1"), 1).is_some());
        // An IPv6 /64 is never an IPv4 address.
        for _ in 0..10 {
            l.failed(ip("0.0.0.0"), 0);
        }
        assert!(l.check(ip("::"), 1).is_none());
    }

    #[test]
    fn memory_is_bounded_by_the_address_cap() {
        let l = Lockout::new();
        for i in 0..(Lockout::MAX_ADDRESSES as u32 + 500) {
            l.failed(IpAddr::V4(i.into()), u64::from(i));
        }
        assert!(l.tracked() <= Lockout::MAX_ADDRESSES);
        // The newest are kept.
        let last = IpAddr::V4((Lockout::MAX_ADDRESSES as u32 + 499).into());
        l.failed(last, 100_000);
        assert_eq!(l.tracked(), Lockout::MAX_ADDRESSES);
    }
}
