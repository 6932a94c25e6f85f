//! One (provider, key, model) counter and the reservation that settles into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Token counts as an upstream reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    /// Every prompt token, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of `prompt_tokens`, those read from the provider's prompt cache
    /// (OpenAI's `prompt_tokens_details.cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`); providers bill them at a lower price.
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_prompt_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Seven counters, as atomics.
#[derive(Debug, Default)]
struct Counters {
    tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    estimated: AtomicU64,
    /// Money spent, in billionths of a US dollar.
    cost_nanos: AtomicU64,
}

impl Counters {
    fn load(&self) -> Totals {
        Totals {
            tokens: self.tokens.load(Relaxed),
            reserved: 0,
            prompt_tokens: self.prompt_tokens.load(Relaxed),
            completion_tokens: self.completion_tokens.load(Relaxed),
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            estimated: self.estimated.load(Relaxed),
            cost_nanos: self.cost_nanos.load(Relaxed),
        }
    }

    fn store(&self, t: &Totals) {
        self.tokens.store(t.tokens, Relaxed);
        self.prompt_tokens.store(t.prompt_tokens, Relaxed);
        self.completion_tokens.store(t.completion_tokens, Relaxed);
        self.requests.store(t.requests, Relaxed);
        self.errors.store(t.errors, Relaxed);
        self.estimated.store(t.estimated, Relaxed);
        self.cost_nanos.store(t.cost_nanos, Relaxed);
    }

    fn add(&self, t: &Totals) {
        self.tokens.fetch_add(t.tokens, Relaxed);
        self.prompt_tokens.fetch_add(t.prompt_tokens, Relaxed);
        self.completion_tokens
            .fetch_add(t.completion_tokens, Relaxed);
        self.requests.fetch_add(t.requests, Relaxed);
        self.errors.fetch_add(t.errors, Relaxed);
        self.estimated.fetch_add(t.estimated, Relaxed);
        self.cost_nanos.fetch_add(t.cost_nanos, Relaxed);
    }
}

/// Lock-free counters for one (provider, key, model).
///
/// `local` is what this process counted (plus history restored from the
/// store at start-up); only the request path writes it. `shared` is what
/// other router instances counted, refreshed by the store syncer.
/// `window_base` is the cumulative token count at the start of the rolling
/// window, so selection balances on recent usage when a window is set.
#[derive(Debug, Default)]
pub struct UsageCell {
    local: Counters,
    shared: Counters,
    window_base: AtomicU64,
    /// Estimates held by requests in flight.
    reserved: AtomicU64,
    /// Running average of completion tokens per request, for estimates.
    completion_avg: AtomicU64,
    /// This pair's upstream has answered without usage: keep response text
    /// for estimates. Off by default, so providers that report usage cost
    /// no memory for it.
    reports_no_usage: std::sync::atomic::AtomicBool,
}

/// A copy of a cell's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub tokens: u64,
    pub reserved: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub requests: u64,
    pub errors: u64,
    pub estimated: u64,
    /// Money spent, in billionths of a US dollar (0 where no price is set).
    pub cost_nanos: u64,
}

/// Tokens added to a (key, model) pair's usage to steer traffic away from
/// it: per request, and per failed request (the Go router's
/// `request_penalty` and `error_penalty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Penalties {
    pub request: u64,
    pub error: u64,
}

/// How a request ended, for [`Reservation::settle`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Settlement {
    /// What the upstream reported; `None` means estimate from the prompt
    /// estimate and `streamed_tokens`.
    pub usage: Option<TokenUsage>,
    /// `usage` was computed by the router (tiktoken), not reported.
    pub estimated: bool,
    /// Completion tokens seen so far (stream chunks), used when `usage` is `None`.
    pub streamed_tokens: u64,
    pub failed: bool,
    pub penalties: Penalties,
    /// What the request cost, in billionths of a US dollar.
    pub cost_nanos: u64,
}

impl Settlement {
    /// An attempt that failed: no tokens, and the penalties.
    pub fn failed(penalties: Penalties) -> Self {
        Self {
            usage: None,
            estimated: false,
            streamed_tokens: 0,
            failed: true,
            penalties,
            cost_nanos: 0,
        }
    }
}

impl UsageCell {
    /// The usage selection compares: settled tokens plus in-flight estimates.
    pub fn load(&self) -> u64 {
        self.cumulative_tokens()
            .saturating_sub(self.window_base.load(Relaxed))
            .saturating_add(self.reserved.load(Relaxed))
    }

