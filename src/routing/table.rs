//! The routing table: groups, providers, keys and candidates.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;

use super::health::{Health, Now};
use super::select::{self, View};
use crate::config::prices::PriceTable;
use crate::config::{Config, ProviderType};
use crate::metrics::{CandidateMetrics, GroupLabels, Metrics};
use crate::payload::{Api, Endpoint};
use crate::usage::cost::Price;
use crate::usage::{Ledger, UsageCell, UsageKey};

/// Upstream URIs by endpoint (see [`Endpoint::ALL`]); `None` where the
/// provider does not serve it.
pub type EndpointUris = [Option<http::Uri>; Endpoint::ALL.len()];

/// One upstream provider from the config.
#[derive(Debug)]
pub struct Provider {
    pub name: Arc<str>,
    /// The API it speaks.
    pub kind: ProviderType,
    /// `base_url` without a trailing slash.
    pub base_url: String,
    /// The upstream URI of each endpoint, parsed once. (Azure deployment
    /// URLs name the model: those are per candidate.)
    endpoint_uris: Arc<EndpointUris>,
    /// Azure's `api_version`, when set.
    pub api_version: Option<String>,
    /// Anthropic: `max_tokens` for translated requests that set none.
    pub default_max_tokens: u64,
    /// Anthropic: `anthropic-version` when the client sent none.
    pub anthropic_version: HeaderValue,
    /// Prices typed into the config for this provider's models.
    prices: std::collections::BTreeMap<String, Price>,
    pub keys: Vec<Arc<ProviderKey>>,
    /// Provider-wide health, set by active health checks.
    pub health: Arc<Health>,
    pub health_check: Option<crate::config::HealthCheck>,
    /// Extra headers for every request to this provider.
    pub headers: http::HeaderMap,
    /// Request shaping for providers that need it.
    pub shaping: crate::payload::Shaping,
    /// Whether `provider/model` may address it directly.
    pub direct: bool,
}

impl Provider {
    /// The upstream URI for a path such as `/models`: `base_url` + `path`,
    /// normalised as a URL (punycode hosts, percent-encoding) first. `None`
    /// only for a base URL that validation would have refused. Azure's
    /// `/models` is under its API root.
    pub fn uri(&self, path: &str) -> Option<http::Uri> {
        match (self.kind, &self.api_version) {
            (ProviderType::Azure, None) => join_uri(&self.base_url, &format!("/openai/v1{path}")),
            (ProviderType::Azure, Some(v)) => {
                join_uri(&self.base_url, &format!("/openai{path}?api-version={v}"))
            }
            _ => join_uri(&self.base_url, path),
        }
    }

    /// The upstream URI of an endpoint (a cheap, reference-counted clone).
    pub fn endpoint_uri(&self, endpoint: Endpoint) -> Option<&http::Uri> {
        self.endpoint_uris[endpoint as usize].as_ref()
    }

    /// The API this provider speaks.
    pub fn api(&self) -> Api {
        match self.kind {
            ProviderType::Anthropic => Api::Anthropic,
            ProviderType::Openai | ProviderType::Azure => Api::OpenAi,
        }
    }

    /// The price of `model` here: the provider's own, else the prices file
    /// under the model's name, `{type}/{model}` or `{provider}/{model}`.
    fn price(&self, model: &str, table: &PriceTable) -> Option<Price> {
        let explicit = self.prices.get(model).copied();
        crate::config::prices::lookup(explicit, table, self.kind.name(), &self.name, model)
    }

