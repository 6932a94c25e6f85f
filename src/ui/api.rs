//! The dashboard's JSON API: one state snapshot, one edit endpoint.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};

use super::session::{COOKIE, cookie_token};
use crate::admin::auth::{AdminAccess, attempt};
use crate::admin::usage::{ResetFilter, report, select};
use crate::app::AppState;
use crate::config::overlay::{AddedKey, KeyRef, ModelRef, WeightOverride};
use crate::config::{ReloadError, Secret};
use crate::http::Conn;
use crate::http::error::ApiError;

#[derive(Serialize)]
struct ModelView {
    provider: String,
    model: String,
    weight: i64,
    enabled: bool,
}

#[derive(Serialize)]
struct GroupView {
    name: String,
    models: Vec<ModelView>,
}

#[derive(Serialize)]
struct KeyConfigView {
    alias: String,
    fingerprint: String,
    enabled: bool,
}

#[derive(Serialize)]
struct ProviderConfigView {
    name: String,
    base_url: String,
    keys: Vec<KeyConfigView>,
}

#[derive(Serialize)]
struct Latency {
    count: u64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Serialize)]
struct LatencyRow {
    provider: Arc<str>,
    key: Arc<str>,
    model: Arc<str>,
    latency: Latency,
    first_token: Latency,
}

fn latency(h: &crate::metrics::LatencyHistogram) -> Latency {
    let ms = |q| h.quantile(q).map(|s| (s * 1000.0 * 10.0).round() / 10.0);
    Latency {
        count: h.count(),
        p50_ms: ms(0.5),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
    }
}

/// Everything the page shows, in one response.
pub async fn state(State(app): State<AppState>) -> Response {
    let config = app.config_state();
    let applied = &config.applied;
    let overlay = &config.overlay;
    let groups: Vec<GroupView> = applied
        .groups
        .iter()
        .map(|g| GroupView {
            name: g.name.clone(),
            models: g
                .models
                .iter()
                .map(|m| ModelView {
                    provider: m.provider.clone(),
                    model: m.name.clone(),
                    weight: m.weight,
                    enabled: !overlay.is_model_disabled(&g.name, m),
                })
                .collect(),
        })
        .collect();
    let providers: Vec<ProviderConfigView> = applied
        .providers
        .iter()
        .map(|p| ProviderConfigView {
            name: p.name.clone(),
            base_url: p.base_url.clone(),
            keys: p
                .api_keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let fingerprint = k.fingerprint();
                    KeyConfigView {
                        alias: format!("{}#{i}", p.name),
                        enabled: !overlay.is_key_disabled(&p.name, &fingerprint),
                        fingerprint,
                    }
                })
                .collect(),
        })
        .collect();
    let runtime = app.runtime();
    let latencies: Vec<_> = runtime
        .routes
        .distinct_candidates()
        .map(|c| LatencyRow {
            provider: c.provider.name.clone(),
            key: c.key.alias.clone(),
            model: c.model.clone(),
            latency: latency(&c.metrics.duration),
            first_token: latency(&c.metrics.first_token),
        })
        .collect();
    let body = serde_json::json!({
        "report": report(&app),
        "latency": latencies,
        "groups": groups,
        "providers": providers,
        "recent": app.metrics.recent.list(),
        "series": app.series.points(),
        "series_step_secs": crate::metrics::series::SAMPLE_EVERY.as_secs(),
        "cache": app.cache.as_ref().map(|c| {
            let t = &app.metrics.cache_totals;
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            serde_json::json!({
                "store": c.kind(),
                "hits": n(&t.hits),
                "misses": n(&t.misses),
                "bypasses": n(&t.bypasses),
                "saved_tokens": n(&t.saved_tokens),
                "saved_usd": crate::usage::cost::usd(n(&t.saved_nanos)),
                "bytes": c.bytes(),
            })
        }),
        "in_flight": app.metrics.in_flight.get(),
        "open_streams": app.metrics.open_streams.get(),
        "reload": config.status,
        "config_source": app.source.describe(),
        "overlay_file": app.source.overlay_path().map(|p| p.display().to_string()),
    });
    Json(body).into_response()
}

