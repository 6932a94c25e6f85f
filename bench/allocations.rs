//! Heap allocations per proxied request, counted by a counting allocator
//! around the binary's allocator (`llm_router::alloc`, mimalloc).
//!
//! One process, one current-thread runtime, on loopback: the built-in mock
//! provider, the router's own server and `Service` (as a worker runs
//! them), and a keep-alive HTTP/1.1 client. Everything in the process is
//! counted, so the client and the mock are taken out by a second run that
//! sends the same requests to the mock directly: the router's count is the
//! difference. `cargo bench --bench allocations` prints the table.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use llm_router::app::AppState;
use llm_router::config::{Config, ConfigSource, Format, StoreUrl};
use llm_router::mock::{self, MockOptions};
use llm_router::server::{self, ServerOptions};
use tokio_util::sync::CancellationToken;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the binary's allocator unchanged; the
// counters are atomics that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { llm_router::alloc::Allocator.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { llm_router::alloc::Allocator.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { llm_router::alloc::Allocator.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { llm_router::alloc::Allocator.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUESTS: u64 = 20_000;
const KEY: &str = "alloc-bench-key";
const BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#;
const STREAM: &str = r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#;
/// Content events per streamed answer (plus the role, finish, usage and
/// `[DONE]` events the mock sends around them).
const EVENTS: usize = 20;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_addr = mock.local_addr()?;
    // As `llm-router mock` does: events leave as written, not after the
    // peer's delayed ACK.
    let mock = mock.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(
            mock,
            mock::router(MockOptions {
                chunk_gap: Duration::ZERO,
                chunks: Some(EVENTS),
                ..MockOptions::default()
            }),
        )
        .await
    });

    let yaml = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {KEY}\ngroups:\n  - name: bench\n    models: [{{weight: 1, provider: mock, name: mock-model}}]\nproviders:\n  - {{name: mock, base_url: \"http://{mock_addr}/v1\", api_keys: [mock-key-0, mock-key-1]}}\n"
    );
    let config = Config::parse(&yaml, Format::Yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = AppState::new(ConfigSource::Fixed(Box::new(config)), &StoreUrl::Memory)?;
    let (public, _) = llm_router::routes::routers(app.clone());
    let service = llm_router::http::Service::public(public, app.clone(), app.upstream.new_pool());
    let listener = server::bind("127.0.0.1:0").await?;
    let router_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        server::serve(
            listener,
            service,
            ServerOptions::default(),
            stopped.cancelled_owned(),
            CancellationToken::new(),
        )
        .await
    });

    let direct = per_request(mock_addr, BODY).await?;
    let routed = per_request(router_addr, BODY).await?;
    let direct_stream = per_request(mock_addr, STREAM).await?;
    let routed_stream = per_request(router_addr, STREAM).await?;
    stop.cancel();
    app.flush_and_stop_store();
    println!("| path | allocations per request | bytes allocated per request |");
    println!("|---|---|---|");
    println!(
        "| client and mock alone (subtracted) | {:.1} | {:.0} |",
        direct.0, direct.1
    );
    println!(
        "| llm-router, OpenAI → OpenAI JSON | {:.1} | {:.0} |",
        routed.0 - direct.0,
        routed.1 - direct.1
    );
    println!(
        "| llm-router, OpenAI → OpenAI stream of {EVENTS} events | {:.1} | {:.0} |",
        routed_stream.0 - direct_stream.0,
        routed_stream.1 - direct_stream.1
    );
    Ok(())
}

/// Allocations and bytes per request over `REQUESTS` requests on one
/// keep-alive connection, after a warm-up.
async fn per_request(addr: std::net::SocketAddr, body: &'static str) -> anyhow::Result<(f64, f64)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut tx, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let request = || {
        http::Request::post("/v1/chat/completions")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {KEY}"))
            .header("accept-encoding", "identity")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
    };
    for _ in 0..1_000 {
        one(&mut tx, request()?).await?;
    }
    // Let the warm-up's stragglers (pool check-ins, timers) settle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..REQUESTS {
        one(&mut tx, request()?).await?;
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    Ok((
        (a1 - a0) as f64 / REQUESTS as f64,
        (b1 - b0) as f64 / REQUESTS as f64,
    ))
}

async fn one(
    tx: &mut http1::SendRequest<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> anyhow::Result<()> {
    tx.ready().await?;
    let response = tx.send_request(request).await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    response.into_body().collect().await?;
    Ok(())
}
