//! One pass over a parsed config that collects every problem, each with the
//! path of the offending value, so `llm-router check` can list them all.

use std::collections::HashSet;
use std::fmt;

use super::{Config, ProviderType};

/// One thing wrong with a config: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the document, e.g. `groups[1].models[0].provider`.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub fn at_optional_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |path: String, message: String| problems.push(Problem::new(path, message));

    match &config.api_key {
        None if config.client_keys.is_empty() => push(
            "api_key".into(),
            "missing: clients must authenticate; set api_key (for example \"${LLM_ROUTER_API_KEY}\") or client_keys"
                .into(),
        ),
        Some(key) if key.is_empty() => push("api_key".into(), "must not be empty".into()),
        _ => {}
    }
    let mut client_names = HashSet::new();
    for (i, c) in config.client_keys.iter().enumerate() {
        let at = format!("client_keys[{i}]");
        if let Some(why) = name_problem(&mut client_names, &c.name, "client") {
            push(format!("{at}.name"), why);
        }
        if c.key.is_empty() {
            push(format!("{at}.key"), "must not be empty".into());
        }
        let clashes = config.api_key.as_ref() == Some(&c.key)
            || config.admin_key.as_ref() == Some(&c.key)
            || config.client_keys[..i].iter().any(|o| o.key == c.key);
        if clashes && !c.key.is_empty() {
            push(
                format!("{at}.key"),
                "must differ from api_key, admin_key and other client keys".into(),
            );
        }
        for (g, name) in c.groups.iter().flatten().enumerate() {
            if !config.groups.iter().any(|x| x.name == *name) && !config.aliases.contains_key(name)
            {
                push(
                    format!("{at}.groups[{g}]"),
                    format!("unknown group {name:?}"),
                );
            }
        }
        if let Some(usd) = c.budget_usd
            && !(usd.is_finite() && usd > 0.0)
        {
            push(
                format!("{at}.budget_usd"),
                "must be a positive number of dollars".into(),
            );
        }
        if c.budget_window
            .is_some_and(|w| w < std::time::Duration::from_secs(60))
        {
            push(format!("{at}.budget_window"), "must be at least 1m".into());
        }
        if c.budget_window.is_some() && c.budget_usd.is_none() && c.budget_tokens.is_none() {
            push(
                format!("{at}.budget_window"),
                "renews a budget: set budget_usd or budget_tokens too".into(),
            );
        }
        for (field, value) in [("rpm", c.rpm), ("tpm", c.tpm)] {
            if value == Some(0) {
                push(
                    format!("{at}.{field}"),
                    "must be at least 1 (omit it for no limit)".into(),
                );
            }
        }
    }

    let mut provider_names = HashSet::new();
    for (i, provider) in config.providers.iter().enumerate() {
        let at = format!("providers[{i}]");
        if let Some(why) = name_problem(&mut provider_names, &provider.name, "provider") {
            push(format!("{at}.name"), why);
        }
        if let Err(why) = check_base_url(&provider.base_url) {
            push(format!("{at}.base_url"), why);
        }
        if provider.api_keys.is_empty() {
            push(
                format!("{at}.api_keys"),
                "must list at least one key".into(),
            );
        }
        let kind = provider.kind;
        let only = |field: &str, set: bool, for_kind: ProviderType| {
            (set && kind != for_kind).then(|| {
                (
                    format!("{at}.{field}"),
                    format!(
                        "applies only to providers of type {}; this one is {}",
                        for_kind.name(),
                        kind.name()
                    ),
                )
            })
        };
        for problem in [
            only(
                "default_max_tokens",
                provider.default_max_tokens.is_some(),
                ProviderType::Anthropic,
            ),
            only(
                "anthropic_version",
                provider.anthropic_version.is_some(),
                ProviderType::Anthropic,
            ),
            only(
                "api_version",
                provider.api_version.is_some(),
                ProviderType::Azure,
            ),
        ]
        .into_iter()
        .flatten()
        {
            push(problem.0, problem.1);
        }
        if provider.default_max_tokens == Some(0) {
            push(
                format!("{at}.default_max_tokens"),
                "must be at least 1".into(),
            );
        }
        for (field, value) in [
            ("anthropic_version", &provider.anthropic_version),
            ("api_version", &provider.api_version),
        ] {
            if value.as_ref().is_some_and(|v| {
                v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            }) {
                push(
                    format!("{at}.{field}"),
                    "must be a version like \"2024-10-21\" (letters, digits, '-', '.')".into(),
                );
            }
        }
        if let Some(hc) = &provider.health_check {
            if hc.interval < std::time::Duration::from_millis(100) {
                push(
                    format!("{at}.health_check.interval"),
                    "must be at least 100ms".into(),
                );
            }
            if !hc.path.starts_with('/') {
                push(
                    format!("{at}.health_check.path"),
                    "must start with '/'".into(),
                );
            }
        }
        for name in provider.headers.keys() {
            let lower = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                push(
                    format!("{at}.headers.{name}"),
                    "is not a valid header name".into(),
                );
            } else if [
                "authorization",
                "host",
                "content-length",
                "content-type",
                "transfer-encoding",
                "connection",
            ]
            .contains(&lower.as_str())
            {
                push(
                    format!("{at}.headers.{name}"),
                    "is set by the router and cannot be overridden".into(),
                );
            }
        }
        for (name, value) in &provider.headers {
            if http::HeaderValue::from_str(&value.0).is_err() {
                push(
                    format!("{at}.headers.{name}"),
                    "has characters not allowed in a header value".into(),
                );
            }
        }
        for (from, to) in &provider.role_rewrites {
            if from.is_empty() || to.0.is_empty() {
                push(
                    format!("{at}.role_rewrites"),
                    "roles must not be empty".into(),
                );
            }
        }
        for (i, param) in provider.drop_params.iter().enumerate() {
            if [
                "model",
                "stream",
                "stream_options",
                "messages",
                "input",
                "prompt",
            ]
            .contains(&param.as_str())
            {
                push(
                    format!("{at}.drop_params[{i}]"),
                    format!("{param:?} cannot be dropped"),
                );
            }
        }
        for (model, price) in &provider.prices {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(price.input) || !ok(price.output) || price.cached_input.is_some_and(|v| !ok(v)) {
                push(
                    format!("{at}.prices.{model}"),
                    "prices are USD per million tokens: numbers of 0 or more".into(),
                );
            }
        }
        for (k, key) in provider.api_keys.iter().enumerate() {
            if key.is_empty() {
                push(format!("{at}.api_keys[{k}]"), "must not be empty".into());
            }
        }
    }

    let mut group_names = HashSet::new();
    for (g, group) in config.groups.iter().enumerate() {
        let at = format!("groups[{g}]");
        if let Some(why) = name_problem(&mut group_names, &group.name, "group") {
            push(format!("{at}.name"), why);
        }
        if group.models.is_empty() {
            push(
                format!("{at}.models"),
                format!("group {:?} has no models", group.name),
            );
        }
        for (i, e) in group.endpoints.iter().flatten().enumerate() {
            if crate::payload::Endpoint::from_name(e).is_none() {
                push(
                    format!("{at}.endpoints[{i}]"),
                    format!(
                        "unknown endpoint {e:?}; use chat, completions, embeddings, responses, messages or count_tokens"
                    ),
                );
            }
        }
        for (m, model) in group.models.iter().enumerate() {
            let at = format!("{at}.models[{m}]");
            if model.weight < 0 {
                push(
                    format!("{at}.weight"),
                    format!("must be 0 or more, got {}", model.weight),
                );
            }
            if model.name.is_empty() {
                push(format!("{at}.name"), "must not be empty".into());
            }
            if !config.providers.iter().any(|p| p.name == model.provider) {
                push(
                    format!("{at}.provider"),
                    format!(
                        "unknown provider {:?}; define it under `providers`",
                        model.provider
                    ),
                );
            }
        }
    }

    for (alias, target) in &config.aliases {
        if config.groups.iter().any(|g| g.name == *alias) {
            push(format!("aliases.{alias}"), "is already a group name".into());
        }
        if !config.groups.iter().any(|g| g.name == target.0) {
            push(
                format!("aliases.{alias}"),
                format!("points to unknown group {:?}", target.0),
            );
        }
    }

    for (i, origin) in config.cors.allowed_origins.iter().enumerate() {
        if origin != "*" && !is_origin(origin) {
            push(
                format!("cors.allowed_origins[{i}]"),
                format!("{origin:?} is not an origin like \"https://app.example.com\" or \"*\""),
            );
        }
    }

    if let Err(why) = config.store_url() {
        push("store".into(), why);
    }
    if let Some(cache) = &config.cache {
        if let Some(store) = &cache.store
            && store != "memory"
            && !store.starts_with("redis://")
            && !store.starts_with("rediss://")
        {
            push(
                "cache.store".into(),
                "must be \"memory\" or \"redis://HOST:PORT/DB\"".into(),
            );
        }
        if cache.max_bytes < 64 * 1024 {
            push("cache.max_bytes".into(), "must be at least 64KiB".into());
        }
        if cache.ttl.is_zero() {
            push("cache.ttl".into(), "must be greater than 0".into());
        }
    }
    for (g, group) in config.groups.iter().enumerate() {
        if let Some(Some(ttl)) = group.cache.as_ref().and_then(|c| c.enabled())
            && ttl.is_zero()
        {
            push(
                format!("groups[{g}].cache.ttl"),
                "must be greater than 0".into(),
            );
        }
    }
    for (at, tls) in [("tls", &config.tls), ("admin_tls", &config.admin_tls)] {
        for (path, why) in tls.iter().flat_map(|t| t.problems(at)) {
            push(path, why);
        }
    }
    if config.admin_tls.is_some() && config.admin_listen.is_none() {
        push(
            "admin_tls".into(),
            "needs admin_listen (the admin routes are on the public listener, which uses tls)"
                .into(),
        );
    }
    if let Err(why) = config.trace_settings() {
        push("tracing".into(), why);
    }
    if let Err(why) = config.usage_window() {
        push("usage_window".into(), why);
    }
    match (&config.admin_key, &config.api_key) {
        (Some(admin), _) if admin.is_empty() => {
            push("admin_key".into(), "must not be empty".into())
        }
        (Some(admin), Some(client)) if admin == client => push(
            "admin_key".into(),
            "must differ from api_key: the client key must never open admin".into(),
        ),
        _ => {}
    }

    if let Some(addr) = &config.admin_listen
        && addr.parse::<std::net::SocketAddr>().is_err()
    {
        push(
            "admin_listen".into(),
            format!("{addr:?} is not an address like \"127.0.0.1:9091\""),
        );
    }
    if config.limits.max_event_bytes == 0 {
        push(
            "limits.max_event_bytes".into(),
            "must be greater than 0".into(),
        );
    }
    if config.limits.max_response_bytes == Some(0) {
        push(
            "limits.max_response_bytes".into(),
            "must be greater than 0 (leave it out for no limit)".into(),
        );
    }
    for (name, value) in [
        ("timeouts.request_body", config.timeouts.request_body),
        (
            "timeouts.request_body_idle",
            config.timeouts.request_body_idle,
        ),
    ] {
        if value.is_zero() {
            push(name.into(), "must be greater than 0".into());
        }
    }
    if config.max_body_bytes == 0 {
        push("max_body_bytes".into(), "must be greater than 0".into());
    }
    if config.retries.max_attempts == 0 {
        push("retries.max_attempts".into(), "must be at least 1".into());
    }
    let t = &config.timeouts;
    for (name, value) in [
        ("connect", t.connect),
        ("first_byte", t.first_byte),
        ("idle", t.idle),
        ("total", t.total),
        ("header_read", t.header_read),
    ] {
        if value.is_zero() {
            push(format!("timeouts.{name}"), "must be greater than 0".into());
        }
    }
    if config.cooldown.base > config.cooldown.max {
        push(
            "cooldown.base".into(),
            "must not be greater than cooldown.max".into(),
        );
    }
    problems
}

/// A name must be non-empty and unique among its kind (`seen` so far).
fn name_problem<'a>(seen: &mut HashSet<&'a str>, name: &'a str, kind: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".into())
    } else if !seen.insert(name) {
        Some(format!("duplicate {kind} name {name:?}"))
    } else {
        None
    }
}

fn check_base_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| {
        format!("{raw:?} is not a valid URL ({e}); use e.g. \"https://api.openai.com/v1\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{raw:?} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not embed credentials; put keys in api_keys".into());
    }
    Ok(())
}

fn is_origin(raw: &str) -> bool {
    url::Url::parse(raw).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && !raw.ends_with('/')
            && u.query().is_none()
    })
}