/// One dashboard edit.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    SetWeight {
        group: String,
        provider: String,
        model: String,
        weight: i64,
    },
    SetModelEnabled {
        group: String,
        provider: String,
        model: String,
        enabled: bool,
    },
    AddModel {
        group: String,
        provider: String,
        model: String,
        weight: i64,
    },
    RemoveModel {
        group: String,
        provider: String,
        model: String,
    },
    SetKeyEnabled {
        provider: String,
        fingerprint: String,
        enabled: bool,
    },
    AddKey {
        provider: String,
        key: String,
    },
    RemoveKey {
        provider: String,
        fingerprint: String,
    },
    ResetUsage {
        #[serde(default)]
        provider: Option<String>,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        model: Option<String>,
    },
}

pub async fn edit(State(app): State<AppState>, body: Bytes) -> Response {
    let edit: Edit = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return ApiError::InvalidRequest {
                message: format!("invalid edit: {e}"),
                param: None,
            }
            .into_response();
        }
    };
    if let Edit::ResetUsage {
        provider,
        key,
        model,
    } = edit
    {
        let keys = select(
            &app,
            &ResetFilter {
                provider,
                key,
                model,
            },
        );
        let n = keys.len();
        let app2 = app.clone();
        let result = tokio::task::spawn_blocking(move || app2.reset_usage(keys))
            .await
            .unwrap_or_else(|e| Err(ReloadError::Store(e.to_string())));
        return match result {
            Ok(()) => Json(serde_json::json!({"ok": true, "reset": n})).into_response(),
            Err(e) => edit_error(e),
        };
    }
    let result = app
        .edit(|overlay, applied| {
            let has_provider = |p: &str| applied.providers.iter().any(|x| x.name == p);
            let has_group = |g: &str| applied.groups.iter().any(|x| x.name == g);
            let model_ref = |group: String, provider: String, model: String| ModelRef {
                group,
                provider,
                model,
            };
            match edit {
                Edit::SetWeight {
                    group,
                    provider,
                    model,
                    weight,
                } => {
                    if weight < 0 {
                        return Err("weight must be 0 or more".into());
                    }
                    overlay.weights.retain(|w| {
                        !(w.group == group && w.provider == provider && w.model == model)
                    });
                    overlay.weights.push(WeightOverride {
                        group,
                        provider,
                        model,
                        weight,
                    });
                }
                Edit::SetModelEnabled {
                    group,
                    provider,
                    model,
                    enabled,
                } => {
                    let r = model_ref(group, provider, model);
                    overlay.disabled_models.retain(|d| d != &r);
                    if !enabled {
                        overlay.disabled_models.push(r);
                    }
                }
                Edit::AddModel {
                    group,
                    provider,
                    model,
                    weight,
                } => {
                    if !has_group(&group) || !has_provider(&provider) {
                        return Err(format!("unknown group {group:?} or provider {provider:?}"));
                    }
                    if model.trim().is_empty() || weight < 0 {
                        return Err("a model needs a name and a weight of 0 or more".into());
                    }
                    let r = model_ref(group.clone(), provider.clone(), model.clone());
                    if overlay.removed_models.contains(&r) {
                        overlay.removed_models.retain(|d| d != &r);
                    } else {
                        overlay.added_models.push(WeightOverride {
                            group,
                            provider,
                            model,
                            weight,
                        });
                    }
                }
                Edit::RemoveModel {
                    group,
                    provider,
                    model,
                } => {
                    let r = model_ref(group, provider, model);
                    let before = overlay.added_models.len();
                    overlay.added_models.retain(|a| {
                        !(a.group == r.group && a.provider == r.provider && a.model == r.model)
                    });
                    if overlay.added_models.len() == before {
                        overlay.removed_models.push(r.clone());
                    }
                    overlay.disabled_models.retain(|d| d != &r);
                    overlay.weights.retain(|w| {
                        !(w.group == r.group && w.provider == r.provider && w.model == r.model)
                    });
                }
                Edit::SetKeyEnabled {
                    provider,
                    fingerprint,
                    enabled,
                } => {
                    let r = KeyRef {
                        provider,
                        fingerprint,
                    };
                    overlay.disabled_keys.retain(|d| d != &r);
                    if !enabled {
                        overlay.disabled_keys.push(r);
                    }
                }
                Edit::AddKey { provider, key } => {
                    let key = key.trim().to_string();
                    if !has_provider(&provider) || key.is_empty() {
                        return Err("a key needs a known provider and a value".into());
                    }
                    let secret = Secret::new(key);
                    let r = KeyRef {
                        provider: provider.clone(),
                        fingerprint: secret.fingerprint(),
                    };
                    if overlay.removed_keys.contains(&r) {
                        overlay.removed_keys.retain(|d| d != &r);
                    } else {
                        overlay.added_keys.push(AddedKey {
                            provider,
                            key: secret,
                        });
                    }
                }
                Edit::RemoveKey {
                    provider,
                    fingerprint,
                } => {
                    let before = overlay.added_keys.len();
                    overlay.added_keys.retain(|a| {
                        !(a.provider == provider && a.key.fingerprint() == fingerprint)
                    });
                    let r = KeyRef {
                        provider,
                        fingerprint,
                    };
                    if overlay.added_keys.len() == before {
                        overlay.removed_keys.push(r.clone());
                    }
                    overlay.disabled_keys.retain(|d| d != &r);
                }
                Edit::ResetUsage { .. } => unreachable!("handled above"),
            }
            Ok(())
        })
        .await;
    match result {
        Ok(changes) => Json(serde_json::json!({"ok": true, "changes": changes})).into_response(),
        Err(e) => edit_error(e),
    }
}

