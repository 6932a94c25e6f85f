//! The config file: schema, loading and validation.
//!
//! The schema is the Go llm-router's (`port`, `api_key`, `groups`,
//! `providers`, `error_penalty`, `request_penalty`) plus our additions, each
//! with a default, so an existing Go config loads unchanged. Unknown keys are
//! errors. Loading is two steps: serde parses (and expands `${ENV}` inside
//! every string), then [`Config::validate`] collects *every* problem at once.
//! Code past [`Config::load`] never meets an invalid config.
//!
//! Secrets stay inside [`Secret`]; nothing in this module prints them.

mod env;
pub mod overlay;
pub mod prices;
mod secret;
mod size;
pub mod source;
mod store_url;
mod tls;
mod traces;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use env::expand as expand_env;
pub use secret::Secret;
pub use size::parse_size;
pub use source::{ConfigSource, ConfigState, Effective, ReloadError, ReloadStatus};
pub use store_url::StoreUrl;
pub use tls::TlsConfig;
pub use traces::TracingConfig;
pub use validate::Problem;

/// Default request body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_host", deserialize_with = "env::expanded_string")]
    pub host: String,
    /// The bearer token clients must present on `/v1/*`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Tokens added to a (key, model) pair's usage for each failed request.
    #[serde(default)]
    pub error_penalty: u64,
    /// Tokens added to a (key, model) pair's usage for each request.
    #[serde(default)]
    pub request_penalty: u64,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub cors: CorsConfig,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// What one request may cost the router in memory.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub retries: Retries,
    #[serde(default)]
    pub cooldown: Cooldown,
    /// `memory`, `sqlite://PATH` (the default) or `redis://...`;
    /// `LLM_ROUTER_STORE` overrides it.
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub store: Option<String>,
    /// `cumulative` (the default) or a rolling window such as `1m`, `1h`, `1d`.
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub usage_window: Option<String>,
    /// Bearer token for `/admin/*` and the dashboard; both are disabled without it.
    #[serde(default)]
    pub admin_key: Option<Secret>,
    /// Keys for individual clients, each with optional scopes and limits.
    #[serde(default)]
    pub client_keys: Vec<ClientKeyConfig>,
    /// Names clients may send as `model`, mapped to group names.
    #[serde(default)]
    pub aliases: std::collections::BTreeMap<String, EnvString>,
    /// Serve `/admin`, `/ui` and `/metrics` only on this address (e.g.
    /// `127.0.0.1:9091`) instead of the public listener.
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub admin_listen: Option<String>,
    /// LiteLLM's model price table (`model_prices_and_context_window.json`);
    /// a relative path is read beside the config file.
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub prices_file: Option<String>,
    /// The response cache; groups opt in with `groups[].cache`.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// HTTPS on the public listener (and on the admin one, unless
    /// `admin_tls` says otherwise).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// HTTPS on `admin_listen`, with its own certificate.
    #[serde(default)]
    pub admin_tls: Option<TlsConfig>,
    /// OpenTelemetry traces (off without an endpoint here or in `OTEL_*`).
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// What `prices_file` holds, once read (see [`Config::read_prices_file`]).
    #[serde(skip)]
    pub price_table: std::sync::Arc<prices::PriceTable>,
}

