//! Hot reload: SIGHUP, a change to the config file, or a dashboard edit.
//!
//! Every path ends in [`AppState::apply_config`]: read the base config,
//! apply the overlay, validate, and only then swap the routing table
//! (`ArcSwap`). Requests in flight finish on the table they started with;
//! usage and health live in ledgers keyed by name, so keys that remain keep
//! theirs. An invalid config is rejected whole, logged, and shown in the
//! dashboard; the old one stays. What changed is logged without secrets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::app::AppState;
use crate::config::overlay::{self, Overlay};
use crate::config::{Config, ConfigError, Problem};
use crate::metrics::OutcomeLabels;

/// Where the base config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// Built in memory (the demo): edits apply, but are not persisted.
    Fixed(Box<Config>),
}

impl ConfigSource {
    pub fn overlay_path(&self) -> Option<PathBuf> {
        match self {
            Self::File(p) => Some(overlay::path_for(p)),
            Self::Fixed(_) => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Fixed(_) => "built-in".into(),
        }
    }

    fn read_base(&self) -> Result<Config, ConfigError> {
        match self {
            Self::File(p) => Config::read(p),
            Self::Fixed(c) => Ok((**c).clone()),
        }
    }

    fn fail(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError {
            file: PathBuf::from(self.describe()),
            problems,
        }
    }

    /// Base config plus overlay, validated: (as edited, as routed).
    pub fn load(&self, overlay: &Overlay) -> Result<Effective, ConfigError> {
        let applied = overlay.apply(self.read_base()?);
        let routable = overlay.routable(&applied);
        let problems = routable.validate();
        if problems.is_empty() {
            Ok(Effective { applied, routable })
        } else {
            Err(self.fail(problems))
        }
    }

    pub fn load_overlay(&self) -> Result<Overlay, ConfigError> {
        match self.overlay_path() {
            Some(p) => Overlay::load(&p)
                .map_err(|e| self.fail(vec![Problem::new("overlay", format!("{e:#}"))])),
            None => Ok(Overlay::default()),
        }
    }
}

/// A loaded config: with disabled entries (for the dashboard) and without
/// them (for routing).
#[derive(Debug, Clone)]
pub struct Effective {
    pub applied: Config,
    pub routable: Config,
}

/// What the dashboard shows about reloads.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub last_error: Option<String>,
    #[serde(with = "unix_secs")]
    pub loaded_at: SystemTime,
}

mod unix_secs {
    pub fn serialize<S: serde::Serializer>(
        t: &std::time::SystemTime,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }
}

/// The config as edited, its overlay, and reload status.
#[derive(Debug, Clone)]
pub struct ConfigState {
    pub applied: Arc<Config>,
    pub overlay: Overlay,
    pub status: ReloadStatus,
}

impl ConfigState {
    pub fn new(effective: &Effective, overlay: Overlay) -> Self {
        Self {
            applied: Arc::new(effective.applied.clone()),
            overlay,
            status: ReloadStatus {
                reloads: 0,
                last_error: None,
                loaded_at: SystemTime::now(),
            },
        }
    }
}

impl AppState {
    /// Re-reads the config (and overlay) and swaps it in if valid.
    pub fn reload(&self, trigger: &'static str) -> Result<Vec<String>, String> {
        let overlay = self.source.load_overlay().map_err(|e| e.to_string());
        let result = overlay.and_then(|o| self.apply_config(o, trigger));
        if let Err(e) = &result {
            self.record_reload_error(trigger, e);
        }
        result
    }

