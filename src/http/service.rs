//! The service each connection runs. The proxy endpoints take a direct lane
//! to [`proxy::direct`], which does the request id, the key check and the
//! proxy itself; everything else goes through the axum router and its
//! middleware. So does a proxy request with an `Origin` header, whose CORS
//! answer is the router's job.
//!
//! Why two lanes: the router's generic stack (request id, CORS, compression,
//! the 405 mapper and the auth layer, each boxing and cloning per request)
//! cost about a quarter of the instructions of a proxied request, and the
//! proxy endpoints need none of its generality.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use futures_util::FutureExt;
use http::{Method, Request, header};
use hyper::body::Incoming;
use tower::ServiceExt;

use super::AppState;
use super::proxy::{self, Lane};
use crate::payload::Endpoint;
use crate::upstream::Upstream;

#[derive(Clone)]
pub struct Service {
    router: Router,
    /// Set on the public listener, where the proxy endpoints live.
    direct: Option<Arc<Lane>>,
    /// The connection this copy serves, when the server said.
    conn: Option<Conn>,
}

/// The connection a request came on: the client's address, and whether it
/// came over TLS. The router's routes find it among the request's
/// extensions (the proxy's direct lane has no use for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    pub peer: std::net::SocketAddr,
    pub tls: bool,
}

impl Service {
    /// The public listener's service: direct lane plus router. `upstream`
    /// is the worker's own client (its pool stays on the worker's thread).
    pub fn public(router: Router, app: AppState, upstream: Upstream) -> Self {
        Self {
            router,
            direct: Some(Arc::new(Lane { app, upstream })),
            conn: None,
        }
    }

    /// This service for one connection.
    pub fn for_connection(&self, conn: Conn) -> Self {
        Self {
            conn: Some(conn),
            ..self.clone()
        }
    }

    /// A service that sends everything through `router`.
    pub fn router_only(router: Router) -> Self {
        Self {
            router,
            direct: None,
            conn: None,
        }
    }
}

/// The endpoint, when `request` may take the direct lane.
fn direct_endpoint<B>(request: &Request<B>) -> Option<Endpoint> {
    if request.method() != Method::POST || request.headers().contains_key(header::ORIGIN) {
        return None;
    }
    Endpoint::from_path(request.uri().path())
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if let Some(direct) = &self.direct
            && let Some(endpoint) = direct_endpoint(&request)
        {
            return Box::pin(proxy::direct(direct.clone(), endpoint, request).map(Ok));
        }
        let router = self.router.clone();
        let mut request = request.map(Body::new);
        if let Some(conn) = self.conn {
            request.extensions_mut().insert(conn);
        }
        Box::pin(router.oneshot(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, origin: bool) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        if origin {
            b = b.header(header::ORIGIN, "https://app.example");
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_plain_proxy_posts_take_the_direct_lane() {
        let direct = |m, p, o| direct_endpoint(&request(m, p, o));
        assert_eq!(
            direct(Method::POST, "/v1/chat/completions", false),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(
            direct(Method::POST, "/v1/responses?x=1", false),
            Some(Endpoint::Responses)
        );
        // CORS, other methods, other paths: the router answers.
        assert_eq!(direct(Method::POST, "/v1/chat/completions", true), None);
        assert_eq!(direct(Method::GET, "/v1/chat/completions", false), None);
        assert_eq!(direct(Method::POST, "/v1/models", false), None);
        assert_eq!(direct(Method::POST, "/v1/chat/completions/", false), None);
    }
}