impl Config {
    /// The store to use: `LLM_ROUTER_STORE`, else `store`, else SQLite.
    pub fn store_url(&self) -> Result<StoreUrl, String> {
        let raw = std::env::var("LLM_ROUTER_STORE")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| self.store.clone())
            .unwrap_or_else(|| StoreUrl::DEFAULT.to_string());
        StoreUrl::parse(&raw)
    }

    /// The rolling usage window, or `None` for cumulative counting.
    pub fn usage_window(&self) -> Result<Option<Duration>, String> {
        match self.usage_window.as_deref().map(str::trim) {
            None | Some("cumulative") => Ok(None),
            Some(raw) => match humantime::parse_duration(raw) {
                Ok(d) if d >= Duration::from_secs(10) => Ok(Some(d)),
                Ok(_) => Err("must be at least 10s".into()),
                Err(e) => Err(format!(
                    "{raw:?} is neither \"cumulative\" nor a duration like \"1h\": {e}"
                )),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(deserialize_with = "env::expanded_string")]
    pub name: String,
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// Endpoints this group serves (`chat`, `completions`, `embeddings`,
    /// `responses`); all of them when omitted.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// Cache this group's answers: `true`, or `{ttl: 10m}`.
    #[serde(default)]
    pub cache: Option<GroupCache>,
}

/// A group's use of the response cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum GroupCache {
    On(bool),
    With(GroupCacheOptions),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCacheOptions {
    /// How long this group's entries live (the cache's `ttl` otherwise).
    #[serde(default, deserialize_with = "opt_duration")]
    pub ttl: Option<Duration>,
}

impl GroupCache {
    /// `None` when off; else the group's own TTL, if it sets one.
    pub fn enabled(&self) -> Option<Option<Duration>> {
        match self {
            Self::On(false) => None,
            Self::On(true) => Some(None),
            Self::With(o) => Some(o.ttl),
        }
    }
}

/// Where cached answers live, and how many.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `memory`, or `redis://…`; by default the usage store's Redis if it
    /// is one, else memory.
    #[serde(deserialize_with = "env::expanded_opt_string")]
    pub store: Option<String>,
    /// Most bytes the memory store holds; one entry at most 1/64 of it.
    #[serde(deserialize_with = "size::size")]
    pub max_bytes: u64,
    /// How long an entry lives, unless its group says otherwise.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// Clients share entries (by default each client key has its own).
    pub shared: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            store: None,
            max_bytes: 256 << 20,
            ttl: Duration::from_secs(3600),
            shared: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Higher weight means used less; 0 means "always prefer". Omitted means
    /// 0, as in the Go router. Signed so a negative value is reported by
    /// validation with its path rather than as a type error.
    #[serde(default)]
    pub weight: i64,
    #[serde(deserialize_with = "env::expanded_string")]
    pub provider: String,
    #[serde(deserialize_with = "env::expanded_string")]
    pub name: String,
}

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    /// OpenAI's API, or any compatible one (the default).
    #[default]
    Openai,
    /// Anthropic's Messages API: the router calls `{base_url}/messages`.
    Anthropic,
    /// Azure OpenAI: keys in `api-key`, deployment URLs with `api_version`.
    Azure,
}

impl ProviderType {
    /// OpenTelemetry's `gen_ai.provider.name` for it.
    pub fn gen_ai_name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Azure => "azure.ai.openai",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Azure => "azure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    #[serde(deserialize_with = "env::expanded_string")]
    pub name: String,
    /// `openai` (default), `anthropic` or `azure`.
    #[serde(default, rename = "type")]
    pub kind: ProviderType,
    #[serde(deserialize_with = "env::expanded_string")]
    pub base_url: String,
    /// Anthropic: `max_tokens` for translated requests that set none (the
    /// Messages API requires it). Default 4096.
    #[serde(default)]
    pub default_max_tokens: Option<u64>,
    /// Anthropic: the `anthropic-version` sent when the client sent none.
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub anthropic_version: Option<String>,
    /// Azure: with it, deployment URLs
    /// (`{base_url}/openai/deployments/{model}/...?api-version=...`);
    /// without it, the v1 API (`{base_url}/openai/v1/...`).
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub api_version: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Active health checks; off unless set.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Allow `provider/model` addressing, bypassing groups.
    #[serde(default)]
    pub direct: bool,
    /// Extra headers on every request to this provider (e.g. OpenRouter's
    /// `HTTP-Referer` and `X-Title`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, EnvString>,
    /// Role names to rewrite in `messages`, e.g. `developer: system`.
    #[serde(default)]
    pub role_rewrites: std::collections::BTreeMap<String, EnvString>,
    /// Top-level request parameters to remove before sending.
    #[serde(default)]
    pub drop_params: Vec<String>,
    /// Prices by this provider's model name, in USD per million tokens;
    /// they win over `prices_file`.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, prices::PriceConfig>,
}