    pub fn reports_no_usage(&self) -> bool {
        self.reports_no_usage.load(Relaxed)
    }

    pub fn set_reports_no_usage(&self, missing: bool) {
        if self.reports_no_usage.load(Relaxed) != missing {
            self.reports_no_usage.store(missing, Relaxed);
        }
    }

    /// Tokens ever counted for this pair, by every instance.
    pub fn cumulative_tokens(&self) -> u64 {
        self.local
            .tokens
            .load(Relaxed)
            .saturating_add(self.shared.tokens.load(Relaxed))
    }

    /// Everything counted, by this instance and the others.
    pub fn totals(&self) -> Totals {
        let mut t = self.local.load();
        let s = self.shared.load();
        t.tokens += s.tokens;
        t.prompt_tokens += s.prompt_tokens;
        t.completion_tokens += s.completion_tokens;
        t.requests += s.requests;
        t.errors += s.errors;
        t.estimated += s.estimated;
        t.cost_nanos += s.cost_nanos;
        t.reserved = self.reserved.load(Relaxed);
        t
    }

    /// What this instance counted (and restored); the store syncs this.
    pub fn local_totals(&self) -> Totals {
        self.local.load()
    }

    /// Sets what other instances counted (from the shared store).
    pub fn set_shared(&self, t: &Totals) {
        self.shared.store(t);
    }

    /// Sets the cumulative token count at the start of the usage window.
    pub fn set_window_base(&self, tokens: u64) {
        self.window_base.store(tokens, Relaxed);
    }

    /// Holds `prompt_estimate` plus the usual completion size until settled.
    pub fn reserve(self: &Arc<Self>, prompt_estimate: u64) -> Reservation {
        let amount = prompt_estimate
            .saturating_add(self.completion_avg.load(Relaxed))
            .max(1);
        self.reserved.fetch_add(amount, Relaxed);
        Reservation {
            cell: Some(self.clone()),
            amount,
            prompt_estimate,
        }
    }

    fn release(&self, amount: u64) {
        // Never underflow, even if a reset raced with this request.
        let _ = self
            .reserved
            .fetch_update(Relaxed, Relaxed, |r| Some(r.saturating_sub(amount)));
    }

    fn record(&self, s: &Settlement, prompt_estimate: u64) {
        let (usage, estimated) = match s.usage {
            Some(u) => (u, s.estimated),
            None if s.failed && s.streamed_tokens == 0 => (TokenUsage::default(), false),
            None => {
                let u = TokenUsage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: s.streamed_tokens,
                    total_tokens: prompt_estimate + s.streamed_tokens,
                    cached_prompt_tokens: 0,
                };
                (u, true)
            }
        };
        let penalty = s.penalties.request + if s.failed { s.penalties.error } else { 0 };
        self.local.add(&Totals {
            tokens: usage.total_tokens.saturating_add(penalty),
            reserved: 0,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            requests: 1,
            errors: u64::from(s.failed),
            estimated: u64::from(estimated),
            cost_nanos: s.cost_nanos,
        });
        if !s.failed && usage.completion_tokens > 0 {
            // EWMA with alpha 1/8: cheap, and good enough for an estimate.
            let _ = self.completion_avg.fetch_update(Relaxed, Relaxed, |avg| {
                Some(if avg == 0 {
                    usage.completion_tokens
                } else {
                    avg - avg / 8 + usage.completion_tokens / 8
                })
            });
        }
    }

    /// Forgets all usage (admin reset). In-flight reservations are kept.
    pub fn reset(&self) {
        self.local.store(&Totals::default());
        self.shared.store(&Totals::default());
        self.window_base.store(0, Relaxed);
    }

    /// Adds counters restored from a store at start-up.
    pub fn restore(&self, t: &Totals) {
        self.local.add(t);
    }
}

/// An in-flight request's claim on a cell. Settle it with what happened; if
/// it is dropped unsettled (client went away, task cancelled) it settles as
/// an estimate, so usage is never lost and never leaks as a reservation.
#[derive(Debug)]
pub struct Reservation {
    cell: Option<Arc<UsageCell>>,
    amount: u64,
    prompt_estimate: u64,
}

impl Reservation {
    pub fn prompt_estimate(&self) -> u64 {
        self.prompt_estimate
    }

    pub fn settle(mut self, settlement: Settlement) {
        self.finish(&settlement);
    }