    /// Each endpoint's URI for `model` on this provider.
    fn uris_for(&self, model: &str) -> Arc<EndpointUris> {
        match (self.kind, &self.api_version) {
            (ProviderType::Azure, Some(version)) => {
                let deployment: String =
                    url::form_urlencoded::byte_serialize(model.as_bytes()).collect();
                Arc::new(Endpoint::ALL.map(|e| {
                    let path = match e {
                        Endpoint::ChatCompletions
                        | Endpoint::Completions
                        | Endpoint::Embeddings => {
                            format!("/openai/deployments/{deployment}{}", e.path())
                        }
                        Endpoint::Responses => "/openai/responses".to_string(),
                        Endpoint::Messages | Endpoint::CountTokens => return None,
                    };
                    join_uri(&self.base_url, &format!("{path}?api-version={version}"))
                }))
            }
            _ => self.endpoint_uris.clone(),
        }
    }
}

/// The endpoints a provider serves itself, and where, for those whose URIs
/// do not depend on the model.
fn provider_uris(kind: ProviderType, base_url: &str) -> EndpointUris {
    Endpoint::ALL.map(|e| {
        let own = match kind {
            ProviderType::Anthropic => e.api() == Api::Anthropic,
            ProviderType::Openai | ProviderType::Azure => e.api() == Api::OpenAi,
        };
        if !own {
            return None;
        }
        match kind {
            ProviderType::Azure => join_uri(base_url, &format!("/openai/v1{}", e.path())),
            _ => join_uri(base_url, e.path()),
        }
    })
}

/// `base` + `path` as a URI, normalised as a URL first.
fn join_uri(base: &str, path: &str) -> Option<http::Uri> {
    let url = url::Url::parse(&format!("{base}{path}")).ok()?;
    http::Uri::try_from(url.as_str()).ok()
}

/// One provider API key. Its value exists only inside `auth`, a header
/// value marked sensitive; everything else names it by `alias`
/// (`openai#0`) or `fingerprint`.
pub struct ProviderKey {
    pub alias: Arc<str>,
    pub fingerprint: Arc<str>,
    /// The header that carries the key, as its provider type wants it:
    /// `Authorization: Bearer` (OpenAI), `x-api-key` (Anthropic),
    /// `api-key` (Azure).
    pub auth: (http::HeaderName, HeaderValue),
    /// Key-wide health (a 401 or 403 means the whole key is bad).
    pub health: Arc<Health>,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("alias", &self.alias)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// One way to serve a group: a model on a provider, through one key.
#[derive(Debug)]
pub struct Candidate {
    pub provider: Arc<Provider>,
    pub key: Arc<ProviderKey>,
    /// The provider's model name.
    pub model: Arc<str>,
    /// Where each endpoint is, for this model (Azure deployment URLs name it).
    pub uris: Arc<EndpointUris>,
    /// `model` as a JSON string literal, ready to splice into a body.
    pub model_json: Bytes,
    pub weight: u64,
    /// What its tokens cost; `None` when no price is configured.
    pub price: Option<Price>,
    pub usage: Arc<UsageCell>,
    /// Health of this key on this model (rate limits, errors).
    pub health: Arc<Health>,
    pub metrics: CandidateMetrics,
}

impl Candidate {
    /// The upstream URI for `endpoint` (what the client asked, or its
    /// translation for this provider), if this candidate serves it.
    pub fn uri(&self, endpoint: Endpoint) -> Option<&http::Uri> {
        self.uris[endpoint as usize].as_ref()
    }

    fn view(&self) -> View {
        View {
            weight: self.weight,
            usage: self.usage.load(),
            ready_at: self
                .health
                .ready_at()
                .max(self.key.health.ready_at())
                .max(self.provider.health.ready_at()),
        }
    }
}

#[derive(Debug)]
pub struct Group {
    pub name: Arc<str>,
    pub candidates: Vec<Candidate>,
    pub failovers: prometheus_client::metrics::counter::Counter,
    /// The endpoints this group serves; `None` means all.
    pub endpoints: Option<Vec<Endpoint>>,
    /// How long its answers are cached; `None`: not cached.
    pub cache_ttl: Option<std::time::Duration>,
}

impl Group {
    /// The best candidate not yet tried, by the rules in [`select`].
    pub fn pick(&self, tried: &[usize], now: u64) -> Option<usize> {
        select::pick(self.candidates.iter().map(Candidate::view), tried, now)
    }