/// One client's key, scope and limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKeyConfig {
    #[serde(deserialize_with = "env::expanded_string")]
    pub name: String,
    pub key: Secret,
    /// Groups (or aliases) this key may use; all when omitted.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Total tokens this key may ever use (persisted with usage).
    #[serde(default)]
    pub budget_tokens: Option<u64>,
    /// Dollars this key may spend (persisted with usage).
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// Budgets renew each window (`1d`, `30d`, …, aligned to the Unix
    /// epoch, so `1d` renews at midnight UTC); for all time without one.
    #[serde(default, deserialize_with = "opt_duration")]
    pub budget_window: Option<Duration>,
}

/// A string value with `${ENV}` expanded (for maps of strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        env::expanded_string(d).map(EnvString)
    }
}

/// `GET {base_url}{path}` every `interval` with one of the provider's keys;
/// a failure marks the whole provider down until a probe succeeds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "env::expanded_string")]
    pub path: String,
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            path: "/models".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins, or `"*"` for any origin (never with credentials).
    #[serde(
        default = "default_origins",
        deserialize_with = "env::expanded_strings"
    )]
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: default_origins(),
        }
    }
}

/// Upstream timeouts, as humantime strings (`"10s"`, `"2m"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(deserialize_with = "duration")]
    pub connect: Duration,
    /// Until the upstream's response headers arrive.
    #[serde(deserialize_with = "duration")]
    pub first_byte: Duration,
    /// Longest gap between body chunks (stream events).
    #[serde(deserialize_with = "duration")]
    pub idle: Duration,
    /// Whole request, failover included.
    #[serde(deserialize_with = "duration")]
    pub total: Duration,
    /// On shutdown, how long in-flight requests and streams may finish.
    #[serde(deserialize_with = "duration")]
    pub drain: Duration,
    /// How long a client may take to send its request head (slowloris guard).
    #[serde(deserialize_with = "duration")]
    pub header_read: Duration,
    /// How long a client may take to send its whole body, once the head is in.
    #[serde(deserialize_with = "duration")]
    pub request_body: Duration,
    /// Longest gap between two pieces of a client's body.
    #[serde(deserialize_with = "duration")]
    pub request_body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            total: Duration::from_secs(30 * 60),
            drain: Duration::from_secs(30),
            header_read: Duration::from_secs(10),
            request_body: Duration::from_secs(30),
            request_body_idle: Duration::from_secs(10),
        }
    }
}

/// Caps on what a provider's answer may cost the router, however it sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest single SSE event (`4MiB` by default); past it the stream
    /// ends with an error event.
    #[serde(deserialize_with = "size::size")]
    pub max_event_bytes: u64,
    /// Largest answer relayed (none by default); past it the answer is
    /// refused with a 502 before its first byte, or cut off after.
    #[serde(deserialize_with = "size::opt_size")]
    pub max_response_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 4 << 20,
            max_response_bytes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Upstream attempts per request, the first one included.
    pub max_attempts: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Self { max_attempts: 3 }
    }
}

/// Passive health: how long a failing key (or key and model) is skipped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cooldown {
    /// First cooldown; doubles with each consecutive failure.
    #[serde(deserialize_with = "duration")]
    pub base: Duration,
    #[serde(deserialize_with = "duration")]
    pub max: Duration,
}

impl Default for Cooldown {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5 * 60),
        }
    }
}

