//! `GET /v1/models`: the mock's one model, `<name>-model`, in OpenAI's list
//! shape, or in Anthropic's when the request carries `anthropic-version`
//! (the header every Anthropic SDK sends). Needs no key, as before.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use super::Shared;

pub(super) async fn models(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let id = format!("{}-model", state.options.name);
    if headers.contains_key("anthropic-version") {
        return axum::Json(json!({
            "data": [{
                "type": "model",
                "id": id,
                "display_name": format!("llm-router mock ({})", state.options.name),
                "created_at": "2025-01-01T00:00:00Z",
            }],
            "has_more": false,
            "first_id": id,
            "last_id": id,
        }))
        .into_response();
    }
    axum::Json(json!({"object": "list", "data": [
        {"id": id, "object": "model", "created": 0, "owned_by": "llm-router-mock"}
    ]}))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ANTHROPIC, app, send};
    use serde_json::{Value, json};

    async fn list(headers: &[(&str, &str)]) -> Value {
        let (status, bytes) = send(app(), "GET", "/v1/models", headers, Value::Null).await;
        assert_eq!(status, 200);
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn openai_shape_as_before() {
        let v = list(&[]).await;
        let expected = json!({"object": "list", "data": [
            {"id": "mock-model", "object": "model", "created": 0, "owned_by": "llm-router-mock"}
        ]});
        assert_eq!(v, expected);
    }

    #[tokio::test]
    async fn anthropic_shape_with_anthropic_version() {
        let v = list(ANTHROPIC).await;
        assert_eq!(v["has_more"], false);
        assert_eq!(v["first_id"], "mock-model");
        assert_eq!(v["last_id"], "mock-model");
        let model = &v["data"][0];
        assert_eq!(model["type"], "model");
        assert_eq!(model["id"], "mock-model");
        assert!(model["display_name"].as_str().unwrap().contains("mock"));
        assert_eq!(model["created_at"], "2025-01-01T00:00:00Z");
    }
}
