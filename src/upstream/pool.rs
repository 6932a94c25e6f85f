//! Upstream connections, one pool per worker thread, on hyper's
//! connection-level client (`hyper::client::conn`).
//!
//! Each origin (scheme and authority) has a [`Slot`]: a LIFO stack of idle
//! HTTP/1.1 connections, so the hottest connection is reused first and the
//! coldest ones age out, and the shared HTTP/2 connections of HTTPS
//! upstreams that choose `h2` by ALPN: a request takes the first with a
//! stream to spare under the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`, and
//! a new connection is opened when none has, so a long stream never waits
//! for another to end. A request takes a connection,
//! and its response [`Body`] puts it back the moment the last byte has been
//! read: no pool-wide map is locked per request, no key is hashed twice,
//! and no task is spawned per request (hyper's legacy pool did all three).
//! The locks are per worker and per origin, so they are never contended.
//!
//! A connection idle for [`POOL_IDLE_TIMEOUT`](super::POOL_IDLE_TIMEOUT) is
//! closed by its own task. A request that finds its reused connection
//! closed by the peer before a byte was written is sent again on a fresh
//! one, as hyper's legacy pool did; one on a fresh connection never is.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;

use super::{RequestBody, SendError};

/// Where connections go: `https` or not, and the URI's authority.
#[derive(Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    authority: Authority,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Self> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return None,
        };
        Some(Self {
            https,
            authority: uri.authority()?.clone(),
        })
    }

    fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The host, without the brackets of an IPv6 literal.
    fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    /// The `Host` header an HTTP/1.1 request to this origin carries: the
    /// port only when it is not the scheme's default.
    fn host_header(&self) -> Option<HeaderValue> {
        let host = self.authority.host();
        match self.authority.port_u16() {
            Some(port) if port != if self.https { 443 } else { 80 } => {
                HeaderValue::from_str(&format!("{host}:{port}")).ok()
            }
            _ => HeaderValue::from_str(host).ok(),
        }
    }
}

/// One worker's connections, by origin.
pub(super) struct Pool {
    /// Origins are few (one per provider base URL), so a short list,
    /// searched in order, beats hashing each request's authority.
    slots: Mutex<Vec<Arc<Slot>>>,
    /// When this pool began; idle times are counted in ms from here.
    epoch: Instant,
}

struct Slot {
    origin: Origin,
    host: Option<HeaderValue>,
    /// Idle HTTP/1.1 connections, the most recently used on top.
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connections, when the origin chose `h2`.
    h2: Mutex<Vec<H2>>,
}

/// A shared HTTP/2 connection, the streams open on it, and how many the
/// peer allows (kept current by the connection's task).
struct H2 {
    tx: http2::SendRequest<RequestBody>,
    open: Arc<AtomicUsize>,
    limit: Arc<AtomicUsize>,
}

/// One open stream of an [`H2`], counted until its response ends.
struct Stream(Arc<AtomicUsize>);

impl Stream {
    fn open(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Idle {
    tx: http1::SendRequest<RequestBody>,
    state: Arc<ConnState>,
}

/// Shared by a connection's task and whoever holds its sender: 0 while in
/// use, [`CLOSED`] once the task closed it for idleness, else the time
/// (ms since the pool's epoch, plus one) it went idle.
struct ConnState(AtomicU64);

const IN_USE: u64 = 0;
const CLOSED: u64 = u64::MAX;

/// A connection lent to one request, given back by its response body.
struct Lease {
    tx: http1::SendRequest<RequestBody>,
    state: Arc<ConnState>,
    slot: Arc<Slot>,
    pool: Arc<Pool>,
}

/// A connection just taken or made.
enum Conn {
    H1(Lease),
    H2(http2::SendRequest<RequestBody>, Stream),
}

/// How long idle connections live, and how long a TCP connect may take.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Pool {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        // Plus one, so that a connection idle since the epoch is not IN_USE.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(CLOSED - 1) + 1
    }

    fn slot(&self, origin: &Origin) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.iter().find(|s| s.origin == *origin) {
            return slot.clone();
        }
        let slot = Arc::new(Slot {
            origin: origin.clone(),
            host: origin.host_header(),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(Vec::new()),
        });
        slots.push(slot.clone());
        slot
    }
}

