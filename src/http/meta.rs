//! Small read-only endpoints: `/v1/models`, `/health`, `/ready`, `/metrics`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::AppState;
use crate::metrics::{BudgetLabels, CandidateLabels, ProviderLabels};
use crate::routing::now_ms;

/// The configured groups (and aliases), in OpenAI's list shape, or in
/// Anthropic's when the client sends `anthropic-version`.
pub async fn models(State(app): State<AppState>, headers: http::HeaderMap) -> Response {
    let runtime = app.runtime();
    let body = if headers.contains_key("anthropic-version") {
        runtime.models_body_anthropic.clone()
    } else {
        runtime.models_body.clone()
    };
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Liveness: the process is up and serving.
pub async fn health() -> Response {
    let mut r = r#"{"status":"ok"}"#.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Prometheus text. State gauges (cooldowns, provider health, store) are
/// set from the current table at scrape time.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let m = &app.metrics;
    let runtime = app.runtime();
    let now = now_ms();
    // Labels are (provider, key, model): one series per distinct candidate.
    for c in runtime.routes.distinct_candidates() {
        let labels = CandidateLabels {
            provider: c.provider.name.to_string(),
            key: c.key.alias.to_string(),
            model: c.model.to_string(),
        };
        m.cooldown
            .get_or_create(&labels)
            .set(i64::from(c.health.state(now).cooling_down));
        m.key_cooldown
            .get_or_create(&CandidateLabels {
                model: "*".into(),
                ..labels
            })
            .set(i64::from(c.key.health.state(now).cooling_down));
    }
    for p in &runtime.routes.providers {
        m.provider_up
            .get_or_create(&ProviderLabels {
                provider: p.name.to_string(),
            })
            .set(i64::from(!p.health.state(now).cooling_down));
    }
    // Keys removed by a reload leave no series behind.
    m.client_budget_used.clear();
    for client in runtime.clients.list() {
        for (budget, used) in client.budget_used() {
            m.client_budget_used
                .get_or_create(&BudgetLabels {
                    client: client.name.to_string(),
                    budget: budget.to_string(),
                })
                .set(used);
        }
    }
    if let Some(bytes) = app.cache.as_ref().and_then(|c| c.bytes()) {
        m.cache_bytes.set(bytes as i64);
    }
    let store = app.store_status.report();
    m.store_healthy.set(i64::from(store.healthy));
    m.store_failures.set(store.failures);
    let mut r = m.encode().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Readiness: config loaded, store state, and whether any candidate is
/// usable now. 503 when nothing could serve a request.
pub async fn ready(State(app): State<AppState>) -> Response {
    let runtime = app.runtime();
    let now = now_ms();
    let groups: serde_json::Map<String, serde_json::Value> = runtime
        .routes
        .group_order
        .iter()
        .filter_map(|name| runtime.routes.group(name))
        .map(|g| {
            (
                g.name.to_string(),
                serde_json::Value::Bool(g.any_ready(now)),
            )
        })
        .collect();
    let usable = groups.values().any(|v| v == &serde_json::Value::Bool(true));
    let store = app.store_status.report();
    let body = serde_json::json!({
        "ready": usable,
        "config_loaded": true,
        "store": {
            "kind": store.kind,
            "state": if store.healthy { "ok" } else { "degraded" },
            "last_error": store.last_error,
        },
        "groups": groups,
    });
    let status = if usable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
