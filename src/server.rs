//! Sockets and lifecycle: accept connections, serve HTTP/1.1 and HTTP/2,
//! and shut down gracefully.
//!
//! The public listener is served thread-per-core: each worker thread runs a
//! single-threaded runtime with its own listening socket (`SO_REUSEPORT`, so
//! the kernel spreads connections across them) and its own upstream client
//! pool, and a request lives on one thread from accept to response. One
//! multi-threaded runtime (work stealing) cost 30-40 % more CPU per request
//! on the benchmark machine: tasks and their futures migrating between
//! cores, and wake-ups across them.
//!
//! We drive hyper directly (rather than `axum::serve`) for the limits a
//! public listener needs: a header read timeout against slowloris, a cap on
//! header count and size, and a drain on shutdown that stops accepting, lets
//! in-flight requests finish within the drain timeout, then ends the rest.
//! With `tls`, each connection is a rustls handshake first (HTTP/2 or
//! HTTP/1.1 by ALPN), with the certificate current at accept time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::Conn;
use crate::tls::Tls;

/// Limits and timeouts for client connections.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    /// Read buffer, which bounds the size of the request head.
    pub max_head_bytes: usize,
    pub drain: Duration,
    /// Run once a second on each worker thread: the binary hands in its
    /// allocator's collect, so memory freed after a burst goes back to the
    /// system even when the worker then goes quiet.
    pub housekeeping: Option<fn()>,
    /// Serve HTTPS with this certificate (HTTP/2 or HTTP/1.1 by ALPN).
    pub tls: Option<Arc<Tls>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            drain: Duration::from_secs(30),
            housekeeping: None,
            tls: None,
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains.
/// `streams_stop` is cancelled when the drain time is up, so streams still
/// open can end themselves with an error event.
pub async fn serve(
    listener: TcpListener,
    service: crate::http::Service,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
    streams_stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_headers(options.max_headers)
        .max_buf_size(options.max_head_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_head_bytes as u32);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.for_connection(Conn {
            peer,
            tls: options.tls.is_some(),
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        // The handshake runs in the connection's task, not in this loop,
        // and within the header read timeout: a client that stalls it
        // holds only its own connection.
        let tls = options.tls.as_ref().map(|t| t.acceptor());
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let ended =
                match tls {
                    None => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::debug!(drain = ?options.drain, "listener closed: draining its connections");
    let started = std::time::Instant::now();
    tokio::select! {
        () = graceful.shutdown() => {
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
        }
        () = tokio::time::sleep(options.drain) => {
            tracing::warn!("drain timeout reached: ending remaining streams");
            streams_stop.cancel();
            // Give the relays a moment to send their final event.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Binds `n` listening sockets to `addr` with `SO_REUSEPORT`, one per
/// worker (port 0 resolves once; the others join that port). Each has the
/// deep backlog of [`bind`]. They are returned unregistered, for each
/// worker's runtime to adopt.
pub async fn bind_workers(addr: &str, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_reuseport(a, n) {
            Ok(listeners) => return Ok(listeners),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} resolves to no address"))))
}

fn bind_reuseport(mut addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let v4 = addr.is_ipv4();
    let new_socket = || {
        if v4 {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
    };
    // First a plain bind: it fails if anything already listens here. With
    // SO_REUSEPORT alone, a second router started on the same port (same
    // user) would silently share it and take half the connections.
    let probe = new_socket()?;
    probe.set_reuseaddr(true)?;
    probe.bind(addr)?;
    addr = probe.local_addr()?;
    drop(probe);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = new_socket()?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(4096)?;
        addr = listener.local_addr()?;
        out.push(listener.into_std()?);
    }
    Ok(out)
}

/// Serves each listener with its service on a thread of its own (a
/// single-threaded runtime per worker) until `shutdown` is cancelled; then
/// each drains as [`serve`] does. Returns when every worker has finished.
pub async fn serve_workers(
    workers: Vec<(std::net::TcpListener, crate::http::Service)>,
    options: ServerOptions,
    shutdown: CancellationToken,
    streams_stop: CancellationToken,
) -> std::io::Result<()> {
    let mut threads = Vec::with_capacity(workers.len());
    for (i, (listener, service)) in workers.into_iter().enumerate() {
        let (options, shutdown, streams_stop) =
            (options.clone(), shutdown.clone(), streams_stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("llm-router-worker-{i}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    if let Some(work) = options.housekeeping {
                        let stop = shutdown.clone();
                        tokio::spawn(async move {
                            let mut tick = tokio::time::interval(Duration::from_secs(1));
                            loop {
                                tokio::select! {
                                    _ = tick.tick() => work(),
                                    () = stop.cancelled() => return,
                                }
                            }
                        });
                    }
                    let listener = TcpListener::from_std(listener)?;
                    serve(
                        listener,
                        service,
                        options,
                        shutdown.cancelled_owned(),
                        streams_stop,
                    )
                    .await;
                    std::io::Result::Ok(())
                })
            })?;
        threads.push(thread);
    }
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            thread
                .join()
                .map_err(|_| std::io::Error::other("a worker thread panicked"))??;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Binds a listener with a deep accept backlog (4096; the kernel caps it at
/// `net.core.somaxconn`), so a burst of new connections is not dropped into
/// SYN retries, which clients see as one-second stalls. One socket of
/// [`bind_workers`], for the admin listener and the mock.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = bind_workers(addr, 1).await?.pop();
    TcpListener::from_std(listener.ok_or_else(|| std::io::Error::other("no listener bound"))?)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = term => tracing::info!("received SIGTERM"),
    }
}
