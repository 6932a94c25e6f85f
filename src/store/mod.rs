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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::StoreUrl;

use serde::Serialize;

use crate::routing::{HealthBook, Now};
use crate::usage::{Ledger, Totals, UsageKey};
pub use window::UsageWindow;

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
    use crate::config::Cooldown;
    use crate::routing::Reason;

    type Rows = Vec<(UsageKey, Totals)>;

    /// A store that keeps what it was given and answers as told.
    #[derive(Default)]
    struct Script {
        restored: Vec<(UsageKey, Totals)>,
        theirs: Vec<(UsageKey, Totals)>,
        peer_cooldowns: Vec<SharedCooldown>,
        fail_syncs: Arc<AtomicU64>,
        synced: Arc<Mutex<Vec<Rows>>>,
        shared_cooldowns: Arc<Mutex<Vec<SharedCooldown>>>,
        resets: Arc<Mutex<Vec<UsageKey>>>,
    }

    impl UsageStore for Script {
        fn kind(&self) -> &'static str {
            "script"
        }
        fn interval(&self) -> Duration {
            Duration::from_secs(3600)
        }
        fn load(&mut self) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
            Ok(std::mem::take(&mut self.restored))
        }
        fn sync(
            &mut self,
            local: &[(UsageKey, Totals)],
        ) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
            if self.fail_syncs.load(Relaxed) > 0 {
                self.fail_syncs.fetch_sub(1, Relaxed);
                anyhow::bail!("disk on fire");
            }
            self.synced.lock().unwrap().push(local.to_vec());
            Ok(self.theirs.clone())
        }
        fn reset(&mut self, keys: &[UsageKey]) -> anyhow::Result<()> {
            self.resets.lock().unwrap().extend_from_slice(keys);
            Ok(())
        }
        fn sync_cooldowns(
            &mut self,
            local: &[SharedCooldown],
        ) -> anyhow::Result<Vec<SharedCooldown>> {
            *self.shared_cooldowns.lock().unwrap() = local.to_vec();
            Ok(self.peer_cooldowns.clone())
        }
    }

    fn key(model: &str) -> UsageKey {
        UsageKey {
            provider: "p".into(),
            key_fingerprint: "f".into(),
            model: model.into(),
        }
    }

    fn tokens(n: u64) -> Totals {
        Totals {
            tokens: n,
            requests: 1,
            ..Totals::default()
        }
    }

    fn unix_ms() -> u64 {
        Now::read().unix_ms
    }

    #[test]
    fn the_syncer_restores_then_trades_totals_and_cooldowns() {
        let ledger = Arc::new(Ledger::new());
        let health = Arc::new(HealthBook::default());
        let status = Arc::new(StoreStatus::default());
        let (p, f): (Arc<str>, Arc<str>) = ("p".into(), "f".into());
        let ours = health.cell(&p, &f, None);
        ours.failed(
            Now::read().mono_ms,
            Reason::Timeout,
            Some(Duration::from_secs(60)),
            &Cooldown::default(),
        );
        let peer = health.cell(&p, &"g".into(), None);
        let script = Script {
            restored: vec![(key("m"), tokens(40))],
            theirs: vec![(key("m"), tokens(7)), (key("n"), tokens(3))],
            peer_cooldowns: vec![((p.clone(), "g".into(), None), unix_ms() + 30_000)],
            ..Script::default()
        };
        let (synced, shared) = (script.synced.clone(), script.shared_cooldowns.clone());
        let syncer = Syncer::start(
            Box::new(script),
            ledger.clone(),
            health.clone(),
            UsageWindow::new(None),
            status.clone(),
        );
        // Restored before the first request could be routed.
        assert_eq!(ledger.cell(key("m")).local_totals().tokens, 40);
        syncer.stop();
        // The final sync sent our totals, and took theirs.
        let sent = synced.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0], [(key("m"), ledger.cell(key("m")).local_totals())]);
        assert_eq!(ledger.cell(key("m")).totals().tokens, 47);
        assert_eq!(ledger.cell(key("n")).totals().tokens, 3);
        // Our cooldown went out; the peer's came in.
        let out = shared.lock().unwrap();
        let mine = out.iter().find(|(k, _)| k.1 == f).unwrap().1;
        assert!(
            (unix_ms() + 55_000..=unix_ms() + 60_000).contains(&mine),
            "{mine}"
        );
        let now = Now::read().mono_ms;
        assert_eq!(peer.state(now).reason, Reason::Peer);
        assert!(peer.state(now).remaining_ms > 25_000);
        let report = status.report();
        assert!(report.healthy);
        assert_eq!(
            (report.kind, report.syncs, report.failures),
            ("script", 1, 0)
        );
    }

    #[test]
    fn a_failing_store_is_reported_and_recovers() {
        let ledger = Arc::new(Ledger::new());
        ledger.cell(key("m")).restore(&tokens(5));
        let status = Arc::new(StoreStatus::default());
        let script = Script::default();
        script.fail_syncs.store(2, Relaxed);
        let synced = script.synced.clone();
        let mut store: Box<dyn UsageStore> = Box::new(script);
        let mut window = UsageWindow::new(None);
        let health = HealthBook::default();
        tick(store.as_mut(), &ledger, &health, &mut window, &status);
        tick(store.as_mut(), &ledger, &health, &mut window, &status);
        let report = status.report();
        assert!(!report.healthy && !status.healthy());
        assert_eq!(report.failures, 2);
        assert_eq!(report.last_error.as_deref(), Some("sync: disk on fire"));
        assert!(synced.lock().unwrap().is_empty());
        // The next good sync sends everything counted meanwhile.
        tick(store.as_mut(), &ledger, &health, &mut window, &status);
        assert!(status.healthy());
        assert_eq!(status.report().syncs, 1);
        assert_eq!(synced.lock().unwrap()[0][0].1.tokens, 5);
    }

    #[test]
    fn a_reset_forgets_in_the_store_and_in_memory() {
        let ledger = Arc::new(Ledger::new());
        ledger.cell(key("m")).restore(&tokens(5));
        ledger.cell(key("n")).restore(&tokens(6));
        let script = Script::default();
        let resets = script.resets.clone();
        let syncer = Syncer::start(
            Box::new(script),
            ledger.clone(),
            Arc::new(HealthBook::default()),
            UsageWindow::new(None),
            Arc::new(StoreStatus::default()),
        );
        assert_eq!(syncer.reset(vec![key("m")]), Ok(()));
        assert_eq!(*resets.lock().unwrap(), [key("m")]);
        assert_eq!(ledger.cell(key("m")).totals().tokens, 0);
        assert_eq!(ledger.cell(key("n")).totals().tokens, 6);
        syncer.stop();
    }
}