/// Sends `request` (its URI absolute) on a pooled or a new connection.
///
/// An `async` block rather than an `async fn`: the block keeps the request
/// once, where an `async fn` keeps its argument and the binding its body
/// sees, both for the whole exchange.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in the future"
)]
pub(super) fn send<'a>(
    pool: &'a Arc<Pool>,
    tls: &'a tokio_rustls::TlsConnector,
    settings: Settings,
    mut request: Request<RequestBody>,
) -> impl Future<Output = Result<Response<Body>, SendError>> + Send + 'a {
    async move {
        let origin = Origin::of(request.uri()).ok_or(SendError::Invalid)?;
        let slot = pool.slot(&origin);
        let absolute = request.uri().clone();
        loop {
            let (conn, reused) = match take(pool, &slot) {
                Some(conn) => (conn, true),
                // Boxed: the connect and TLS handshake futures are large, and
                // would otherwise grow every request's future (copied whole
                // into its allocation once per request) by their size.
                None => (Box::pin(connect(pool, &slot, tls, settings)).await?, false),
            };
            let returned = match conn {
                Conn::H2(mut tx, stream) => match tx.try_send_request(request).await {
                    Ok(response) => {
                        return Ok(response.map(|inner| Body {
                            inner,
                            lease: None,
                            stream: Some(stream),
                        }));
                    }
                    Err(mut e) => {
                        let Some(req) = e.take_message().filter(|_| reused) else {
                            return Err(SendError::Failed(e.into_error().into()));
                        };
                        // A shared connection went away: forget it.
                        lock(&slot.h2).retain(|c| !c.tx.is_closed());
                        req
                    }
                },
                Conn::H1(mut lease) => {
                    if let Some(host) = &slot.host {
                        request
                            .headers_mut()
                            .entry(header::HOST)
                            .or_insert_with(|| host.clone());
                    }
                    *request.uri_mut() = origin_form(&absolute);
                    match lease.tx.try_send_request(request).await {
                        Ok(response) => {
                            let lease = if response.body().is_end_stream() {
                                lease.release();
                                None
                            } else {
                                Some(lease)
                            };
                            return Ok(response.map(|inner| Body {
                                inner,
                                lease,
                                stream: None,
                            }));
                        }
                        Err(mut e) => {
                            let Some(req) = e.take_message().filter(|_| reused) else {
                                return Err(SendError::Failed(e.into_error().into()));
                            };
                            req
                        }
                    }
                }
            };
            // Not a byte was written on a connection the peer had closed
            // while it sat idle: send again, on the next idle or a new one.
            request = returned;
            *request.uri_mut() = absolute.clone();
        }
    }
}

/// The path (and query) of an absolute URI: what an HTTP/1.1 request line
/// carries.
fn origin_form(uri: &Uri) -> Uri {
    Uri::from(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    )
}

/// A live connection of the slot's: an HTTP/2 one with a stream to spare,
/// or the most recently used idle HTTP/1.1 one. Closed ones met on the way
/// are dropped.
fn take(pool: &Arc<Pool>, slot: &Arc<Slot>) -> Option<Conn> {
    {
        let mut h2 = lock(&slot.h2);
        if !h2.is_empty() {
            h2.retain(|c| !c.tx.is_closed());
            if let Some(c) = h2
                .iter()
                .find(|c| c.open.load(Ordering::Acquire) < c.limit.load(Ordering::Acquire))
            {
                return Some(Conn::H2(c.tx.clone(), Stream::open(&c.open)));
            }
        }
    }
    let mut idle = lock(&slot.idle);
    while let Some(Idle { tx, state }) = idle.pop() {
        // Taken from its idle-timer first: the timer can no longer close it.
        if state.0.swap(IN_USE, Ordering::AcqRel) == CLOSED || !tx.is_ready() {
            continue;
        }
        return Some(Conn::H1(Lease {
            tx,
            state,
            slot: slot.clone(),
            pool: pool.clone(),
        }));
    }
    None
}

