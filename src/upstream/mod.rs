//! Talking to providers: the shared HTTP client, the headers we forward,
//! and the attempt loop that fails over between candidates.
//!
//! One pooled client serves every provider: hyper-util's, over rustls
//! (ring; Mozilla's roots and the system's) with HTTP/1.1 and HTTP/2 by
//! ALPN. It never follows redirects, since an upstream URL must come from
//! config and nowhere else, and its pooled connections idle out after 30 s,
//! under the 60 s that common load balancers use, so a stale connection
//! never becomes a client-visible error. (We used reqwest, which wraps this
//! same client; per request it parsed the URL three times and cloned the
//! request for its retry and redirect layers: about a fifth of a proxied
//! request's instructions.) Requests go to the configured `base_url`
//! directly: `HTTP(S)_PROXY` in the environment is not consulted.

mod failover;
mod headers;
pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use failover::{Attempt, Bodies, FailoverError, Failure, Plan, Prepared, send};
pub use headers::{forward_request_headers, response_headers};

use crate::config::Timeouts;

/// Idle pooled connections are closed after this long.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sent when the client sent no `User-Agent` of its own.
pub const USER_AGENT: &str = concat!("llm-router/", env!("CARGO_PKG_VERSION"));

/// The body of every upstream request: bytes we already hold.
pub type RequestBody = Full<Bytes>;

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    /// Kept to build more pools with the same settings ([`Self::new_pool`]).
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
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
    #[error("{}", chain(.0))]
    Failed(hyper_util::client::legacy::Error),
}

impl Upstream {
    pub fn new(timeouts: &Timeouts) -> anyhow::Result<Self> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store())
        .with_no_client_auth();
        Ok(Self::build(tls, timeouts.connect))
    }

    /// Another client with the same settings and TLS roots but a pool of
    /// its own (one per worker thread, so a pool is never shared).
    pub fn new_pool(&self) -> Self {
        Self::build(self.tls.clone(), self.connect_timeout)
    }

    fn build(tls: rustls::ClientConfig, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(https);
        Self {
            client,
            tls,
            connect_timeout,
        }
    }

    /// Sends one request; the response's body is still to be read.
    pub async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        self.client.request(request).await.map_err(|e| {
            if is_connect_timeout(&e) {
                SendError::ConnectTimeout
            } else {
                SendError::Failed(e)
            }
        })
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

/// An error and its causes, e.g. "client error (Connect): tcp connect
/// error: Connection refused (os error 111)".
fn chain(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn is_connect_timeout(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = s.source();
    }
    false
}
