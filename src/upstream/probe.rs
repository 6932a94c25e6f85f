//! Active health checks: probe each opted-in provider on its interval and
//! mark it up or down as a whole.
//!
//! One task serves every provider. Every 100 ms it reads the *current*
//! routing table, so a config reload adds, drops or retimes probes without
//! any task bookkeeping. A provider marked down stays down until a probe
//! succeeds (its cooldown is renewed past the next probe); selection still
//! falls back to it if everything else is down too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header;
use tokio::time::Instant;

use super::{RequestBody, SendError, Upstream};
use crate::app::AppState;
use crate::routing::{Provider, now_ms};

/// Runs until the process exits.
pub async fn run(app: AppState) {
    let mut next_due: HashMap<Arc<str>, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let runtime = app.runtime();
        let now = Instant::now();
        for provider in &runtime.routes.providers {
            let Some(check) = &provider.health_check else {
                continue;
            };
            let due = next_due.entry(provider.name.clone()).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + check.interval;
            let provider = provider.clone();
            let upstream = app.upstream.clone();
            tokio::spawn(async move { probe(&upstream, &provider).await });
        }
    }
}

/// One probe; updates the provider's health.
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
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, key.authorization.clone());
            tokio::time::timeout(check.timeout, upstream.send(request))
                .await
                .unwrap_or(Err(SendError::ConnectTimeout))
        }
        None => Err(SendError::Invalid),
    };
    let ok = matches!(&result, Ok(r) if r.status().is_success());
    if ok {
        if provider.health.state(now_ms()).cooling_down {
            tracing::info!(provider = %provider.name, "health check passed: provider is up");
        }
        provider.health.set_down(now_ms(), None);
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
            .set_down(now_ms(), Some(check.interval * 2 + check.timeout));
    }
    ok
}
