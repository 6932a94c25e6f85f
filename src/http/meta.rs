//! Small read-only endpoints: `/v1/models` and `/health`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::AppState;

/// The configured groups, in OpenAI's list shape.
pub async fn models(State(app): State<AppState>) -> Response {
    let body = app.runtime().models_body.clone();
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