    pub fn serves(&self, endpoint: Endpoint) -> bool {
        self.endpoints
            .as_ref()
            .is_none_or(|e| e.contains(&endpoint))
    }

    /// Whether any candidate is usable right now.
    pub fn any_ready(&self, now: u64) -> bool {
        self.candidates.iter().any(|c| c.view().ready_at <= now)
    }
}

/// Names a health cell: provider, key fingerprint, and model (`None` for
/// the key as a whole).
pub type HealthKey = (Arc<str>, Arc<str>, Option<Arc<str>>);

/// Health cells by name, shared across config reloads like the usage ledger.
#[derive(Default)]
pub struct HealthBook {
    cells: Mutex<HashMap<HealthKey, Arc<Health>>>,
}

impl HealthBook {
    /// Health of a key (`model: None`) or of a key on one model.
    pub fn cell(
        &self,
        provider: &Arc<str>,
        fingerprint: &Arc<str>,
        model: Option<&Arc<str>>,
    ) -> Arc<Health> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .entry((provider.clone(), fingerprint.clone(), model.cloned()))
            .or_default()
            .clone()
    }

    /// Every cell's cooldown end (Unix ms; 0 if not cooling), to share.
    pub fn cooldowns(&self, now: Now) -> Vec<(HealthKey, u64)> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .iter()
            .map(|(k, h)| (k.clone(), h.cooldown_until_unix_ms(now)))
            .collect()
    }

    /// Applies cooldowns other instances reported, to cells this instance
    /// has (a key or model it does not route to is none of its business).
    pub fn apply_cooldowns(&self, theirs: &[(HealthKey, u64)], now: Now) {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        for (k, until) in theirs {
            if let Some(h) = cells.get(k) {
                h.extend_to_unix_ms(*until, now);
            }
        }
    }
}

/// `max_tokens` for requests translated to Anthropic that set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// `anthropic-version` when neither the client nor the config gives one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The header that carries a provider key, marked sensitive so it is
/// never printed.
fn auth_header(kind: ProviderType, key: &str) -> (http::HeaderName, HeaderValue) {
    let (name, value) = match kind {
        ProviderType::Openai => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        ProviderType::Anthropic => (http::HeaderName::from_static("x-api-key"), key.to_string()),
        ProviderType::Azure => (http::HeaderName::from_static("api-key"), key.to_string()),
    };
    let mut value =
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("invalid-key"));
    value.set_sensitive(true);
    (name, value)
}

/// Most distinct `provider/model` names kept as direct groups.
const MAX_DIRECT_GROUPS: usize = 1024;

/// The immutable routing table for one config.
pub struct Routes {
    groups: HashMap<Box<str>, Arc<Group>>,
    aliases: HashMap<Box<str>, Arc<Group>>,
    /// Group names in config order, for `/v1/models`.
    pub group_order: Vec<Arc<str>>,
    pub alias_order: Vec<Arc<str>>,
    pub providers: Vec<Arc<Provider>>,
    /// `provider/model` groups, made on first use. Copy-on-write, so reads
    /// take no lock; new names are rare and bounded.
    direct: arc_swap::ArcSwap<HashMap<Box<str>, Arc<Group>>>,
    cells: Cells,
}

/// What building candidates needs, kept for direct groups made later.
struct Cells {
    ledger: Arc<Ledger>,
    health: Arc<HealthBook>,
    metrics: Arc<Metrics>,
    prices: Arc<PriceTable>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("groups", &self.groups)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// For tests: the table of a YAML config, which must be valid, with
    /// fresh usage, health and metrics.
    #[cfg(test)]
    pub fn from_yaml(yaml: &str) -> Self {
        let config = Config::parse(yaml, crate::config::Format::Yaml).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        Self::build(
            &config,
            &Arc::new(Ledger::new()),
            &Arc::new(HealthBook::default()),
            &Arc::new(Metrics::new()),
        )
    }

