//! Talking to providers: the shared HTTP client, the headers we forward,
//! and the attempt loop that fails over between candidates.
//!
//! One `reqwest` client (rustls, pooled, HTTP/1.1 and HTTP/2) serves every
//! provider. It never follows redirects, since an upstream URL must come from
//! config and nowhere else, and its pooled connections idle out after 30 s,
//! under the 60 s that common load balancers use, so a stale connection never
//! becomes a client-visible error.

mod failover;
mod headers;
pub mod probe;

use std::time::Duration;

pub use failover::{Attempt, FailoverError, Failure, Plan, send};
pub use headers::{forward_request_headers, response_headers};

use crate::config::Timeouts;

/// Idle pooled connections are closed after this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
}

impl Upstream {
    pub fn new(timeouts: &Timeouts) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .user_agent(concat!("llm-router/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}
