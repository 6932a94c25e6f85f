//! Token usage per (provider, key, model): the numbers routing balances on.
//!
//! Each pair has one [`UsageCell`] of atomics. Routing tables hold `Arc`s to
//! the cells, so the request path reads and bumps counters without a lookup
//! and without a lock. The [`Ledger`] owns the cells by [`UsageKey`] (which
//! names keys by fingerprint, never by value) so a config reload hands the
//! same cells to the new table and usage carries over.
//!
//! Bursts: a request *reserves* an estimate of its cost when it is routed
//! ([`UsageCell::reserve`]), so concurrent requests see each other and spread
//! across keys. The [`Reservation`] is settled against the real usage when
//! the response ends, or on drop with its estimate if nothing better is known.

mod cell;
pub mod cost;
pub mod estimate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use cell::{Penalties, Reservation, Settlement, TokenUsage, Totals, UsageCell};

/// Names one usage counter. Never holds a raw key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    pub provider: Arc<str>,
    pub key_fingerprint: Arc<str>,
    pub model: Arc<str>,
}

/// Owner of every usage cell; touched when tables are built and by admin
/// reads, never per request.
#[derive(Default)]
pub struct Ledger {
    cells: Mutex<HashMap<UsageKey, Arc<UsageCell>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cells = self.cells.lock().map_or(0, |c| c.len());
        f.debug_struct("Ledger").field("cells", &cells).finish()
    }
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cell for `key`, created empty on first use.
    pub fn cell(&self, key: UsageKey) -> Arc<UsageCell> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.entry(key).or_default().clone()
    }

    /// Every cell, for the syncer.
    pub fn cells(&self) -> Vec<(UsageKey, Arc<UsageCell>)> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.iter().map(|(k, c)| (k.clone(), c.clone())).collect()
    }

    /// A consistent-enough copy of every counter, sorted by key.
    pub fn snapshot(&self) -> Vec<(UsageKey, Totals)> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = cells.iter().map(|(k, c)| (k.clone(), c.totals())).collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
}
