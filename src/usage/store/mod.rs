//! Where usage lives beyond the process, written behind the request path.
//!
//! Requests only bump atomics in their cells. One [`Syncer`] thread per
//! process does all store I/O on a fixed tick: it snapshots every cell's
//! local counters, hands them to the [`UsageStore`], and writes back what
//! other instances counted (Redis) and the rolling-window bases. A store that
//! is slow or down delays nothing but the syncer: its failures are logged and
//! reported in [`StoreStatus`], and because every sync sends totals (SQLite)
//! or the delta since the last *successful* sync (Redis), nothing is lost
//! and nothing grows while it is down; the next good sync reconciles.

mod redis;
mod sqlite;
mod window;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Ledger, Totals, UsageKey};
use crate::routing::{HealthBook, Now};
pub use window::UsageWindow;

/// Which store, from `store:` in the config or `LLM_ROUTER_STORE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    Sqlite(PathBuf),
    Redis(String),
}

impl StoreUrl {
    pub const DEFAULT: &'static str = "sqlite://llm-router.db";

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "memory" || raw == "memory://" {
            return Ok(Self::Memory);
        }
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://llm-router.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("redis://") || raw.starts_with("rediss://") {
            return url::Url::parse(raw)
                .map(|_| Self::Redis(raw.to_string()))
                .map_err(|e| format!("invalid redis URL: {e}"));
        }
        Err("must be \"memory\", \"sqlite://PATH\" or \"redis://HOST:PORT/DB\"".into())
    }

    /// A description safe to log (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".into(),
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Redis(raw) => match url::Url::parse(raw) {
                Ok(u) => format!(
                    "{}://{}:{}{}",
                    u.scheme(),
                    u.host_str().unwrap_or(""),
                    u.port().unwrap_or(6379),
                    u.path()
                ),
                Err(_) => "redis".into(),
            },
        }
    }
}

/// A cooldown to share: the health cell's name and when it ends (Unix ms).
pub type SharedCooldown = ((Arc<str>, Arc<str>, Option<Arc<str>>), u64);

/// A place usage can be kept. All calls come from the syncer thread.
pub trait UsageStore: Send {
    fn kind(&self) -> &'static str;
    /// How often the syncer calls [`UsageStore::sync`].
    fn interval(&self) -> Duration;
    /// Usage this instance counted in earlier runs (restored at start-up).
    fn load(&mut self) -> anyhow::Result<Vec<(UsageKey, Totals)>>;
    /// Persists this instance's local totals; returns, per key, what other
    /// instances counted.
    fn sync(&mut self, local: &[(UsageKey, Totals)]) -> anyhow::Result<Vec<(UsageKey, Totals)>>;
    /// Forgets usage for these keys everywhere.
    fn reset(&mut self, keys: &[UsageKey]) -> anyhow::Result<()>;
    /// Shares cooldowns with other instances; returns theirs.
    fn sync_cooldowns(&mut self, _local: &[SharedCooldown]) -> anyhow::Result<Vec<SharedCooldown>> {
        Ok(Vec::new())
    }
}

struct MemoryStore;

