//! `GET /admin/usage` and `POST /admin/usage/reset`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::config::ReloadError;
use crate::http::error::ApiError;
use crate::routing::HealthState;
use crate::usage::{Totals, UsageKey};

#[derive(Serialize)]
pub struct UsageRow {
    pub provider: Arc<str>,
    pub key: Arc<str>,
    pub fingerprint: Arc<str>,
    pub model: Arc<str>,
    #[serde(flatten)]
    pub totals: Totals,
    /// Usage selection balances on: in-window tokens plus reservations.
    pub routing_usage: u64,
    /// Dollars spent (`totals.cost_nanos` as dollars); `null` for a model
    /// without a price.
    pub cost_usd: Option<f64>,
    pub health: HealthState,
}

#[derive(Serialize)]
pub struct KeyView {
    pub alias: Arc<str>,
    pub fingerprint: Arc<str>,
    pub health: HealthState,
}

#[derive(Serialize)]
pub struct ProviderView {
    pub name: Arc<str>,
    pub health: HealthState,
    pub keys: Vec<KeyView>,
}

#[derive(Serialize)]
pub struct UsageReport {
    pub store: crate::store::StoreReport,
    pub usage_window: String,
    pub usage: Vec<UsageRow>,
    pub providers: Vec<ProviderView>,
    pub clients: Vec<serde_json::Value>,
}

/// Everything the admin API and dashboard show, from the current table.
pub fn report(app: &AppState) -> UsageReport {
    let runtime = app.runtime();
    let now = crate::routing::now_ms();
    let usage = runtime
        .routes
        .distinct_candidates()
        .map(|c| UsageRow {
            provider: c.provider.name.clone(),
            key: c.key.alias.clone(),
            fingerprint: c.key.fingerprint.clone(),
            model: c.model.clone(),
            totals: c.usage.totals(),
            routing_usage: c.usage.load(),
            cost_usd: c
                .price
                .map(|_| crate::usage::cost::usd(c.usage.totals().cost_nanos)),
            health: c.health.state(now),
        })
        .collect();
    let providers = runtime
        .routes
        .providers
        .iter()
        .map(|p| ProviderView {
            name: p.name.clone(),
            health: p.health.state(now),
            keys: p
                .keys
                .iter()
                .map(|k| KeyView {
                    alias: k.alias.clone(),
                    fingerprint: k.fingerprint.clone(),
                    health: k.health.state(now),
                })
                .collect(),
        })
        .collect();
    UsageReport {
        store: app.store_status.report(),
        usage_window: runtime
            .config
            .usage_window
            .clone()
            .unwrap_or_else(|| "cumulative".into()),
        usage,
        providers,
        clients: runtime.clients.list().iter().map(|c| c.view()).collect(),
    }
}

pub async fn show(State(app): State<AppState>) -> Json<UsageReport> {
    Json(report(&app))
}

/// Which usage to forget; every field narrows, none means everything.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetFilter {
    pub provider: Option<String>,
    /// A key alias (`openai#0`) or fingerprint.
    pub key: Option<String>,
    pub model: Option<String>,
}

/// The usage keys a filter selects, among the current config's keys.
pub fn select(app: &AppState, filter: &ResetFilter) -> Vec<UsageKey> {
    let runtime = app.runtime();
    runtime
        .routes
        .distinct_candidates()
        .filter(|c| {
            filter
                .provider
                .as_deref()
                .is_none_or(|p| *c.provider.name == *p)
                && filter
                    .key
                    .as_deref()
                    .is_none_or(|k| *c.key.alias == *k || *c.key.fingerprint == *k)
                && filter.model.as_deref().is_none_or(|m| *c.model == *m)
        })
        .map(|c| UsageKey {
            provider: c.provider.name.clone(),
            key_fingerprint: c.key.fingerprint.clone(),
            model: c.model.clone(),
        })
        .collect()
}

pub async fn reset(State(app): State<AppState>, body: Bytes) -> Response {
    let filter: ResetFilter = if body.iter().all(u8::is_ascii_whitespace) {
        ResetFilter::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(f) => f,
            Err(e) => {
                return ApiError::InvalidRequest {
                    message: format!("invalid reset filter: {e}"),
                    param: None,
                }
                .into_response();
            }
        }
    };
    let keys = select(&app, &filter);
    let count = keys.len();
    let store_ok = tokio::task::spawn_blocking(move || app.reset_usage(keys))
        .await
        .unwrap_or_else(|e| Err(ReloadError::Store(e.to_string())));
    Json(serde_json::json!({
        "reset": count,
        "store_error": store_ok.err().map(|e| e.to_string()),
    }))
    .into_response()
}