    fn finish(&mut self, settlement: &Settlement) {
        if let Some(cell) = self.cell.take() {
            cell.release(self.amount);
            cell.record(settlement, self.prompt_estimate);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(&Settlement::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_prompt_tokens_are_written_only_when_there_are_some() {
        let plain = TokenUsage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
            cached_prompt_tokens: 0,
        };
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            serde_json::json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        );
        let cached = TokenUsage {
            cached_prompt_tokens: 1,
            ..plain
        };
        assert_eq!(
            serde_json::to_value(cached).unwrap()["cached_prompt_tokens"],
            1
        );
    }

    #[test]
    fn a_reservation_counts_toward_load_until_settled() {
        let cell = Arc::new(UsageCell::default());
        let r = cell.reserve(10);
        assert_eq!(cell.load(), 10);
        r.settle(Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: 7,
                completion_tokens: 5,
                total_tokens: 12,
                cached_prompt_tokens: 0,
            }),
            ..Default::default()
        });
        assert_eq!(cell.load(), 12);
        let t = cell.totals();
        assert_eq!((t.reserved, t.requests, t.estimated), (0, 1, 0));
    }

    #[test]
    fn dropping_an_unsettled_reservation_records_the_estimate() {
        let cell = Arc::new(UsageCell::default());
        drop(cell.reserve(40));
        let t = cell.totals();
        assert_eq!(
            (t.tokens, t.reserved, t.estimated, t.requests),
            (40, 0, 1, 1)
        );
    }

    #[test]
    fn penalties_are_added_per_request_and_per_failure() {
        let cell = Arc::new(UsageCell::default());
        let base = Settlement {
            usage: Some(TokenUsage::default()),
            penalties: Penalties {
                request: 3,
                error: 100,
            },
            ..Default::default()
        };
        cell.reserve(1).settle(base);
        cell.reserve(1).settle(Settlement {
            failed: true,
            usage: None,
            ..base
        });
        let t = cell.totals();
        assert_eq!((t.tokens, t.errors, t.requests), (3 + 3 + 100, 1, 2));
    }

    #[test]
    fn the_completion_average_feeds_later_reservations() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: 1,
                completion_tokens: 80,
                total_tokens: 81,
                cached_prompt_tokens: 0,
            }),
            ..Default::default()
        });
        let r = cell.reserve(20);
        assert_eq!(cell.totals().reserved, 100);
        drop(r);
    }

    fn reported(prompt: u64, completion: u64) -> Settlement {
        Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                cached_prompt_tokens: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_completion_average_moves_an_eighth_of_the_way() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(1, 80));
        // 80 - 80/8 + 16/8 = 72
        cell.reserve(0).settle(reported(1, 16));
        assert_eq!(cell.completion_avg.load(Relaxed), 72);
        // 72 - 9 + 400/8 = 113
        cell.reserve(0).settle(reported(1, 400));
        let r = cell.reserve(7);
        assert_eq!(cell.totals().reserved, 7 + 113);
        drop(r);
    }

    #[test]
    fn failures_and_empty_answers_leave_the_average_alone() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(1, 40));
        cell.reserve(0).settle(Settlement {
            failed: true,
            ..reported(1, 4_000)
        });
        cell.reserve(0).settle(reported(9, 0));
        assert_eq!(cell.completion_avg.load(Relaxed), 40);
    }

    #[test]
    fn a_reservation_holds_at_least_one_token() {
        let cell = Arc::new(UsageCell::default());
        let r = cell.reserve(0);
        assert_eq!(cell.load(), 1);
        assert_eq!(r.prompt_estimate(), 0);
        let r2 = cell.reserve(25);
        assert_eq!(r2.prompt_estimate(), 25);
        assert_eq!(cell.load(), 26);
        r.settle(reported(0, 0));
        r2.settle(reported(0, 0));
        assert_eq!(cell.load(), 0);
    }

    #[test]
    fn a_stream_without_usage_is_charged_its_prompt_estimate_and_chunks() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(30).settle(Settlement {
            usage: None,
            streamed_tokens: 12,
            ..Default::default()
        });
        let t = cell.totals();
        assert_eq!(
            (t.tokens, t.prompt_tokens, t.completion_tokens, t.estimated),
            (42, 30, 12, 1)
        );
        // A failed attempt that produced nothing costs nothing but the error.
        cell.reserve(30)
            .settle(Settlement::failed(Penalties::default()));
        let t = cell.totals();
        assert_eq!((t.tokens, t.errors, t.requests, t.estimated), (42, 1, 2, 1));
        // A stream that failed part-way is charged what it produced.
        cell.reserve(10).settle(Settlement {
            streamed_tokens: 3,
            ..Settlement::failed(Penalties::default())
        });
        let t = cell.totals();
        assert_eq!((t.tokens, t.errors, t.estimated), (42 + 13, 2, 2));
    }

    #[test]
    fn reported_usage_is_recorded_as_is_and_marked_when_estimated() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(500).settle(reported(7, 5));
        cell.reserve(500).settle(Settlement {
            estimated: true,
            ..reported(3, 2)
        });
        let t = cell.totals();
        assert_eq!(
            (
                t.tokens,
                t.prompt_tokens,
                t.completion_tokens,
                t.requests,
                t.estimated,
                t.errors
            ),
            (17, 10, 7, 2, 1, 0)
        );
    }

    #[test]
    fn the_failed_settlement_carries_both_penalties() {
        let penalties = Penalties {
            request: 4,
            error: 9,
        };
        let s = Settlement::failed(penalties);
        assert!(s.failed && s.usage.is_none() && !s.estimated);
        assert_eq!((s.penalties, s.streamed_tokens), (penalties, 0));
    }

    #[test]
    fn totals_are_what_this_instance_and_the_others_counted() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(10, 5));
        let theirs = Totals {
            tokens: 100,
            reserved: 0,
            prompt_tokens: 60,
            completion_tokens: 40,
            requests: 3,
            errors: 2,
            estimated: 1,
            cost_nanos: 0,
        };
        cell.set_shared(&theirs);
        let held = cell.reserve(4);
        let t = cell.totals();
        assert_eq!(
            t,
            Totals {
                tokens: 115,
                reserved: 4 + 5,
                prompt_tokens: 70,
                completion_tokens: 45,
                requests: 4,
                errors: 2,
                estimated: 1,
                cost_nanos: 0,
            }
        );
        let mine = cell.local_totals();
        assert_eq!((mine.tokens, mine.requests, mine.reserved), (15, 1, 0));
        assert_eq!(cell.cumulative_tokens(), 115);
        assert_eq!(cell.load(), 115 + 9);
        // A newer report from the store replaces the old one.
        cell.set_shared(&Totals {
            tokens: 1,
            ..Totals::default()
        });
        assert_eq!(cell.cumulative_tokens(), 16);
        drop(held);
    }

    #[test]
    fn selection_load_is_usage_since_the_window_start_plus_reservations() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(50, 50));
        cell.set_window_base(30);
        assert_eq!(cell.load(), 70);
        let r = cell.reserve(5);
        assert_eq!(cell.load(), 70 + 5 + 50);
        drop(r);
        // A base past the total (a reset raced the window) counts as zero.
        cell.set_window_base(10_000);
        assert_eq!(cell.load(), 0);
        // The dropped reservation settled as its prompt estimate.
        assert_eq!(cell.cumulative_tokens(), 100 + 5);
    }

    #[test]
    fn restored_history_is_added_to_what_this_run_counts() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(1, 1));
        cell.restore(&Totals {
            tokens: 40,
            requests: 4,
            errors: 1,
            prompt_tokens: 30,
            completion_tokens: 10,
            estimated: 2,
            reserved: 0,
            cost_nanos: 0,
        });
        let t = cell.local_totals();
        assert_eq!(
            (
                t.tokens,
                t.requests,
                t.errors,
                t.prompt_tokens,
                t.completion_tokens,
                t.estimated
            ),
            (42, 5, 1, 31, 11, 2)
        );
    }

    #[test]
    fn a_reset_forgets_usage_but_not_requests_in_flight() {
        let cell = Arc::new(UsageCell::default());
        cell.reserve(0).settle(reported(10, 10));
        cell.set_shared(&Totals {
            tokens: 5,
            ..Totals::default()
        });
        cell.set_window_base(3);
        let r = cell.reserve(8);
        cell.reset();
        assert_eq!(cell.cumulative_tokens(), 0);
        assert_eq!(cell.load(), 8 + 10);
        assert_eq!(cell.totals().requests, 0);
        r.settle(reported(0, 0));
        assert_eq!(cell.load(), 0);
        // A release larger than what is held never wraps around.
        cell.release(1_000);
        assert_eq!(cell.totals().reserved, 0);
    }

    #[test]
    fn the_no_usage_flag_follows_the_last_answer() {
        let cell = UsageCell::default();
        assert!(!cell.reports_no_usage());
        cell.set_reports_no_usage(true);
        assert!(cell.reports_no_usage());
        cell.set_reports_no_usage(true);
        assert!(cell.reports_no_usage());
        cell.set_reports_no_usage(false);
        assert!(!cell.reports_no_usage());
    }
}