async fn connect(
    pool: &Arc<Pool>,
    slot: &Arc<Slot>,
    tls: &tokio_rustls::TlsConnector,
    settings: Settings,
) -> Result<Conn, SendError> {
    let origin = &slot.origin;
    let tcp = tokio::time::timeout(
        settings.connect_timeout,
        tokio::net::TcpStream::connect((origin.host(), origin.port())),
    )
    .await
    .map_err(|_| SendError::ConnectTimeout)?
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            SendError::ConnectTimeout
        } else {
            SendError::Failed(Box::new(ConnectError(e)))
        }
    })?;
    let _ = tcp.set_nodelay(true);
    if !origin.https {
        return handshake_h1(pool, slot, tcp, settings).await;
    }
    let name =
        ServerName::try_from(origin.host().to_owned()).map_err(|e| SendError::Failed(e.into()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| SendError::Failed(Box::new(ConnectError(e))))?;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Failed(e.into()))?;
        let limit = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let seen = limit.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            // The peer's limit arrives in its SETTINGS, and may change.
            std::future::poll_fn(|cx| {
                let polled = conn.as_mut().poll(cx);
                seen.store(conn.current_max_send_streams(), Ordering::Release);
                polled
            })
            .await
        });
        let open = Arc::new(AtomicUsize::new(0));
        let stream = Stream::open(&open);
        lock(&slot.h2).push(H2 {
            tx: tx.clone(),
            open,
            limit,
        });
        return Ok(Conn::H2(tx, stream));
    }
    handshake_h1(pool, slot, stream, settings).await
}

async fn handshake_h1<I>(
    pool: &Arc<Pool>,
    slot: &Arc<Slot>,
    io: I,
    settings: Settings,
) -> Result<Conn, SendError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Failed(e.into()))?;
    let state = Arc::new(ConnState(AtomicU64::new(IN_USE)));
    tokio::spawn(drive(
        conn,
        state.clone(),
        pool.clone(),
        settings.idle_timeout,
    ));
    Ok(Conn::H1(Lease {
        tx,
        state,
        slot: slot.clone(),
        pool: pool.clone(),
    }))
}

/// A connection's task: runs it until it ends, or until it has been idle
/// for `idle_timeout`, checked every `idle_timeout`.
async fn drive<C>(conn: C, state: Arc<ConnState>, pool: Arc<Pool>, idle_timeout: Duration)
where
    C: std::future::Future<Output = hyper::Result<()>>,
{
    let limit = u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let idle_out = async {
        loop {
            tokio::time::sleep(idle_timeout).await;
            let since = state.0.load(Ordering::Acquire);
            if since != IN_USE
                && since != CLOSED
                && pool.now_ms().saturating_sub(since) >= limit
                && state
                    .0
                    .compare_exchange(since, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return;
            }
        }
    };
    // Biased: the connection first. Both run to the end of the task, so
    // the order only saves the random draw an unbiased select makes on
    // each of the task's wake-ups (three per request).
    tokio::select! {
        biased;
        _ = conn => {}
        () = idle_out => {}
    }
}

impl Lease {
    /// Back on top of its slot's stack, once its response is read. A
    /// connection still finishing that response (hyper marks it ready a
    /// moment later) is waited for by a small task; one that errs is
    /// dropped.
    fn release(self) {
        if self.tx.is_ready() {
            self.checkin();
        } else if !self.tx.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let mut lease = self;
                if lease.tx.ready().await.is_ok() {
                    lease.checkin();
                }
            });
        }
    }

    fn checkin(self) {
        let Lease {
            tx,
            state,
            slot,
            pool,
        } = self;
        state.0.store(pool.now_ms(), Ordering::Release);
        lock(&slot.idle).push(Idle { tx, state });
    }
}

