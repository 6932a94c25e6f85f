//! Hot reload: SIGHUP, a change to the config file, or a dashboard edit.
//!
//! Every path ends in [`AppState::apply_config`]: read the base config,
//! apply the overlay, validate, and only then swap the routing table
//! (`ArcSwap`). Requests in flight finish on the table they started with;
//! usage and health live in ledgers keyed by name, so keys that remain keep
//! theirs. An invalid config is rejected whole, logged, and shown in the
//! dashboard; the old one stays. What changed is logged without secrets.

use std::sync::Arc;
use std::time::SystemTime;

use crate::app::AppState;
use crate::config::overlay::Overlay;
use crate::config::{Config, ConfigState, ReloadError};
use crate::metrics::OutcomeLabels;

impl AppState {
    /// Re-reads the config (and overlay) and swaps it in if valid.
    pub fn reload(&self, trigger: &'static str) -> Result<Vec<String>, ReloadError> {
        let result = self
            .source
            .load_overlay()
            .map_err(ReloadError::from)
            .and_then(|o| self.apply_config(o, trigger));
        if let Err(e) = &result {
            self.record_reload_error(trigger, e);
        }
        result
    }

    /// Validates `overlay` over the base config, swaps it in, and returns
    /// what changed. The caller persists the overlay if it wants to.
    fn apply_config(
        &self,
        overlay: Overlay,
        trigger: &'static str,
    ) -> Result<Vec<String>, ReloadError> {
        let effective = self.source.load(&overlay)?;
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
            state.status.last_error_code = None;
            state.status.loaded_at = SystemTime::now();
        }
        self.metrics
            .reloads
            .get_or_create(&OutcomeLabels { outcome: "ok" })
            .inc();
        tracing::info!(trigger, changes = ?changes, "config reloaded");
        Ok(changes)
    }

    fn record_reload_error(&self, trigger: &'static str, error: &ReloadError) {
        let code = error.code();
        self.metrics
            .reloads
            .get_or_create(&OutcomeLabels { outcome: code })
            .inc();
        let message = error.to_string();
        tracing::error!(
            trigger,
            error_code = code,
            error = &*message,
            "config reload rejected; the previous config stays in force"
        );
        let mut state = self.config_state.lock().unwrap_or_else(|e| e.into_inner());
        state.status.last_error = Some(message);
        state.status.last_error_code = Some(code);
    }

    /// Applies a dashboard edit: change a copy of the overlay, validate,
    /// persist it, swap. Edits are serialized so none is lost. A rejected
    /// edit leaves no trace: not on disk, and not as the last reload error.
    pub async fn edit(
        &self,
        change: impl FnOnce(&mut Overlay, &Config) -> Result<(), String>,
    ) -> Result<Vec<String>, ReloadError> {
        let _one_at_a_time = self.edit_lock.lock().await;
        let state = self.config_state();
        let mut overlay = state.overlay.clone();
        change(&mut overlay, &state.applied).map_err(ReloadError::BadEdit)?;
        self.source.load(&overlay)?;
        if let Some(path) = self.source.overlay_path() {
            let o = overlay.clone();
            tokio::task::spawn_blocking(move || o.save(&path))
                .await
                .map_err(|e| ReloadError::OverlayNotWritable(e.to_string()))?
                .map_err(|e| ReloadError::OverlayNotWritable(format!("{e:#}")))?;
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

/// A hash of the file's contents, or `None` if it cannot be read.
pub fn file_fingerprint(path: &std::path::Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| sha256(&b))
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
        ("tracing", old.tracing != new.tracing),
        ("tls", old.tls != new.tls),
        ("admin_tls", old.admin_tls != new.admin_tls),
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
