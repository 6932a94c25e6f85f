//! `POST /admin/cache/purge`: empty the response cache, or one group's part.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::error::ApiError;

/// `{}` (or no body) for everything, `{"group": "…"}` for one group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    group: Option<String>,
}

pub async fn purge(State(app): State<AppState>, body: Bytes) -> Response {
    let Some(cache) = &app.cache else {
        return ApiError::InvalidRequest {
            message: "No response cache is configured.".into(),
            param: None,
        }
        .into_response();
    };
    let purge: Purge = if body.iter().all(u8::is_ascii_whitespace) {
        Purge::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return ApiError::InvalidRequest {
                    message: format!("invalid purge: {e}"),
                    param: None,
                }
                .into_response();
            }
        }
    };
    match cache.purge(purge.group.as_deref()).await {
        Ok(n) => {
            tracing::info!(group = purge.group.as_deref(), purged = n, "cache purged");
            Json(serde_json::json!({"purged": n, "group": purge.group})).into_response()
        }
        Err(e) => ApiError::InvalidRequest {
            message: format!("the cache store could not be purged: {e:#}"),
            param: None,
        }
        .into_response(),
    }
}
