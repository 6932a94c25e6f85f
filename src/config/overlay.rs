//! Dashboard edits, kept beside the config file and applied on top of it.
//!
//! The operator's file, with its comments and `${ENV}` references, is never
//! rewritten. Every edit made in the dashboard lands in
//! `<config stem>.overlay.json` next to it (mode 0600, since an added key
//! lives there), and is applied each time the config is loaded, so it
//! survives restarts and reloads. Entries that no longer match the base file
//! (a group or provider since removed) are skipped with a warning.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, ModelConfig, Secret};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<WeightOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_models: Vec<ModelRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_models: Vec<WeightOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_models: Vec<ModelRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_keys: Vec<KeyRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_keys: Vec<AddedKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_keys: Vec<KeyRef>,
}

/// A model entry in a group, named by provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub group: String,
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightOverride {
    pub group: String,
    pub provider: String,
    pub model: String,
    pub weight: i64,
}

/// A provider key, named by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub provider: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddedKey {
    pub provider: String,
    #[serde(serialize_with = "expose")]
    pub key: Secret,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl ModelRef {
    fn matches(&self, group: &str, m: &ModelConfig) -> bool {
        self.group == group && self.provider == m.provider && self.model == m.name
    }
}

/// Where the overlay for `config_path` lives: `config.yaml` → `config.overlay.json`.
pub fn path_for(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "config".into(), |s| s.to_string_lossy().into_owned());
    config_path.with_file_name(format!("{stem}.overlay.json"))
}

impl Overlay {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Writes atomically (temp file, then rename), readable by the owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self)?;
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn is_model_disabled(&self, group: &str, m: &ModelConfig) -> bool {
        self.disabled_models.iter().any(|r| r.matches(group, m))
    }

    pub fn is_key_disabled(&self, provider: &str, fingerprint: &str) -> bool {
        self.disabled_keys
            .iter()
            .any(|k| k.provider == provider && k.fingerprint == fingerprint)
    }

    /// The config with every edit applied, except disabled entries, which
    /// stay in the config (the dashboard shows them) but leave routing.
    pub fn apply(&self, mut config: Config) -> Config {
        for g in &mut config.groups {
            g.models
                .retain(|m| !self.removed_models.iter().any(|r| r.matches(&g.name, m)));
            for added in self.added_models.iter().filter(|a| a.group == g.name) {
                g.models.push(ModelConfig {
                    weight: added.weight,
                    provider: added.provider.clone(),
                    name: added.model.clone(),
                });
            }
            for m in &mut g.models {
                if let Some(w) = self
                    .weights
                    .iter()
                    .find(|w| w.group == g.name && w.provider == m.provider && w.model == m.name)
                {
                    m.weight = w.weight;
                }
            }
        }
        for p in &mut config.providers {
            p.api_keys.retain(|k| {
                let fp = k.fingerprint();
                !self
                    .removed_keys
                    .iter()
                    .any(|r| r.provider == p.name && r.fingerprint == fp)
            });
            for added in self.added_keys.iter().filter(|a| a.provider == p.name) {
                if !p.api_keys.contains(&added.key) {
                    p.api_keys.push(added.key.clone());
                }
            }
        }
        for (kind, missing) in self.dangling(&config) {
            tracing::warn!(kind, entry = %missing, "overlay entry no longer matches the config; ignored");
        }
        config
    }

    /// The config routing uses: `apply`, then disabled entries removed.
    pub fn routable(&self, config: &Config) -> Config {
        let mut c = config.clone();
        for g in &mut c.groups {
            let name = g.name.clone();
            g.models.retain(|m| !self.is_model_disabled(&name, m));
        }
        for p in &mut c.providers {
            let name = p.name.clone();
            p.api_keys
                .retain(|k| !self.is_key_disabled(&name, &k.fingerprint()));
        }
        c
    }

    fn dangling(&self, config: &Config) -> Vec<(&'static str, String)> {
        let has_group = |g: &str| config.groups.iter().any(|x| x.name == g);
        let has_provider = |p: &str| config.providers.iter().any(|x| x.name == p);
        let mut out = Vec::new();
        for w in self.weights.iter().chain(&self.added_models) {
            if !has_group(&w.group) {
                out.push(("group", w.group.clone()));
            }
        }
        for k in self
            .added_keys
            .iter()
            .map(|a| &a.provider)
            .chain(self.disabled_keys.iter().map(|k| &k.provider))
        {
            if !has_provider(k) {
                out.push(("provider", k.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;

    fn base() -> Config {
        let yaml = "api_key: k\ngroups:\n  - name: g\n    models:\n      - {weight: 1, provider: p, name: a}\n      - {weight: 1, provider: p, name: b}\nproviders:\n  - {name: p, base_url: \"http://x\", api_keys: [k1, k2]}\n";
        Config::parse(yaml, Format::Yaml).unwrap()
    }

    #[test]
    fn edits_apply_and_disabled_entries_leave_routing_only() {
        let k2 = Secret::new("k2").fingerprint();
        let o = Overlay {
            weights: vec![WeightOverride {
                group: "g".into(),
                provider: "p".into(),
                model: "a".into(),
                weight: 5,
            }],
            disabled_models: vec![ModelRef {
                group: "g".into(),
                provider: "p".into(),
                model: "b".into(),
            }],
            disabled_keys: vec![KeyRef {
                provider: "p".into(),
                fingerprint: k2,
            }],
            added_keys: vec![AddedKey {
                provider: "p".into(),
                key: Secret::new("k3"),
            }],
            ..Default::default()
        };
        let applied = o.apply(base());
        assert_eq!(applied.groups[0].models[0].weight, 5);
        assert_eq!(applied.groups[0].models.len(), 2);
        assert_eq!(applied.providers[0].api_keys.len(), 3);
        let routable = o.routable(&applied);
        assert_eq!(routable.groups[0].models.len(), 1);
        let keys: Vec<_> = routable.providers[0]
            .api_keys
            .iter()
            .map(|k| k.expose().to_string())
            .collect();
        assert_eq!(keys, ["k1", "k3"]);
    }

    #[test]
    fn the_overlay_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("config.yaml"));
        assert_eq!(path.file_name().unwrap(), "config.overlay.json");
        assert_eq!(Overlay::load(&path).unwrap(), Overlay::default());
        let o = Overlay {
            added_keys: vec![AddedKey {
                provider: "p".into(),
                key: Secret::new("sk-new"),
            }],
            ..Default::default()
        };
        o.save(&path).unwrap();
        assert_eq!(Overlay::load(&path).unwrap(), o);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
