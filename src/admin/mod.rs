//! The admin API: usage, health and store state, and usage resets.
//!
//! Admin routes answer only to `admin_key`; without one configured they do
//! not exist (404). The client `api_key` never opens them (403). Keys are
//! shown only by alias and fingerprint.

pub mod auth;
mod cache;
pub mod usage;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::app::AppState;

pub fn router(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/usage", get(usage::show))
        .route("/admin/usage/reset", post(usage::reset))
        .route("/admin/cache/purge", post(cache::purge))
        .route_layer(from_fn_with_state(app, auth::require_admin))
}
