//! Where a config comes from, and the two forms one takes once loaded.
//!
//! The base config is a file (or, for the demo, a config built in memory);
//! the dashboard's edits live in an overlay beside it. Loading applies the
//! overlay, validates, and yields the config as edited (for the dashboard)
//! and as routed (disabled entries left out).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use super::overlay::{self, Overlay};
use super::{Config, ConfigError, Problem};

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
        let mut config = match self {
            Self::File(p) => Config::read(p)?,
            Self::Fixed(c) => (**c).clone(),
        };
        let dir = match self {
            Self::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            Self::Fixed(_) => PathBuf::from("."),
        };
        config
            .read_prices_file(&dir)
            .map_err(|p| self.fail(vec![p]))?;
        config.resolve_tls_paths(&dir);
        Ok(config)
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
    /// [`ReloadError::code`] of `last_error`.
    pub last_error_code: Option<&'static str>,
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
                last_error_code: None,
                loaded_at: SystemTime::now(),
            },
        }
    }
}

/// Why a reload or a dashboard edit did not take effect. The running config
/// stays in force either way.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config, with the overlay applied, is not valid.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// A dashboard edit that makes no sense for this config.
    #[error("{0}")]
    BadEdit(String),
    /// The edit is valid, but the overlay file could not be written.
    #[error("cannot write the overlay file: {0}")]
    OverlayNotWritable(String),
    /// The usage store did not carry out a reset.
    #[error("usage store: {0}")]
    Store(String),
}

impl ReloadError {
    /// A stable, low-cardinality name: the `outcome` of
    /// `config_reloads_total`, the log's `error_code`, the dashboard's.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_config",
            Self::BadEdit(_) => "invalid_edit",
            Self::OverlayNotWritable(_) => "overlay_not_writable",
            Self::Store(_) => "store_unavailable",
        }
    }
}
