//! From a validated config to routing decisions.
//!
//! [`Routes`] is an immutable table built once per config: each group holds
//! its candidates, every (model entry, provider key) pair in config order,
//! with `Arc`s to the usage and health cells they read and bump. A request
//! only reads this table; the only shared mutable state it touches is atomics
//! inside those cells. Reloading builds a new table from the same ledgers, so
//! usage and health carry over for keys that remain.

pub mod health;
pub mod select;
mod table;

pub use health::{Health, HealthState, Now, Reason, ms_at, now_ms};
pub use table::{Candidate, Group, HealthBook, Provider, ProviderKey, Routes};
