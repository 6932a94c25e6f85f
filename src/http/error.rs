//! Every error a client can see, and its one mapping to OpenAI's error JSON.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::config::ReloadError;
use crate::payload::Api;
use crate::wire::anthropic::error as anthropic;

#[derive(Debug)]
pub enum ApiError {
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    Unauthorized,
    /// Authenticated, but not allowed here (the client key on admin routes).
    Forbidden,
    ModelNotFound(String),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge(u64),
    UnsupportedMediaType,
    /// A client key's own limits (rpm, tpm, budget).
    ClientLimited(crate::clients::Limited),
    /// Every candidate was rate limited upstream.
    RateLimited {
        retry_after: Option<Duration>,
    },
    UpstreamFailed,
    UpstreamTimeout,
    /// The upstream answered, then broke before the body was complete.
    UpstreamBodyFailed,
    ShuttingDown,
    /// The client took too long to send its body.
    RequestTimeout,
    /// The upstream's answer is larger than `limits.max_response_bytes`.
    UpstreamTooLarge,
    /// A dashboard edit or usage reset that did not take effect.
    EditRejected(crate::config::ReloadError),
    /// Too many wrong admin keys from this address (see `lockout`).
    LockedOut(Duration),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } | Self::ClientLimited(_) | Self::LockedOut(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::UpstreamFailed | Self::UpstreamBodyFailed => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamTooLarge => StatusCode::BAD_GATEWAY,
            Self::EditRejected(e) => match e {
                ReloadError::Invalid(_) | ReloadError::BadEdit(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ReloadError::OverlayNotWritable(_) | ReloadError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }

    /// The machine-readable `code`, also used as the log outcome.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthorized => "invalid_api_key",
            Self::Forbidden => "forbidden",
            Self::ModelNotFound(_) => "model_not_found",
            Self::NotFound => "unknown_url",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "request_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::ClientLimited(l) if l.quota_exhausted => "insufficient_quota",
            Self::ClientLimited(_) => "rate_limit_exceeded",
            Self::UpstreamFailed => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamBodyFailed => "upstream_body_error",
            Self::ShuttingDown => "shutting_down",
            Self::RequestTimeout => "request_timeout",
            Self::UpstreamTooLarge => "response_too_large",
            Self::EditRejected(e) => e.code(),
            Self::LockedOut(_) => "too_many_failed_logins",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::ModelNotFound(_)
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::PayloadTooLarge(_)
            | Self::UnsupportedMediaType
            | Self::RequestTimeout => "invalid_request_error",
            Self::EditRejected(ReloadError::Invalid(_) | ReloadError::BadEdit(_)) => {
                "invalid_request_error"
            }
            Self::Unauthorized | Self::Forbidden => "authentication_error",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::ClientLimited(l) if l.quota_exhausted => "insufficient_quota",
            Self::ClientLimited(_) | Self::LockedOut(_) => "rate_limit_error",
            _ => "server_error",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::InvalidRequest { message, .. } => message.clone(),
            Self::Unauthorized => "Incorrect API key provided. Pass the router's key as `Authorization: Bearer <key>`.".into(),
            Self::Forbidden => "This key is not allowed here.".into(),
            Self::ModelNotFound(model) => {
                let shown: String = model.chars().take(256).collect();
                format!("The model `{shown}` does not exist or you do not have access to it.")
            }
            Self::NotFound => "Unknown request URL. See GET /v1/models and POST /v1/chat/completions.".into(),
            Self::MethodNotAllowed => "Method not allowed for this URL.".into(),
            Self::PayloadTooLarge(limit) => format!("Request body is larger than the limit of {limit} bytes."),
            Self::UnsupportedMediaType => "Request body must be JSON (Content-Type: application/json).".into(),
            Self::ClientLimited(l) => l.message.clone(),
            Self::RateLimited { .. } => "Every upstream provider for this model is rate limited. Retry after the time in the Retry-After header.".into(),
            Self::UpstreamFailed => "No upstream provider could serve this request.".into(),
            Self::UpstreamTimeout => "The upstream providers did not answer in time.".into(),
            Self::UpstreamBodyFailed => "The upstream provider failed while sending its response.".into(),
            Self::ShuttingDown => "The router is shutting down; retry on another instance.".into(),
            Self::RequestTimeout => "The request body did not arrive in time.".into(),
            Self::UpstreamTooLarge => "The upstream provider's answer is larger than this router relays.".into(),
            Self::EditRejected(e) => e.to_string(),
            Self::LockedOut(_) => "Too many wrong admin keys from this address. Retry after the time in the Retry-After header.".into(),
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::InvalidRequest { param, .. } => *param,
            Self::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// The JSON body alone, for places that build their own response.
    pub fn body(&self) -> Bytes {
        let message = self.message();
        let body = Body {
            error: Inner {
                message: &message,
                kind: self.kind(),
                param: self.param(),
                code: Some(self.code()),
            },
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Self::RateLimited {
            retry_after: Some(d),
        } = &self
        {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Self::LockedOut(d) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
        }
        if matches!(self, Self::RequestTimeout) {
            // Whatever of the body is still in flight cannot be read as a
            // request: close the connection.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::ClientLimited(l) = &self {
            l.headers.apply(headers);
            if let Some(secs) = l.retry_after_secs {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }
        response
    }
}

impl ApiError {
    /// The response in the client's wire format: OpenAI's error JSON, or
    /// Anthropic's (`{"type":"error","error":{"type","message"}}`, the type
    /// following the status), with the same status and headers.
    pub fn response_in(self, api: Api) -> Response {
        let anthropic = (api == Api::Anthropic).then(|| {
            let status = self.status().as_u16();
            anthropic::error_body(anthropic::error_type(status), &self.message())
        });
        let mut response = self.into_response();
        if let Some(body) = anthropic {
            *response.body_mut() = axum::body::Body::from(body);
        }
        response
    }
}

impl From<crate::payload::PayloadError> for ApiError {
    fn from(e: crate::payload::PayloadError) -> Self {
        Self::InvalidRequest {
            message: e.message,
            param: e.param,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_the_openai_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::ModelNotFound("x".into()).body()).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
    }

    #[test]
    fn rate_limited_carries_retry_after_rounded_up() {
        let r = ApiError::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
    }
}