impl UsageStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn load(&mut self) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        Ok(Vec::new())
    }
    fn sync(&mut self, _: &[(UsageKey, Totals)]) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        Ok(Vec::new())
    }
    fn reset(&mut self, _: &[UsageKey]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Opens the store named by `url`.
pub fn open(url: &StoreUrl) -> anyhow::Result<Box<dyn UsageStore>> {
    Ok(match url {
        StoreUrl::Memory => Box::new(MemoryStore),
        StoreUrl::Sqlite(path) => Box::new(sqlite::SqliteStore::new(path)),
        StoreUrl::Redis(raw) => Box::new(redis::RedisStore::new(raw)?),
    })
}

/// The store's health, for `/ready`, the admin API and metrics.
#[derive(Debug, Default)]
pub struct StoreStatus {
    kind: Mutex<&'static str>,
    degraded: AtomicBool,
    failures: AtomicU64,
    syncs: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    pub kind: &'static str,
    pub healthy: bool,
    pub syncs: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl StoreStatus {
    pub fn report(&self) -> StoreReport {
        StoreReport {
            kind: *self.kind.lock().unwrap_or_else(|e| e.into_inner()),
            healthy: !self.degraded.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
            failures: self.failures.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    pub fn healthy(&self) -> bool {
        !self.degraded.load(Relaxed)
    }

    fn ok(&self) {
        self.syncs.fetch_add(1, Relaxed);
        if self.degraded.swap(false, Relaxed) {
            tracing::info!("usage store recovered; pending usage reconciled");
        }
    }

    fn failed(&self, what: &str, error: &anyhow::Error) {
        self.failures.fetch_add(1, Relaxed);
        let message = format!("{what}: {error:#}");
        if !self.degraded.swap(true, Relaxed) {
            tracing::warn!(error = %message, "usage store failing; requests continue, usage is kept in memory until it recovers");
        } else {
            tracing::debug!(error = %message, "usage store still failing");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

enum Command {
    Reset(Vec<UsageKey>, mpsc::Sender<Result<(), String>>),
    Stop(mpsc::Sender<()>),
}

/// Handle to the syncer thread.
pub struct Syncer {
    tx: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Restores saved usage into `ledger`, then starts syncing it.
    pub fn start(
        mut store: Box<dyn UsageStore>,
        ledger: Arc<Ledger>,
        health: Arc<HealthBook>,
        window: UsageWindow,
        status: Arc<StoreStatus>,
    ) -> Self {
        *status.kind.lock().unwrap_or_else(|e| e.into_inner()) = store.kind();
        match store.load() {
            Ok(rows) => {
                let n = rows.len();
                for (key, totals) in rows {
                    ledger.cell(key).restore(&totals);
                }
                if n > 0 {
                    tracing::info!(store = store.kind(), rows = n, "restored usage");
                }
            }
            Err(e) => status.failed("load", &e),
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("usage-syncer".into())
            .spawn(move || run(store.as_mut(), &ledger, &health, window, &status, &rx))
            .expect("spawning the usage syncer thread");
        Self {
            tx,
            thread: Some(thread),
        }
    }

    /// Forgets usage for `keys` in the store and in memory.
    pub fn reset(&self, keys: Vec<UsageKey>) -> Result<(), String> {
        let (reply, wait) = mpsc::channel();
        self.tx
            .send(Command::Reset(keys, reply))
            .map_err(|_| "usage syncer stopped".to_string())?;
        wait.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "usage store did not answer".to_string())?
    }

    /// Final sync, then stop. Called after the server has drained.
    pub fn stop(mut self) {
        let (ack, wait) = mpsc::channel();
        if self.tx.send(Command::Stop(ack)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    store: &mut dyn UsageStore,
    ledger: &Ledger,
    health: &HealthBook,
    mut window: UsageWindow,
    status: &StoreStatus,
    rx: &mpsc::Receiver<Command>,
) {
    let interval = store.interval();
    let mut next = Instant::now() + interval;
    loop {
        let timeout = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(Command::Reset(keys, reply)) => {
                let result = store.reset(&keys).map_err(|e| format!("{e:#}"));
                for key in &keys {
                    ledger.cell(key.clone()).reset();
                }
                window.forget(&keys);
                let _ = reply.send(result);
            }
            Ok(Command::Stop(ack)) => {
                tick(store, ledger, health, &mut window, status);
                let _ = ack.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                tick(store, ledger, health, &mut window, status);
                next = Instant::now() + interval;
            }
            Err(RecvTimeoutError::Disconnected) => {
                tick(store, ledger, health, &mut window, status);
                return;
            }
        }
    }
}

fn tick(
    store: &mut dyn UsageStore,
    ledger: &Ledger,
    health: &HealthBook,
    window: &mut UsageWindow,
    status: &StoreStatus,
) {
    let cells = ledger.cells();
    let local: Vec<(UsageKey, Totals)> = cells
        .iter()
        .map(|(k, c)| (k.clone(), c.local_totals()))
        .collect();
    match store.sync(&local) {
        Ok(shared) => {
            for (key, totals) in shared {
                ledger.cell(key).set_shared(&totals);
            }
            status.ok();
        }
        Err(e) => status.failed("sync", &e),
    }
    match store.sync_cooldowns(&health.cooldowns(Now::read())) {
        Ok(theirs) => health.apply_cooldowns(&theirs, Now::read()),
        Err(e) => tracing::debug!(error = %format!("{e:#}"), "sharing cooldowns failed"),
    }
    window.update(&cells);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(StoreUrl::parse("memory"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("sqlite://data/u.db"),
            Ok(StoreUrl::Sqlite("data/u.db".into()))
        );
        assert!(matches!(
            StoreUrl::parse("redis://127.0.0.1:6379/0"),
            Ok(StoreUrl::Redis(_))
        ));
        assert!(StoreUrl::parse("postgres://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn redis_description_hides_the_password() {
        let url = StoreUrl::parse("redis://:hunter2@cache:6380/1").unwrap();
        assert_eq!(url.describe(), "redis://cache:6380/1");
    }
}
