//! Talking to providers: the HTTP client, the headers we forward, and
//! the attempt loop that fails over between candidates.
//!
//! Each worker thread has a client of its own ([`Upstream::new_pool`]):
//! its connections live in a [`pool`] built on hyper's connection-level
//! client, over rustls (ring; Mozilla's roots and the system's) with
//! HTTP/1.1, or HTTP/2 when an HTTPS upstream chooses it by ALPN. It never
//! follows redirects, since an upstream URL must come from config and
//! nowhere else, and idle connections close after 30 s, under the 60 s
//! that common load balancers use, so a stale connection never becomes a
//! client-visible error. Requests go to the configured `base_url`
//! directly: `HTTP(S)_PROXY` in the environment is not consulted.

mod failover;
mod headers;
mod pool;
pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

pub use failover::{Attempt, Bodies, FailoverError, Failure, Plan, Prepared, send};
pub use headers::{forward_request_headers, response_headers};
pub use pool::Body;

use crate::config::Timeouts;

/// Idle pooled connections are closed after this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sent when the client sent no `User-Agent` of its own.
pub const USER_AGENT: &str = concat!("llm-router/", env!("CARGO_PKG_VERSION"));

/// The body of every upstream request: bytes we already hold.
pub type RequestBody = Full<Bytes>;

/// A provider's response, its body still to be read.
pub type UpstreamResponse = Response<Body>;

#[derive(Clone)]
pub struct Upstream {
    pool: Arc<pool::Pool>,
    tls: tokio_rustls::TlsConnector,
    settings: pool::Settings,
}

/// Why a request got no response. (Its messages name no URL or header.)
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting took longer than `timeouts.connect` (or the whole
    /// exchange longer than its caller allowed).
    #[error("connect timed out")]
    ConnectTimeout,
    /// No URI could be made of the provider's base URL and path.
    #[error("no valid URI for this provider")]
    Invalid,
    /// Refused, reset, DNS, TLS, or a broken response head.
    #[error("{}", chain(.0.as_ref()))]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl Upstream {
    pub fn new(timeouts: &Timeouts) -> anyhow::Result<Self> {
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store())
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            pool: pool::Pool::new(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            settings: pool::Settings {
                idle_timeout: POOL_IDLE_TIMEOUT,
                connect_timeout: timeouts.connect,
            },
        })
    }

    /// Another client with the same settings and TLS configuration (its
    /// session cache included) but a pool of its own: one per worker
    /// thread, so a pool is never shared.
    pub fn new_pool(&self) -> Self {
        Self {
            pool: pool::Pool::new(),
            ..self.clone()
        }
    }

    /// Sends one request; the response's body is still to be read.
    ///
    /// Not an `async fn`: this step is synchronous, and an `async fn` would
    /// keep its own two copies of the request (its argument, and the
    /// binding the body sees) in every request's future, beside the pool's.
    pub fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> impl Future<Output = Result<UpstreamResponse, SendError>> + Send + '_ {
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        pool::send(&self.pool, &self.tls, self.settings, request)
    }
}

/// Mozilla's roots (webpki-roots) plus the system's, so a private CA or a
/// TLS-inspecting egress proxy trusted by the host is trusted here too.
fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        system_roots = added,
        errors = native.errors.len(),
        "TLS roots loaded"
    );
    roots
}

/// An error and its causes, e.g. "connect error: Connection refused (os
/// error 111)".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
