//! Active health checks: probe each opted-in provider on its interval and
//! mark it up or down as a whole.
//!
//! [`Schedule`] decides which providers are due, from whatever routing
//! table is current when asked, so a config reload adds, drops or retimes
//! probes without any bookkeeping; [`probe`] runs one. The loop that ties
//! them together is a background task (`tasks`). A provider marked down
//! stays down until a probe succeeds (its cooldown is renewed past the
//! next probe); selection still falls back to it if everything else is
//! down too.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::{RequestBody, SendError, Upstream};
use crate::config::ProviderType;
use crate::routing::{Provider, Routes, now_ms};

/// When each provider's next probe is due.
#[derive(Debug, Default)]
pub struct Schedule {
    next_due: HashMap<Arc<str>, Instant>,
}

impl Schedule {
    /// The providers of `routes` whose probe is due at `now`; each is then
    /// scheduled one interval later. A provider seen for the first time is
    /// due at once.
    pub fn due(&mut self, routes: &Routes, now: Instant) -> Vec<Arc<Provider>> {
        let mut out = Vec::new();
        for provider in &routes.providers {
            let Some(check) = &provider.health_check else {
                continue;
            };
            let due = self.next_due.entry(provider.name.clone()).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + check.interval;
            out.push(provider.clone());
        }
        out
    }
}

/// One probe; updates the provider's health. `true` when it passed.
pub async fn probe(upstream: &Upstream, provider: &Provider) -> bool {
    let Some(check) = &provider.health_check else {
        return true;
    };
    let Some(key) = provider.keys.first() else {
        return false;
    };
    let result = match provider.uri(&check.path) {
        Some(uri) => {
            let mut request = http::Request::new(RequestBody::default());
            *request.uri_mut() = uri;
            let headers = request.headers_mut();
            headers.insert(key.auth.0.clone(), key.auth.1.clone());
            if provider.kind == ProviderType::Anthropic {
                headers.insert("anthropic-version", provider.anthropic_version.clone());
            }
            tokio::time::timeout(check.timeout, upstream.send(request))
                .await
                .unwrap_or(Err(SendError::ConnectTimeout))
        }
        None => Err(SendError::Invalid),
    };
    let ok = matches!(&result, Ok(r) if r.status().is_success());
    let now = now_ms();
    if ok {
        if provider.health.state(now).cooling_down {
            tracing::info!(provider = %provider.name, "health check passed: provider is up");
        }
        provider.health.set_down(now, None);
    } else {
        let detail = match &result {
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(SendError::ConnectTimeout) => "timeout".into(),
            Err(_) => "unreachable".into(),
        };
        tracing::warn!(provider = %provider.name, detail, "health check failed: provider is down");
        // Down until the probe after next could clear it.
        provider
            .health
            .set_down(now, Some(check.interval * 2 + check.timeout));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn routes(yaml: &str) -> Routes {
        Routes::from_yaml(yaml)
    }

    #[test]
    fn probes_fall_due_once_per_interval_per_checked_provider() {
        let r = routes(
            "api_key: k\nproviders:\n  - {name: a, base_url: \"http://a\", api_keys: [k], health_check: {interval: 10s}}\n  - {name: b, base_url: \"http://b\", api_keys: [k]}\n  - {name: c, base_url: \"http://c\", api_keys: [k], health_check: {interval: 30s}}\n",
        );
        let mut s = Schedule::default();
        let t0 = Instant::now();
        let names =
            |v: Vec<Arc<Provider>>| v.iter().map(|p| p.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(s.due(&r, t0)), ["a", "c"]);
        assert!(s.due(&r, t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(names(s.due(&r, t0 + Duration::from_secs(10))), ["a"]);
        assert_eq!(names(s.due(&r, t0 + Duration::from_secs(30))), ["a", "c"]);
        // A reload that adds a checked provider: due at once.
        let r2 = routes(
            "api_key: k\nproviders:\n  - {name: a, base_url: \"http://a\", api_keys: [k], health_check: {interval: 10s}}\n  - {name: d, base_url: \"http://d\", api_keys: [k], health_check: {interval: 10s}}\n",
        );
        assert_eq!(names(s.due(&r2, t0 + Duration::from_secs(31))), ["d"]);
    }
}
