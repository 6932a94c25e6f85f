//! The running router's shared state.
//!
//! [`Runtime`] is everything derived from one config: the config itself, the
//! routing table and precomputed responses. It sits behind an `ArcSwap`, so a
//! request takes one lock-free snapshot at its start and keeps it to the end,
//! and a reload swaps in a new one without disturbing requests in flight.
//! The usage ledger, the health book and the upstream client outlive reloads.

mod sessions;

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::clients::{ClientBook, Clients};
use crate::config::StoreUrl;
use crate::config::{CacheConfig, Config, ConfigSource, ConfigState, Effective, ReloadError};
use crate::metrics::Metrics;
use crate::routing::{HealthBook, Routes};
use crate::store::{self, StoreStatus, Syncer, UsageWindow};
use crate::upstream::Upstream;
use crate::usage::Ledger;

/// Everything built from one config.
pub struct Runtime {
    pub config: Arc<Config>,
    pub routes: Routes,
    pub clients: Clients,
    /// The `/v1/models` body, in OpenAI's list shape.
    pub models_body: Bytes,
    /// The same list in Anthropic's shape, for clients that send
    /// `anthropic-version` (the Anthropic SDK's `models.list()`).
    pub models_body_anthropic: Bytes,
}

impl Runtime {
    pub fn build(
        config: Config,
        ledger: &Arc<Ledger>,
        health: &Arc<HealthBook>,
        metrics: &Arc<Metrics>,
        book: &ClientBook,
    ) -> Self {
        let routes = Routes::build(&config, ledger, health, metrics);
        let clients = Clients::build(&config, book, ledger, metrics);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let data: Vec<_> = routes
            .group_order
            .iter()
            .chain(&routes.alias_order)
            .map(|name| {
                serde_json::json!({
                    "id": &**name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llm-router",
                })
            })
            .collect();
        let models_body = Bytes::from(
            serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
                .unwrap_or_default(),
        );
        let names: Vec<&str> = routes
            .group_order
            .iter()
            .chain(&routes.alias_order)
            .map(|n| &**n)
            .collect();
        let created_at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(created),
        )
        .to_string();
        let anthropic: Vec<_> = names
            .iter()
            .map(|name| {
                serde_json::json!({
                    "type": "model",
                    "id": name,
                    "display_name": name,
                    "created_at": created_at,
                })
            })
            .collect();
        // Every model on one page: the SDK stops paging at has_more: false.
        let models_body_anthropic = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "data": anthropic,
                "has_more": false,
                "first_id": names.first(),
                "last_id": names.last(),
            }))
            .unwrap_or_default(),
        );
        Self {
            config: Arc::new(config),
            routes,
            clients,
            models_body,
            models_body_anthropic,
        }
    }
}

/// The current [`Runtime`], swapped whole on reload. Background tasks that
/// read the routing table hold a clone of this, not the whole state.
pub type LiveRuntime = Arc<ArcSwap<Runtime>>;

pub struct Shared {
    runtime: LiveRuntime,
    pub upstream: Upstream,
    pub ledger: Arc<Ledger>,
    pub health: Arc<HealthBook>,
    /// Cancelled when the shutdown drain runs out: open streams end themselves.
    pub streams_stop: CancellationToken,
    pub store_status: Arc<StoreStatus>,
    pub metrics: Arc<Metrics>,
    pub source: ConfigSource,
    pub(crate) config_state: std::sync::Mutex<ConfigState>,
    pub(crate) edit_lock: tokio::sync::Mutex<()>,
    pub sessions: sessions::Sessions,
    /// Wrong admin keys per client address.
    pub lockout: crate::lockout::Lockout,
    pub client_book: ClientBook,
    pub series: Arc<crate::metrics::series::Series>,
    /// The response cache, when the config has one or a group opts in
    /// (where it lives takes effect at the next restart).
    pub cache: Option<Arc<Cache>>,
    /// Settings of `cache`, as loaded.
    pub cache_config: CacheConfig,
    /// The write-behind thread; taken at shutdown for the final flush.
    syncer: std::sync::Mutex<Option<Syncer>>,
}

/// Cheap to clone; handed to every handler.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Builds the state for a validated config, restoring usage from the
    /// store and starting its write-behind syncer.
    pub fn new(source: ConfigSource, store_url: &StoreUrl) -> anyhow::Result<Self> {
        let overlay = source.load_overlay()?;
        let effective = source.load(&overlay)?;
        Self::with_effective(source, effective, overlay, store_url)
    }

    /// Builds the state from an already loaded config.
    pub fn with_effective(
        source: ConfigSource,
        effective: Effective,
        overlay: crate::config::overlay::Overlay,
        store_url: &StoreUrl,
    ) -> anyhow::Result<Self> {
        let config_state = ConfigState::new(&effective, overlay);
        let config = effective.routable;
        let ledger = Arc::new(Ledger::new());
        let health = Arc::new(HealthBook::default());
        let upstream = Upstream::new(&config.timeouts)?;
        let window = UsageWindow::new(config.usage_window().map_err(anyhow::Error::msg)?);
        let store_status = Arc::new(StoreStatus::default());
        let store = store::open(store_url)?;
        let syncer = Syncer::start(
            store,
            ledger.clone(),
            health.clone(),
            window,
            store_status.clone(),
        );
        let metrics = Arc::new(Metrics::new());
        let client_book = ClientBook::default();
        let cache_config = config.cache.clone().unwrap_or_default();
        let wanted = config.cache.is_some() || config.groups.iter().any(|g| g.cache.is_some());
        let cache = match wanted {
            true => Some(Arc::new(Cache::open(&cache_config, store_url)?)),
            false => None,
        };
        let runtime = Runtime::build(config, &ledger, &health, &metrics, &client_book);
        Ok(Self(Arc::new(Shared {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            upstream,
            ledger,
            health,
            streams_stop: CancellationToken::new(),
            store_status,
            metrics,
            source,
            config_state: std::sync::Mutex::new(config_state),
            edit_lock: tokio::sync::Mutex::new(()),
            sessions: Default::default(),
            lockout: Default::default(),
            client_book,
            series: Default::default(),
            cache,
            cache_config,
            syncer: std::sync::Mutex::new(Some(syncer)),
        })))
    }

    /// Forgets usage for `keys`, in the store and in memory.
    pub fn reset_usage(&self, keys: Vec<crate::usage::UsageKey>) -> Result<(), ReloadError> {
        let syncer = self.syncer.lock().unwrap_or_else(|e| e.into_inner());
        match syncer.as_ref() {
            Some(s) => s.reset(keys).map_err(ReloadError::Store),
            None => Err(ReloadError::Store("shutting down".into())),
        }
    }

    /// Final flush of usage to the store. Call once, after the drain.
    pub fn flush_and_stop_store(&self) {
        let syncer = self.syncer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(s) = syncer {
            s.stop();
        }
    }

    /// The current config and routes, for the whole of one request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// The live runtime itself, for tasks that follow reloads.
    pub fn live(&self) -> LiveRuntime {
        self.runtime.clone()
    }

    /// Swaps in a new validated config; requests in flight keep the old one.
    pub fn replace_config(&self, config: Config) {
        let runtime = Runtime::build(
            config,
            &self.ledger,
            &self.health,
            &self.metrics,
            &self.client_book,
        );
        self.runtime.store(Arc::new(runtime));
    }
}
