//! The mock upstream behind HTTPS, as every real provider is: its routes
//! served over TLS with a certificate from a test CA, offering the ALPN
//! protocols the test chooses. It counts the TLS connections it accepted
//! and records each request's HTTP version.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::pki::Pair;
use super::{MockUpstream, UpstreamState};

pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
    connections: Arc<AtomicUsize>,
    versions: Arc<Mutex<Vec<http::Version>>>,
}

impl TlsUpstream {
    /// Serves the mock over TLS with `pair`, offering `alpn` (e.g.
    /// `[b"h2", b"http/1.1"]`, or only `http/1.1`).
    pub async fn start(pair: &Pair, alpn: &[&[u8]]) -> Self {
        Self::start_with(pair, alpn, None).await
    }

    /// [`Self::start`], allowing at most `max_streams` concurrent HTTP/2
    /// streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub async fn start_with(pair: &Pair, alpn: &[&[u8]], max_streams: Option<u32>) -> Self {
        let certs = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (app, state) = MockUpstream::app();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let seen = versions.clone();
        let app = app.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                seen.lock().unwrap().push(request.version());
                next.run(request)
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app, accepted) = (acceptor.clone(), app.clone(), accepted.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let service = TowerToHyperService::new(app);
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    if let Some(max) = max_streams {
                        builder.http2().max_concurrent_streams(max);
                    }
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self {
            addr,
            state,
            connections,
            versions,
        }
    }

    /// The provider's `base_url`, by name (the certificate is for
    /// `localhost`).
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}/v1", self.addr.port())
    }

    /// What the mock does for requests made with `key`.
    pub fn set(&self, key: &str, behavior: super::Behavior) {
        self.state.set(key, behavior);
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The HTTP version of each request served, in order.
    pub fn versions(&self) -> Vec<http::Version> {
        self.versions.lock().unwrap().clone()
    }
}
