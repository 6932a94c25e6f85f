//! The route table: which URL reaches which handler, through which
//! middleware, on which listener. The one place that knows every surface
//! (proxy, probes, admin API, dashboard, metrics), so it sits above them all.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::config::CorsConfig;
use crate::http::error::ApiError;
use crate::http::{auth, meta, proxy, request_id};
use crate::payload::Api;

/// Builds the HTTP services: the public one, and the operator one when
/// `admin_listen` puts `/admin`, `/ui` and `/metrics` on their own listener.
pub fn routers(app: AppState) -> (Router, Option<Router>) {
    let separate = app.runtime().config.admin_listen.is_some();
    let cors = cors_layer(&app.runtime().config.cors);
    let v1 = Router::new()
        .route("/v1/chat/completions", post(proxy::handle))
        .route("/v1/completions", post(proxy::handle))
        .route("/v1/embeddings", post(proxy::handle))
        .route("/v1/responses", post(proxy::handle))
        .route("/v1/messages", post(proxy::handle))
        .route("/v1/messages/count_tokens", post(proxy::handle))
        .route("/v1/models", get(meta::models))
        .route_layer(from_fn_with_state(app.clone(), auth::require_client_key));
    let probes = Router::new()
        .route("/health", get(meta::health))
        .route("/ready", get(meta::ready));
    let operator = Router::new()
        .merge(crate::admin::router(app.clone()))
        .merge(crate::ui::router(app.clone()))
        .route("/metrics", get(meta::metrics));
    let mut public = Router::new().merge(v1).merge(probes.clone());
    if !separate {
        public = public.merge(operator.clone());
    }
    let public = finish(public, app.clone()).layer(cors);
    let admin = separate.then(|| finish(Router::new().merge(probes).merge(operator), app.clone()));
    (
        public.layer(from_fn(request_id::assign)),
        admin.map(|a| a.layer(from_fn(request_id::assign))),
    )
}

fn finish(router: Router<AppState>, app: AppState) -> Router {
    router
        .fallback(not_found)
        .layer(from_fn(json_405))
        // Fastest level: JSON bodies here are small, and default brotli
        // quality costs more CPU than the whole proxy hop.
        .layer(
            CompressionLayer::new()
                .no_deflate()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .with_state(app)
}

async fn not_found(uri: Uri) -> Response {
    ApiError::NotFound.response_in(Api::of_path(uri.path()))
}

/// axum answers a wrong method with an empty 405 and an `Allow` header;
/// keep the header, add a body in the caller's error format.
async fn json_405(request: Request, next: Next) -> Response {
    let api = Api::of_path(request.uri().path());
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut out = ApiError::MethodNotAllowed.response_in(api);
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// Exact-match origins, or any origin without credentials. Never reflects an
/// arbitrary Origin together with credentials.
fn cors_layer(cors: &CorsConfig) -> CorsLayer {
    let origins = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors.allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("openai-organization"),
            HeaderName::from_static("openai-project"),
            HeaderName::from_static("openai-beta"),
            HeaderName::from_static("x-stainless-os"),
            HeaderName::from_static("x-stainless-lang"),
            HeaderName::from_static("x-stainless-package-version"),
            HeaderName::from_static("x-stainless-runtime"),
            HeaderName::from_static("x-stainless-runtime-version"),
            HeaderName::from_static("x-stainless-arch"),
            HeaderName::from_static("x-stainless-retry-count"),
            HeaderName::from_static("x-stainless-timeout"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("anthropic-version"),
            HeaderName::from_static("anthropic-beta"),
            HeaderName::from_static("anthropic-dangerous-direct-browser-access"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}