    /// Builds the table. `config` must be valid (see `Config::validate`).
    pub fn build(
        config: &Config,
        ledger: &Arc<Ledger>,
        health: &Arc<HealthBook>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let providers: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                let name: Arc<str> = p.name.as_str().into();
                let keys = p
                    .api_keys
                    .iter()
                    .enumerate()
                    .map(|(i, key)| {
                        let fingerprint: Arc<str> = key.fingerprint().into();
                        Arc::new(ProviderKey {
                            alias: format!("{}#{i}", p.name).into(),
                            health: health.cell(&name, &fingerprint, None),
                            fingerprint,
                            auth: auth_header(p.kind, key.expose()),
                        })
                    })
                    .collect();
                let mut headers = http::HeaderMap::new();
                for (k, v) in &p.headers {
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(&v.0),
                    ) {
                        headers.insert(k, v);
                    }
                }
                let base_url = p.base_url.trim_end_matches('/').to_string();
                Arc::new(Provider {
                    endpoint_uris: Arc::new(provider_uris(p.kind, &base_url)),
                    kind: p.kind,
                    api_version: p.api_version.clone(),
                    default_max_tokens: p.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
                    prices: p
                        .prices
                        .iter()
                        .map(|(m, price)| (m.clone(), (*price).into()))
                        .collect(),
                    anthropic_version: p
                        .anthropic_version
                        .as_deref()
                        .and_then(|v| HeaderValue::from_str(v).ok())
                        .unwrap_or(HeaderValue::from_static(ANTHROPIC_VERSION)),
                    base_url,
                    health: health.cell(&name, &Arc::from(""), None),
                    health_check: p.health_check.clone(),
                    headers,
                    shaping: crate::payload::Shaping {
                        role_rewrites: p
                            .role_rewrites
                            .iter()
                            .map(|(k, v)| (k.clone(), v.0.clone()))
                            .collect(),
                        drop_params: p.drop_params.clone(),
                    },
                    direct: p.direct,
                    name,
                    keys,
                })
            })
            .collect();

        let cells = Cells {
            ledger: ledger.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            prices: config.price_table.clone(),
        };
        let mut groups = HashMap::new();
        let mut group_order = Vec::new();
        let default_cache_ttl = config.cache.clone().unwrap_or_default().ttl;
        for g in &config.groups {
            let mut candidates = Vec::new();
            for m in &g.models {
                let Some(provider) = providers.iter().find(|p| *p.name == *m.provider) else {
                    continue; // unreachable for a validated config
                };
                candidates.extend(cells.candidates(
                    &g.name,
                    provider,
                    &m.name,
                    m.weight.max(0) as u64,
                ));
            }
            let endpoints = g.endpoints.as_ref().map(|names| {
                names
                    .iter()
                    .filter_map(|n| Endpoint::from_name(n))
                    .collect()
            });
            let cache_ttl = g
                .cache
                .as_ref()
                .and_then(|c| c.enabled())
                .map(|ttl| ttl.unwrap_or(default_cache_ttl));
            let group = cells.group(&g.name, candidates, endpoints, cache_ttl);
            group_order.push(group.name.clone());
            groups.insert(g.name.clone().into_boxed_str(), group);
        }
        let mut aliases = HashMap::new();
        let mut alias_order = Vec::new();
        for (alias, target) in &config.aliases {
            if let Some(group) = groups.get(target.0.as_str()) {
                aliases.insert(alias.clone().into_boxed_str(), group.clone());
                alias_order.push(Arc::from(alias.as_str()));
            }
        }
        Self {
            groups,
            aliases,
            group_order,
            alias_order,
            providers,
            direct: Default::default(),
            cells,
        }
    }

    /// A configured group by name (not aliases or direct names).
    pub fn group(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.get(name)
    }

    /// Every configured candidate once, in config order. A provider key and
    /// model serving several groups is one candidate per group but one
    /// usage cell: it is listed once, as its first group has it.
    pub fn distinct_candidates(&self) -> impl Iterator<Item = &Candidate> {
        let mut seen = HashSet::new();
        self.group_order
            .iter()
            .filter_map(|name| self.group(name))
            .flat_map(|g| g.candidates.iter())
            .filter(move |c| seen.insert(Arc::as_ptr(&c.usage)))
    }

    /// What a client's `model` names: a group, an alias of one, or a
    /// `provider/model` on a provider that allows direct addressing.
    pub fn resolve(&self, model: &str) -> Option<Arc<Group>> {
        if let Some(g) = self.groups.get(model).or_else(|| self.aliases.get(model)) {
            return Some(g.clone());
        }
        let (provider, name) = model.split_once('/')?;
        let provider = self
            .providers
            .iter()
            .find(|p| p.direct && *p.name == *provider)?;
        if name.is_empty() {
            return None;
        }
        if let Some(g) = self.direct.load().get(model) {
            return Some(g.clone());
        }
        let candidates = self.cells.candidates(model, provider, name, 1);
        let group = self.cells.group(model, candidates, None, None);
        self.direct.rcu(|map| {
            let mut map = HashMap::clone(map);
            if map.len() < MAX_DIRECT_GROUPS {
                map.insert(model.into(), group.clone());
            }
            map
        });
        Some(group)
    }
}

