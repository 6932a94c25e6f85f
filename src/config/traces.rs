//! The `tracing:` section: where OpenTelemetry traces go (see
//! `telemetry::traces`). Read at startup; a change takes a restart.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Config, Secret, env};
use crate::telemetry::traces::{Requested, Settings};

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's OTLP base URL, e.g. `http://collector:4318` (HTTP)
    /// or `http://collector:4317` (gRPC).
    #[serde(deserialize_with = "env::expanded_opt_string")]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `grpc`.
    #[serde(deserialize_with = "env::expanded_opt_string")]
    pub protocol: Option<String>,
    /// The share of new traces kept, 0 to 1 (default 1); a client's sampled
    /// flag in `traceparent` wins.
    pub sample_ratio: Option<f64>,
    /// `service.name` (default `llm-router`).
    #[serde(deserialize_with = "env::expanded_opt_string")]
    pub service_name: Option<String>,
    /// Sent with every export (say, a hosted collector's API key).
    pub headers: BTreeMap<String, Secret>,
    /// Record prompt and completion text on spans (off by default).
    pub capture_content: bool,
}

impl Config {
    /// Where traces go, from `tracing:` and the `OTEL_*` environment; `None`
    /// when nowhere.
    pub fn trace_settings(&self) -> Result<Option<Settings>, String> {
        let section = self.tracing.clone().unwrap_or_default();
        let requested = Requested {
            otlp_endpoint: section.otlp_endpoint,
            protocol: section.protocol,
            sample_ratio: section.sample_ratio,
            service_name: section.service_name,
            headers: section
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.expose().to_string()))
                .collect(),
            capture_content: section.capture_content,
        };
        Settings::resolve(requested, |name| std::env::var(name).ok())
    }
}