/// An upstream response's body: hyper's, which hands its connection back
/// to the pool when its last byte has been read.
pub struct Body {
    inner: Incoming,
    lease: Option<Lease>,
    /// The HTTP/2 stream it holds open, counted until its end.
    stream: Option<Stream>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // A broken body leaves its connection unusable.
            Poll::Ready(Some(Err(_))) => {
                this.lease = None;
                this.stream = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body {
    fn release(&mut self) {
        self.stream = None;
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

/// A connect or TLS error, named as such in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("connect error")]
struct ConnectError(#[source] std::io::Error);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;

    fn origin(uri: &str) -> Option<Origin> {
        Origin::of(&uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn origins_are_scheme_and_authority_with_default_ports() {
        let o = origin("https://api.example.com/v1/chat").unwrap();
        assert!(o.https);
        assert_eq!((o.host(), o.port()), ("api.example.com", 443));
        assert_eq!(o.host_header().unwrap(), "api.example.com");
        let o = origin("http://127.0.0.1:8080/v1").unwrap();
        assert!(!o.https);
        assert_eq!((o.host(), o.port()), ("127.0.0.1", 8080));
        assert_eq!(o.host_header().unwrap(), "127.0.0.1:8080");
        let o = origin("http://[::1]/v1").unwrap();
        assert_eq!((o.host(), o.port()), ("::1", 80));
        assert_eq!(o.host_header().unwrap(), "[::1]");
        // A default port written out is still left out of Host.
        assert_eq!(
            origin("https://h:443/").unwrap().host_header().unwrap(),
            "h"
        );
        assert_eq!(
            origin("http://h:443/").unwrap().host_header().unwrap(),
            "h:443"
        );
        assert_eq!(
            origin("https://h:80/").unwrap().host_header().unwrap(),
            "h:80"
        );
        assert!(origin("ftp://h/x").is_none());
        assert!(origin("/relative").is_none());
        assert!(origin("http://a/") != origin("https://a/"));
        assert!(origin("http://a:1/") != origin("http://a:2/"));
    }

    #[test]
    fn http1_requests_carry_the_path_and_query_only() {
        let of = |u: &str| origin_form(&u.parse().unwrap()).to_string();
        assert_eq!(
            of("http://h:1/v1/chat/completions?x=1"),
            "/v1/chat/completions?x=1"
        );
        assert_eq!(of("http://h:1/"), "/");
        assert_eq!(of("http://h:1"), "/");
    }

    /// A loopback HTTP/1.1 server: each answer's body is the request line
    /// and its Host header; counts the connections it accepted and those
    /// that have ended.
    struct Server {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        ended: Arc<AtomicUsize>,
    }

    async fn server(keep_alive: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, e) = (accepted.clone(), ended.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let e = e.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|r: Request<Incoming>| async move {
                        let host = r.headers().get(header::HOST).cloned();
                        let line = format!(
                            "{} {} host={}",
                            r.method(),
                            r.uri(),
                            host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-")
                        );
                        Ok::<_, std::convert::Infallible>(Response::new(RequestBody::from(line)))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            addr,
            accepted,
            ended,
        }
    }

    /// A worker's client as the tests drive it: its pool, TLS that trusts
    /// nothing (the servers here are plain HTTP), and an idle timeout.
    struct Client {
        pool: Arc<Pool>,
        tls: tokio_rustls::TlsConnector,
        settings: Settings,
    }

    impl Client {
        fn new(idle_timeout: Duration) -> Self {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            Self {
                pool: Pool::new(),
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
                settings: Settings {
                    idle_timeout,
                    connect_timeout: Duration::from_secs(5),
                },
            }
        }

        async fn send(&self, request: Request<RequestBody>) -> Result<Response<Body>, SendError> {
            send(&self.pool, &self.tls, self.settings, request).await
        }

        /// GETs `path` and reads the whole answer.
        async fn fetch(&self, addr: std::net::SocketAddr, path: &str) -> String {
            text(self.send(get(addr, path)).await.unwrap()).await
        }

        fn slot(&self, addr: std::net::SocketAddr) -> Arc<Slot> {
            self.pool.slot(&origin(&format!("http://{addr}/")).unwrap())
        }
    }

    const LONG: Duration = Duration::from_secs(30);

    fn get(addr: std::net::SocketAddr, path: &str) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::default());
        *r.uri_mut() = format!("http://{addr}{path}").parse().unwrap();
        r
    }

    async fn text(r: Response<Body>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_read_answer_hands_its_connection_back_for_the_next_request() {
        let up = server(true).await;
        let client = Client::new(LONG);
        for i in 0..5 {
            assert_eq!(
                client.fetch(up.addr, &format!("/v1/x?i={i}")).await,
                format!("GET /v1/x?i={i} host=127.0.0.1:{}", up.addr.port())
            );
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&client.slot(up.addr).idle).len(), 1);
    }

    #[tokio::test]
    async fn a_client_host_header_is_kept() {
        let up = server(true).await;
        let mut request = get(up.addr, "/");
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("api.example.com"));
        let r = Client::new(LONG).send(request).await.unwrap();
        assert_eq!(text(r).await, "GET / host=api.example.com");
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_takes_its_connection_with_it() {
        let up = server(true).await;
        let client = Client::new(LONG);
        let first = client.send(get(up.addr, "/")).await.unwrap();
        drop(first);
        assert_eq!(
            client.fetch(up.addr, "/").await,
            format!("GET / host=127.0.0.1:{}", up.addr.port())
        );
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        until("the dropped answer's connection closes", || {
            up.ended.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    #[tokio::test]
    async fn connections_the_peer_closes_are_not_reused() {
        let up = server(false).await;
        let client = Client::new(LONG);
        for _ in 0..3 {
            assert!(client.fetch(up.addr, "/").await.starts_with("GET /"));
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout_and_busy_ones_do_not() {
        let up = server(true).await;
        let idle = Duration::from_millis(100);
        let client = Client::new(idle);
        let r = client.send(get(up.addr, "/")).await.unwrap();
        // Held, unread, for longer than the idle timeout: still in use.
        tokio::time::sleep(idle * 3).await;
        assert_eq!(up.ended.load(Ordering::SeqCst), 0, "closed while in use");
        assert!(text(r).await.starts_with("GET /"));
        until("the idle connection closes", || {
            up.ended.load(Ordering::SeqCst) == 1
        })
        .await;
        // The next request opens a new one.
        assert!(client.fetch(up.addr, "/").await.starts_with("GET /"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connect_errors_say_so_and_bad_uris_are_invalid() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(LONG);
        let Err(e) = client.send(get(free, "/")).await else {
            panic!("nothing listens there");
        };
        assert!(e.to_string().starts_with("connect error: "), "{e}");
        let mut relative = Request::new(RequestBody::default());
        *relative.uri_mut() = "/v1".parse().unwrap();
        let Err(e) = client.send(relative).await else {
            panic!("a relative URI was sent");
        };
        assert!(matches!(e, SendError::Invalid), "{e}");
    }

    #[tokio::test]
    async fn an_idle_connection_lives_out_its_whole_timeout() {
        let up = server(true).await;
        let client = Client::new(Duration::from_secs(1));
        let r = client.send(get(up.addr, "/")).await.unwrap();
        // In use for its first 300 ms, idle from then on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(text(r).await.starts_with("GET /"));
        // Its timer looks at 1 s, when it has been idle 0.7 s: it must
        // stay. (It goes at the next look, at 2 s.)
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(client.fetch(up.addr, "/").await.starts_with("GET /"));
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "closed early");
    }

    #[tokio::test]
    async fn a_connection_its_idle_timer_closed_is_never_taken() {
        let up = server(true).await;
        let client = Client::new(LONG);
        assert!(client.fetch(up.addr, "/").await.starts_with("GET /"));
        let slot = client.slot(up.addr);
        // As the timer leaves it, the instant before its task drops it:
        // marked closed, its sender still ready.
        {
            let idle = lock(&slot.idle);
            assert!(idle[0].tx.is_ready());
            idle[0].state.0.store(CLOSED, Ordering::SeqCst);
        }
        assert!(take(&client.pool, &slot).is_none());
        assert!(lock(&slot.idle).is_empty(), "dropped, not kept");
    }

    #[test]
    fn now_ms_counts_from_one() {
        let pool = Pool::new();
        let a = pool.now_ms();
        assert!((1..1_000).contains(&a), "{a}");
        std::thread::sleep(Duration::from_millis(20));
        let b = pool.now_ms();
        assert!(b >= a + 20 && b < a + 1_000, "{a} {b}");
    }
}