impl Cells {
    /// One candidate per key of `provider`, serving `model`.
    fn candidates(
        &self,
        group: &str,
        provider: &Arc<Provider>,
        model: &str,
        weight: u64,
    ) -> Vec<Candidate> {
        let model: Arc<str> = model.into();
        let model_json = Bytes::from(serde_json::to_vec(&*model).unwrap_or_default());
        provider
            .keys
            .iter()
            .map(|key| Candidate {
                provider: provider.clone(),
                key: key.clone(),
                uris: provider.uris_for(&model),
                price: provider.price(&model, &self.prices),
                model: model.clone(),
                model_json: model_json.clone(),
                weight,
                usage: self.ledger.cell(UsageKey {
                    provider: provider.name.clone(),
                    key_fingerprint: key.fingerprint.clone(),
                    model: model.clone(),
                }),
                health: self
                    .health
                    .cell(&provider.name, &key.fingerprint, Some(&model)),
                metrics: self
                    .metrics
                    .candidate(group, &provider.name, &key.alias, &model),
            })
            .collect()
    }

    fn group(
        &self,
        name: &str,
        candidates: Vec<Candidate>,
        endpoints: Option<Vec<Endpoint>>,
        cache_ttl: Option<std::time::Duration>,
    ) -> Arc<Group> {
        let failovers = self
            .metrics
            .failovers
            .get_or_create(&GroupLabels { group: name.into() })
            .clone();
        Arc::new(Group {
            name: name.into(),
            candidates,
            failovers,
            endpoints,
            cache_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::now_ms;

    fn routes(yaml: &str) -> Routes {
        Routes::from_yaml(yaml)
    }

    const TWO_KEYS: &str = "api_key: k\ngroups:\n  - name: g\n    models:\n      - {weight: 1, provider: p, name: m1}\n      - {weight: 2, provider: q, name: m2}\nproviders:\n  - {name: p, base_url: \"http://a/v1/\", api_keys: [ka, kb]}\n  - {name: q, base_url: \"http://b\", api_keys: [kc]}\n";

    #[test]
    fn candidates_are_model_by_key_in_config_order() {
        let r = routes(TWO_KEYS);
        let g = r.group("g").unwrap();
        let names: Vec<_> = g
            .candidates
            .iter()
            .map(|c| format!("{}/{}", c.key.alias, c.model))
            .collect();
        assert_eq!(names, ["p#0/m1", "p#1/m1", "q#0/m2"]);
        let provider = &g.candidates[0].provider;
        assert_eq!(
            provider.endpoint_uri(Endpoint::ChatCompletions).unwrap(),
            "http://a/v1/chat/completions"
        );
        assert_eq!(
            provider.endpoint_uri(Endpoint::Responses).unwrap(),
            "http://a/v1/responses"
        );
        assert_eq!(provider.uri("/models").unwrap(), "http://a/v1/models");
        assert_eq!(&g.candidates[2].model_json[..], b"\"m2\"");
    }

    #[test]
    fn azure_urls_name_the_deployment_and_the_api_version() {
        let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: az, name: my gpt}, {provider: v1, name: m}]\nproviders:\n  - {name: az, type: azure, base_url: \"https://r.openai.azure.com\", api_version: 2024-10-21, api_keys: [ka]}\n  - {name: v1, type: azure, base_url: \"https://s.openai.azure.com\", api_keys: [kb]}\n";
        let r = routes(yaml);
        let g = r.group("g").unwrap();
        let (az, v1) = (&g.candidates[0], &g.candidates[1]);
        assert_eq!(
            az.uri(Endpoint::ChatCompletions).unwrap(),
            "https://r.openai.azure.com/openai/deployments/my+gpt/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            az.uri(Endpoint::Embeddings).unwrap(),
            "https://r.openai.azure.com/openai/deployments/my+gpt/embeddings?api-version=2024-10-21"
        );
        assert_eq!(
            az.uri(Endpoint::Responses).unwrap(),
            "https://r.openai.azure.com/openai/responses?api-version=2024-10-21"
        );
        assert!(az.uri(Endpoint::Messages).is_none());
        assert_eq!(
            az.provider.uri("/models").unwrap(),
            "https://r.openai.azure.com/openai/models?api-version=2024-10-21"
        );
        // Without an api_version: Azure's v1 API, the model in the body.
        assert_eq!(
            v1.uri(Endpoint::ChatCompletions).unwrap(),
            "https://s.openai.azure.com/openai/v1/chat/completions"
        );
        assert!(v1.uri(Endpoint::Messages).is_none());
        assert_eq!(
            v1.provider.uri("/models").unwrap(),
            "https://s.openai.azure.com/openai/v1/models"
        );
    }

    #[test]
    fn reservations_make_consecutive_picks_alternate_keys() {
        let r = routes(TWO_KEYS);
        let g = r.group("g").unwrap();
        let mut held = Vec::new();
        let mut picks = Vec::new();
        for _ in 0..4 {
            let i = g.pick(&[], now_ms()).unwrap();
            held.push(g.candidates[i].usage.reserve(10));
            picks.push(i);
        }
        // Two weight-1 keys share the load; the weight-2 model waits its turn.
        assert_eq!(&picks[..2], &[0, 1]);
        assert!(picks.iter().filter(|&&i| i == 2).count() <= 1, "{picks:?}");
    }

    #[test]
    fn same_key_and_model_in_two_groups_share_one_usage_cell() {
        let yaml = "api_key: k\ngroups:\n  - name: a\n    models: [{provider: p, name: m}]\n  - name: b\n    models: [{provider: p, name: m}]\nproviders:\n  - {name: p, base_url: \"http://a\", api_keys: [ka]}\n";
        let r = routes(yaml);
        let a = &r.group("a").unwrap().candidates[0];
        let b = &r.group("b").unwrap().candidates[0];
        assert!(Arc::ptr_eq(&a.usage, &b.usage));
    }

    #[test]
    fn debug_output_never_contains_keys() {
        let r = routes(TWO_KEYS);
        let dump = format!("{r:?}");
        assert!(!dump.contains("\"ka\"") && !dump.contains("kb"), "{dump}");
        assert!(!dump.contains("Bearer"), "{dump}");
        // What it does show: the table, by name and alias.
        assert!(dump.starts_with("Routes {"), "{dump}");
        for shown in [
            "ProviderKey",
            "\"p#0\"",
            "\"p#1\"",
            "\"q#0\"",
            "m1",
            "fingerprint",
        ] {
            assert!(dump.contains(shown), "{shown} missing from {dump}");
        }
    }

    const DIRECT: &str = "api_key: k\ngroups:\n  - name: g\n    endpoints: [chat, embeddings]\n    models: [{provider: p, name: m}]\naliases: {fast: g}\nproviders:\n  - {name: p, base_url: \"http://a/v1\", api_keys: [ka, kb], direct: true}\n  - {name: q, base_url: \"http://b/v1\", api_keys: [kc]}\n";

    #[test]
    fn names_resolve_to_groups_aliases_and_direct_models() {
        let r = routes(DIRECT);
        let g = r.resolve("g").unwrap();
        assert!(Arc::ptr_eq(&g, r.group("g").unwrap()));
        assert!(Arc::ptr_eq(&r.resolve("fast").unwrap(), &g));
        assert!(r.group("fast").is_none());
        assert_eq!(r.alias_order, [Arc::<str>::from("fast")]);
        assert_eq!(r.group_order, [Arc::<str>::from("g")]);
        // `provider/model` on a provider that allows it: one candidate per key.
        let direct = r.resolve("p/other-model").unwrap();
        assert_eq!(&*direct.name, "p/other-model");
        let names: Vec<_> = direct
            .candidates
            .iter()
            .map(|c| format!("{}/{}", c.key.alias, c.model))
            .collect();
        assert_eq!(names, ["p#0/other-model", "p#1/other-model"]);
        assert!(direct.serves(Endpoint::Responses));
        // Made once, then found again.
        assert!(Arc::ptr_eq(&r.resolve("p/other-model").unwrap(), &direct));
        // Not for providers without `direct`, unknown ones, or empty names.
        assert!(r.resolve("q/m").is_none());
        assert!(r.resolve("nobody/m").is_none());
        assert!(r.resolve("p/").is_none());
        assert!(r.resolve("unknown").is_none());
    }

    #[test]
    fn direct_groups_are_bounded_but_still_served() {
        let r = routes(DIRECT);
        for i in 0..MAX_DIRECT_GROUPS + 5 {
            assert!(r.resolve(&format!("p/m{i}")).is_some());
        }
        assert_eq!(r.direct.load().len(), MAX_DIRECT_GROUPS);
        // Past the bound a name still resolves, just without being kept.
        let late = format!("p/m{}", MAX_DIRECT_GROUPS + 1);
        let a = r.resolve(&late).unwrap();
        let b = r.resolve(&late).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a.candidates[0].usage, &b.candidates[0].usage));
    }