fn edit_error(error: ReloadError) -> Response {
    ApiError::EditRejected(error).into_response()
}

#[derive(Deserialize)]
pub struct Login {
    key: String,
}

/// Exchanges the admin key for a session cookie and a CSRF token.
pub async fn login(
    State(app): State<AppState>,
    conn: Option<axum::Extension<Conn>>,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response {
    let conn = conn.map(|axum::Extension(c)| c);
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return ApiError::InvalidRequest {
            message: "expected {\"key\": \"...\"}".into(),
            param: None,
        }
        .into_response();
    };
    match attempt(&app, Some(login.key.as_bytes()), conn.as_ref()) {
        Ok(AdminAccess::Granted) => {}
        Ok(AdminAccess::Disabled) => return ApiError::NotFound.into_response(),
        Ok(AdminAccess::ClientKey) => return ApiError::Forbidden.into_response(),
        Ok(AdminAccess::Denied) => return ApiError::Unauthorized.into_response(),
        Err(locked) => return locked.into_response(),
    }
    let (token, csrf) = app.sessions.create();
    // Secure when the client reached us over TLS (directly, or through a
    // proxy that says so).
    let secure = conn.is_some_and(|c| c.tls)
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{}",
        if secure { "; Secure" } else { "" }
    );
    let mut r = Json(serde_json::json!({"csrf": csrf})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Returns the CSRF token for the current session (after a page reload).
pub async fn session(State(app): State<AppState>, headers: http::HeaderMap) -> Response {
    match cookie_token(&headers).and_then(|t| app.sessions.csrf_for(&t)) {
        Some(csrf) => Json(serde_json::json!({"csrf": csrf})).into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}

pub async fn logout(State(app): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Some(t) = cookie_token(&headers) {
        app.sessions.remove(&t);
    }
    let mut r = Json(serde_json::json!({"ok": true})).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("llmr_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}