fn default_port() -> u16 {
    8080
}
fn default_host() -> String {
    "0.0.0.0".into()
}
fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_origins() -> Vec<String> {
    vec!["*".into()]
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = env::expanded_opt_string(d)? else {
        return Ok(None);
    };
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = env::expanded_string(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// Everything wrong with a config file, ready to show an operator.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The format of a config file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: path.to_owned(),
                problems,
            })
        }
    }

    /// Reads and parses a config file, without validating it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let fail = |problems| ConfigError {
            file: path.to_owned(),
            problems,
        };
        let format = Format::of(path).ok_or_else(|| {
            fail(vec![Problem::new(
                "",
                "unknown config format: use a .yaml, .yml or .json file",
            )])
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(vec![Problem::new("", format!("cannot read file: {e}"))]))?;
        Self::parse(&text, format).map_err(|p| fail(vec![p]))
    }

    /// Parses config text without validating it.
    pub fn parse(text: &str, format: Format) -> Result<Self, Problem> {
        match format {
            Format::Json => {
                let de = &mut serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    Problem::new(path, strip_position(&inner.to_string())).at_line(inner.line())
                })
            }
            Format::Yaml => {
                let mut path = String::new();
                // No snippet: it would echo config lines, and those can hold keys.
                let options = serde_saphyr::options! { with_snippet: false };
                serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
                    serde_path_to_error::deserialize(de).map_err(|e| {
                        path = e.path().to_string();
                        e.into_inner()
                    })
                })
                .map_err(|e| {
                    let line = e.location().map(|l| l.line() as usize);
                    let path = if path == "." { String::new() } else { path };
                    Problem::new(path, strip_position(&e.to_string())).at_optional_line(line)
                })
            }
        }
    }

    /// Every problem with this config; empty when it is valid.
    pub fn validate(&self) -> Vec<Problem> {
        validate::validate(self)
    }

    /// What is valid but likely a mistake: for `llm-router check` to show.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.has_prices() {
            for (g, group) in self.groups.iter().enumerate() {
                for (m, entry) in group.models.iter().enumerate() {
                    let priced = self
                        .providers
                        .iter()
                        .find(|p| p.name == entry.provider)
                        .is_none_or(|p| self.price(p, &entry.name).is_some());
                    if !priced {
                        out.push(Problem::new(
                            format!("groups[{g}].models[{m}]"),
                            format!(
                                "no price for model {:?} on provider {:?}: its requests will have no cost",
                                entry.name, entry.provider
                            ),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Reads `prices_file` (relative to `dir`) into [`Config::price_table`].
    pub fn read_prices_file(&mut self, dir: &Path) -> Result<(), Problem> {
        let Some(file) = &self.prices_file else {
            return Ok(());
        };
        let table = prices::read_prices_file(&dir.join(file))
            .map_err(|e| Problem::new("prices_file", e))?;
        self.price_table = std::sync::Arc::new(table);
        Ok(())
    }

    /// Makes the TLS files' relative paths relative to `dir`.
    pub fn resolve_tls_paths(&mut self, dir: &Path) {
        for tls in [&mut self.tls, &mut self.admin_tls].into_iter().flatten() {
            *tls = tls.resolved(dir);
        }
    }

    /// The admin listener's TLS: its own, or the public listener's.
    pub fn admin_tls(&self) -> Option<&TlsConfig> {
        self.admin_tls.as_ref().or(self.tls.as_ref())
    }

    /// A model's price on a provider (see [`prices::lookup`]).
    pub fn price(
        &self,
        provider: &ProviderConfig,
        model: &str,
    ) -> Option<crate::usage::cost::Price> {
        let explicit = provider.prices.get(model).map(|p| (*p).into());
        prices::lookup(
            explicit,
            &self.price_table,
            provider.kind.name(),
            &provider.name,
            model,
        )
    }

    /// Whether any price is configured (then models without one are worth a
    /// warning).
    pub fn has_prices(&self) -> bool {
        !self.price_table.is_empty() || self.providers.iter().any(|p| !p.prices.is_empty())
    }
}

/// Both parsers append " at line L, column C" (serde-saphyr with a comma,
/// serde_json without); we report the line ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
#[cfg(test)]
mod tests;