    #[test]
    fn a_group_serves_only_its_endpoints() {
        let r = routes(DIRECT);
        let g = r.group("g").unwrap();
        assert!(g.serves(Endpoint::ChatCompletions));
        assert!(g.serves(Endpoint::Embeddings));
        assert!(!g.serves(Endpoint::Responses));
        assert!(!g.serves(Endpoint::Completions));
        let all = routes(TWO_KEYS);
        assert!(
            Endpoint::ALL
                .iter()
                .all(|e| all.group("g").unwrap().serves(*e))
        );
    }

    fn cool(h: &Health, now: u64, secs: u64) {
        h.failed(
            now,
            crate::routing::Reason::ServerError,
            Some(std::time::Duration::from_secs(secs)),
            &crate::config::Cooldown::default(),
        );
    }

    #[test]
    fn a_candidate_waits_for_its_pair_its_key_and_its_provider() {
        let r = routes(TWO_KEYS);
        let g = r.group("g").unwrap();
        let now = now_ms();
        assert!(g.any_ready(now));
        // The pair (p#0, m1) cools for 10 s: p#1 serves.
        cool(&g.candidates[0].health, now, 10);
        assert_eq!(g.pick(&[], now), Some(1));
        // Key p#1 as a whole cools for 20 s: q#0 serves.
        cool(&g.candidates[1].key.health, now, 20);
        assert_eq!(g.pick(&[], now), Some(2));
        // Provider q is marked down for 30 s: nothing is ready, and the
        // soonest back (p#0, after 10 s) is tried.
        g.candidates[2]
            .provider
            .health
            .set_down(now, Some(std::time::Duration::from_secs(30)));
        assert!(!g.any_ready(now));
        assert_eq!(g.pick(&[], now), Some(0));
        assert!(g.any_ready(now + 10_000));
        assert_eq!(g.pick(&[], now + 10_000), Some(0));
        assert_eq!(g.pick(&[0], now + 20_000), Some(1));
        assert_eq!(g.pick(&[0, 1], now + 30_000), Some(2));
    }

