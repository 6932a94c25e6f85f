//! llm-router: an OpenAI-compatible router for many providers and keys.
//!
//! How the modules fit, in the order a request meets them:
//!
//! - [`http`]: routes, auth, request ids, errors → responses; the request
//!   path itself is `http::proxy`, readable top to bottom.
//! - [`payload`]: reads `model`/`stream` from the body and splices rewrites
//!   into the original bytes.
//! - [`routing`]: the routing table built from config, candidate selection
//!   (a pure function) and passive health.
//! - [`upstream`]: the HTTP client and the failover loop.
//! - [`relay`]: SSE framing, usage extraction, per-event compression.
//! - [`accounting`] and [`usage`]: settling token usage into lock-free cells.
//! - [`config`]: schema, loading, validation; secrets stay inside it.
//! - [`app`]: the shared, hot-swappable state; [`server`]: sockets and
//!   shutdown; [`mock`]: the built-in demo provider.

pub mod accounting;
pub mod admin;
pub mod app;
pub mod clients;
pub mod config;
pub mod http;
pub mod metrics;
pub mod mock;
pub mod payload;
pub mod relay;
pub mod reload;
pub mod routes;
pub mod routing;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod ui;
pub mod upstream;
pub mod usage;