    /// Validates `overlay` over the base config, swaps it in, and returns
    /// what changed. The caller persists the overlay if it wants to.
    fn apply_config(&self, overlay: Overlay, trigger: &'static str) -> Result<Vec<String>, String> {
        let effective = self.source.load(&overlay).map_err(|e| e.to_string())?;
        let before = self.config_state();
        let mut changes = describe_changes(&before.applied, &effective.applied);
        changes.extend(describe_toggles(&before.overlay, &overlay));
        self.replace_config(effective.routable.clone());
        {
            let mut state = self.config_state.lock().unwrap_or_else(|e| e.into_inner());
            state.applied = Arc::new(effective.applied);
            state.overlay = overlay;
            state.status.reloads += 1;
            state.status.last_error = None;
            state.status.loaded_at = SystemTime::now();
        }
        self.metrics
            .reloads
            .get_or_create(&OutcomeLabels { outcome: "ok" })
            .inc();
        tracing::info!(trigger, changes = ?changes, "config reloaded");
        Ok(changes)
    }

    fn record_reload_error(&self, trigger: &'static str, error: &str) {
        self.metrics
            .reloads
            .get_or_create(&OutcomeLabels {
                outcome: "rejected",
            })
            .inc();
        tracing::error!(
            trigger,
            error,
            "config reload rejected; the previous config stays in force"
        );
        self.config_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status
            .last_error = Some(error.to_string());
    }