    #[test]
    fn distinct_candidates_list_each_usage_cell_once() {
        let yaml = "api_key: k\ngroups:\n  - name: a\n    models: [{provider: p, name: m}, {provider: p, name: n}]\n  - name: b\n    models: [{provider: p, name: m}]\nproviders:\n  - {name: p, base_url: \"http://a\", api_keys: [ka, kb]}\n";
        let r = routes(yaml);
        let listed: Vec<_> = r
            .distinct_candidates()
            .map(|c| format!("{}/{}", c.key.alias, c.model))
            .collect();
        assert_eq!(listed, ["p#0/m", "p#1/m", "p#0/n", "p#1/n"]);
    }

    #[test]
    fn health_cells_are_shared_by_name_and_trade_cooldowns() {
        let book = HealthBook::default();
        let (p, f, m): (Arc<str>, Arc<str>, Arc<str>) = ("p".into(), "f".into(), "m".into());
        let pair = book.cell(&p, &f, Some(&m));
        assert!(Arc::ptr_eq(&pair, &book.cell(&p, &f, Some(&m))));
        let key = book.cell(&p, &f, None);
        assert!(!Arc::ptr_eq(&pair, &key));
        let now = Now {
            mono_ms: 1_000,
            unix_ms: 1_700_000_000_000,
        };
        cool(&pair, 1_000, 5);
        let mut shared = book.cooldowns(now);
        shared.sort_by_key(|(k, _)| k.2.is_some());
        assert_eq!(
            shared,
            [
                ((p.clone(), f.clone(), None), 0),
                ((p.clone(), f.clone(), Some(m.clone())), 1_700_000_005_000)
            ]
        );
        // A peer's cooldown reaches the named cell, and nothing else.
        let theirs = [
            ((p.clone(), f.clone(), None), 1_700_000_030_000),
            ((p.clone(), "unknown".into(), None), 1_700_000_030_000),
        ];
        book.apply_cooldowns(&theirs, now);
        assert_eq!(key.ready_at(), 31_000);
        assert_eq!(pair.ready_at(), 6_000);
        assert_eq!(book.cooldowns(now).len(), 2);
    }

    #[test]
    fn provider_headers_and_shaping_come_from_config() {
        let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: p, name: m}]\nproviders:\n  - name: p\n    base_url: \"http://a/v1\"\n    api_keys: [ka]\n    headers: {X-Title: demo}\n    role_rewrites: {developer: system}\n    drop_params: [seed]\n";
        let r = routes(yaml);
        let p = &r.providers[0];
        assert_eq!(p.headers["x-title"], "demo");
        assert_eq!(
            p.shaping.role_rewrites,
            [("developer".to_string(), "system".to_string())]
        );
        assert_eq!(p.shaping.drop_params, ["seed"]);
        assert_eq!(p.base_url, "http://a/v1");
        let key = &p.keys[0];
        assert_eq!(&*key.alias, "p#0");
        assert_eq!(key.auth.0, "authorization");
        assert_eq!(key.auth.1, "Bearer ka");
        assert!(key.auth.1.is_sensitive());
        assert_eq!(
            &*key.fingerprint,
            &*crate::config::Secret::new("ka").fingerprint()
        );
    }
}
