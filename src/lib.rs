//! llm-router: an OpenAI-compatible router for many providers and keys.
//!
//! The modules form layers, bottom to top; each imports only from its own
//! layer or below (ARCHITECTURE.md has the table, and `tests/layers.rs`
//! holds the code to it):
//!
//! 0. [`payload`], [`usage`], [`metrics`], [`telemetry`], [`mock`]
//! 1. [`config`], [`wire`]
//! 2. [`routing`], [`clients`], [`lockout`]
//! 3. [`store`], [`cache`], [`upstream`], [`accounting`], [`tls`]
//! 4. [`relay`]
//! 5. [`app`]
//! 6. [`reload`], [`tasks`]
//! 7. [`http`] (the request path itself is `http::proxy`, readable top to
//!    bottom), 8. [`admin`], 9. [`ui`]
//! 10. [`routes`], [`server`]

pub mod accounting;
pub mod admin;
pub mod alloc;
pub mod app;
pub mod cache;
pub mod clients;
pub mod config;
pub mod http;
pub mod lockout;
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
pub mod tls;
pub mod ui;
pub mod upstream;
pub mod usage;
pub mod wire;