    /// Applies a dashboard edit: change a copy of the overlay, validate,
    /// persist it, swap. Edits are serialized so none is lost.
    pub async fn edit(
        &self,
        change: impl FnOnce(&mut Overlay, &Config) -> Result<(), String>,
    ) -> Result<Vec<String>, String> {
        let _one_at_a_time = self.edit_lock.lock().await;
        let state = self.config_state();
        let mut overlay = state.overlay.clone();
        change(&mut overlay, &state.applied)?;
        // Validate before persisting: a rejected edit leaves no trace.
        self.source.load(&overlay).map_err(|e| e.to_string())?;
        if let Some(path) = self.source.overlay_path() {
            let o = overlay.clone();
            tokio::task::spawn_blocking(move || o.save(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot write the overlay file: {e:#}"))?;
        }
        self.apply_config(overlay, "dashboard")
    }

    pub fn config_state(&self) -> ConfigState {
        self.config_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Reloads on SIGHUP until the process exits.
pub async fn on_sighup(app: AppState) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = app.reload("sighup");
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

/// A hash of the file's contents, or `None` if it cannot be read.
pub fn file_fingerprint(path: &std::path::Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| sha256(&b))
}

/// Polls the config file and reloads when its contents change. Polling (not
/// inotify) also sees the symlink swaps Kubernetes ConfigMaps use. `loaded`
/// is the fingerprint taken *before* the running config was read, so a change
/// made while starting up is not missed.
pub async fn watch_file(app: AppState, path: PathBuf, every: Duration, loaded: Option<[u8; 32]>) {
    let mut last = loaded;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = file_fingerprint(&path);
        if now.is_some() && now != last {
            last = now;
            let _ = app.reload("file_change");
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The items of `a` that are not in `b`.
fn missing_from<'a, T: PartialEq>(a: &'a [T], b: &'a [T]) -> impl Iterator<Item = &'a T> {
    a.iter().filter(move |x| !b.contains(x))
}

/// Entries the dashboard disabled or enabled.
fn describe_toggles(old: &Overlay, new: &Overlay) -> Vec<String> {
    let (was, now) = (&old.disabled_models, &new.disabled_models);
    let models = missing_from(now, was)
        .map(|m| (m, "disabled"))
        .chain(missing_from(was, now).map(|m| (m, "enabled")))
        .map(|(m, what)| format!("group {:?}: {}/{} {what}", m.group, m.provider, m.model));
    let (was, now) = (&old.disabled_keys, &new.disabled_keys);
    let keys = missing_from(now, was)
        .map(|k| (k, "disabled"))
        .chain(missing_from(was, now).map(|k| (k, "enabled")))
        .map(|(k, what)| format!("provider {:?} key {} {what}", k.provider, k.fingerprint));
    models.chain(keys).collect()
}

/// A secret-free summary of what differs between two configs.
pub fn describe_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for g in &new.groups {
        match old.groups.iter().find(|o| o.name == g.name) {
            None => out.push(format!("group {:?} added", g.name)),
            Some(o) if o.models != g.models => {
                let models: Vec<String> = g
                    .models
                    .iter()
                    .map(|m| format!("{}/{} w{}", m.provider, m.name, m.weight))
                    .collect();
                out.push(format!("group {:?} now {}", g.name, models.join(", ")));
            }
            Some(_) => {}
        }
    }
    for o in &old.groups {
        if !new.groups.iter().any(|g| g.name == o.name) {
            out.push(format!("group {:?} removed", o.name));
        }
    }
    for p in &new.providers {
        let fps = |keys: &[crate::config::Secret]| -> Vec<String> {
            keys.iter().map(|k| k.fingerprint()).collect()
        };
        match old.providers.iter().find(|o| o.name == p.name) {
            None => out.push(format!(
                "provider {:?} added with {} keys",
                p.name,
                p.api_keys.len()
            )),
            Some(o) => {
                if o.base_url != p.base_url {
                    out.push(format!("provider {:?} base_url changed", p.name));
                }
                let (before, after) = (fps(&o.api_keys), fps(&p.api_keys));
                for fp in missing_from(&after, &before) {
                    out.push(format!("provider {:?} key {fp} added", p.name));
                }
                for fp in missing_from(&before, &after) {
                    out.push(format!("provider {:?} key {fp} removed", p.name));
                }
                if o.health_check != p.health_check {
                    out.push(format!("provider {:?} health_check changed", p.name));
                }
            }
        }
    }
    for o in &old.providers {
        if !new.providers.iter().any(|p| p.name == o.name) {
            out.push(format!("provider {:?} removed", o.name));
        }
    }
    let restart_only = [
        ("host", old.host != new.host),
        ("port", old.port != new.port),
        ("cors", old.cors != new.cors),
        ("store", old.store != new.store),
        ("admin_listen", old.admin_listen != new.admin_listen),
        ("usage_window", old.usage_window != new.usage_window),
        (
            "timeouts.connect",
            old.timeouts.connect != new.timeouts.connect,
        ),
        ("timeouts.drain", old.timeouts.drain != new.timeouts.drain),
        (
            "timeouts.header_read",
            old.timeouts.header_read != new.timeouts.header_read,
        ),
    ];
    for (name, changed) in restart_only {
        if changed {
            out.push(format!("{name} changed: takes effect after a restart"));
        }
    }
    for (name, changed) in [
        ("api_key", old.api_key != new.api_key),
        ("admin_key", old.admin_key != new.admin_key),
        (
            "penalties",
            (old.error_penalty, old.request_penalty) != (new.error_penalty, new.request_penalty),
        ),
        (
            "timeouts",
            (
                old.timeouts.first_byte,
                old.timeouts.idle,
                old.timeouts.total,
            ) != (
                new.timeouts.first_byte,
                new.timeouts.idle,
                new.timeouts.total,
            ),
        ),
        ("retries", old.retries != new.retries),
        ("cooldown", old.cooldown != new.cooldown),
        ("max_body_bytes", old.max_body_bytes != new.max_body_bytes),
    ] {
        if changed {
            out.push(format!("{name} changed"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::overlay::{KeyRef, ModelRef};

    #[test]
    fn toggles_name_what_was_disabled_and_enabled() {
        let m = |model: &str| ModelRef {
            group: "g".into(),
            provider: "p".into(),
            model: model.into(),
        };
        let k = |fp: &str| KeyRef {
            provider: "p".into(),
            fingerprint: fp.into(),
        };
        let old = Overlay {
            disabled_models: vec![m("a")],
            disabled_keys: vec![k("f1")],
            ..Overlay::default()
        };
        let new = Overlay {
            disabled_models: vec![m("b")],
            disabled_keys: vec![k("f1"), k("f2")],
            ..Overlay::default()
        };
        assert_eq!(
            describe_toggles(&old, &new),
            [
                "group \"g\": p/b disabled",
                "group \"g\": p/a enabled",
                "provider \"p\" key f2 disabled",
            ]
        );
    }
}
