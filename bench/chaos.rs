//! The chaos row: steady traffic where one request in ten goes to a provider
//! that misbehaves in every way a provider can (`--chaos 5m`).
//!
//! A router serves two groups: `bench` (the mock provider) and `chaos`
//! (a provider in this process that answers each connection with the next
//! misbehaviour in turn: an endless SSE event, an 8 MB answer, a body that
//! stalls, a redirect to a metadata address, a bare 404 page, gzip claimed
//! but not sent). 450 req/s go to `bench` and 50 req/s to `chaos`, for the
//! whole run. The healthy share must see no error; the router's RSS is read
//! every second.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{KEY, free_port, oha_with, proc_stats, spawn, wait_port};

const CHAOS_BODY: &str =
    r#"{"model":"chaos","messages":[{"role":"user","content":"Misbehave, please."}]}"#;
const HEALTHY_BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"Hello, how are you today?"}]}"#;

/// What the chaos provider does, in turn.
const KINDS: [&str; 6] = [
    "endless event",
    "8 MB answer",
    "stalled body",
    "redirect",
    "bare 404",
    "gzip claimed",
];

/// Reads a request head and its Content-Length body.
async fn read_request(s: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

async fn misbehave(mut s: TcpStream, kind: usize) {
    if read_request(&mut s).await.is_none() {
        return;
    }
    let head = |extra: &str| format!("HTTP/1.1 200 OK\r\nconnection: close\r\n{extra}\r\n");
    match kind {
        0 => {
            let _ = s
                .write_all(head("content-type: text/event-stream\r\n").as_bytes())
                .await;
            let _ = s.write_all(b"data: ").await;
            let block = vec![b'a'; 64 * 1024];
            for _ in 0..1024 {
                if s.write_all(&block).await.is_err() {
                    return;
                }
            }
        }
        1 => {
            let start = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""#;
            let end = br#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}"#;
            let size = 8 * 1024 * 1024;
            let length = start.len() + size + end.len();
            let h = head(&format!(
                "content-type: application/json\r\ncontent-length: {length}\r\n"
            ));
            let _ = s.write_all(h.as_bytes()).await;
            let _ = s.write_all(start).await;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..size / block.len() {
                if s.write_all(&block).await.is_err() {
                    return;
                }
            }
            let _ = s.write_all(end).await;
        }
        2 => {
            let _ = s
                .write_all(
                    head("content-type: application/json\r\ncontent-length: 1000\r\n").as_bytes(),
                )
                .await;
            let _ = s.write_all(br#"{"id":"#).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        3 => {
            let _ = s
                .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
        4 => {
            let page = "<html><body><h1>404 Not Found</h1></body></html>";
            let h = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = s.write_all(h.as_bytes()).await;
        }
        _ => {
            let body = r#"{"choices":[{"message":{"content":"plain"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
            let h = head(&format!(
                "content-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n",
                body.len()
            ));
            let _ = s.write_all(h.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        }
    }
}

/// Starts the chaos provider on a loopback port.
fn chaos_provider(rt: &tokio::runtime::Runtime) -> anyhow::Result<u16> {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let kind = next.fetch_add(1, Ordering::Relaxed) % KINDS.len();
            tokio::spawn(misbehave(s, kind));
        }
    });
    Ok(port)
}

/// Runs the chaos row and returns its report.
pub fn run(bin: &Path, dir: &Path, duration: Duration) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let chaos_port = chaos_provider(&rt)?;
    let mock_port = free_port();
    let _mock = spawn(
        "mock",
        Command::new(bin).args(["mock", "--port", &mock_port.to_string()]),
    )?;
    wait_port(mock_port)?;
    let port = free_port();
    let cfg = dir.join("chaos.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: 127.0.0.1\nport: {port}\napi_key: {KEY}\nstore: memory\ntimeouts: {{idle: 5s}}\ngroups:\n  - name: bench\n    models: [{{provider: mock, name: mock-model}}]\n  - name: chaos\n    models: [{{provider: chaos, name: chaos-model}}]\nproviders:\n  - {{name: mock, base_url: \"http://127.0.0.1:{mock_port}/v1\", api_keys: [mock-key]}}\n  - {{name: chaos, base_url: \"http://127.0.0.1:{chaos_port}/v1\", api_keys: [chaos-key]}}\n"
        ),
    )?;
    let router = spawn(
        "llm-router (chaos)",
        Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "error")
            .current_dir(dir),
    )?;
    wait_port(port)?;
    let pid = router.pid();
    std::thread::sleep(Duration::from_secs(1));
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let secs = format!("{}s", duration.as_secs());
    eprintln!("== chaos: {secs}, 450 req/s healthy + 50 req/s to a misbehaving provider");
    let start_rss = proc_stats(pid).1;
    let (u, s) = (url.clone(), secs.clone());
    let healthy = std::thread::spawn(move || {
        oha_with(&u, HEALTHY_BODY, &["-z", &s, "-c", "32", "-q", "450"])
    });
    let chaos = std::thread::spawn(move || {
        oha_with(&url, CHAOS_BODY, &["-z", &secs, "-c", "128", "-q", "50"])
    });
    let started = Instant::now();
    let mut peak = start_rss;
    let mut samples = Vec::new();
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        let rss = proc_stats(pid).1;
        peak = peak.max(rss);
        samples.push(rss);
    }
    let healthy = healthy
        .join()
        .map_err(|_| anyhow::anyhow!("load panicked"))??;
    let chaos = chaos
        .join()
        .map_err(|_| anyhow::anyhow!("load panicked"))??;
    std::thread::sleep(Duration::from_secs(10));
    let end_rss = proc_stats(pid).1;
    let mb = |b: u64| format!("{:.1}", b as f64 / 1e6);
    let mut out = String::new();
    out.push_str(&format!(
        "Chaos ({secs_}, 450 req/s healthy + 50 req/s to a provider cycling through: {kinds}):\n\n\
         | share | requests answered 200 | errors | p50 ms | p99 ms |\n|---|---|---|---|---|\n\
         | healthy (group bench) | {} | {} | {:.2} | {:.2} |\n\
         | chaos (group chaos) | {} | {} (expected: its answers are failures) | {:.2} | {:.2} |\n\n\
         Router RSS: start {} MB, peak {} MB, end {} MB (10 s after the load).\n",
        healthy.ok,
        healthy.errors,
        healthy.p50 * 1000.0,
        healthy.p99 * 1000.0,
        chaos.ok,
        chaos.errors,
        chaos.p50 * 1000.0,
        chaos.p99 * 1000.0,
        mb(start_rss),
        mb(peak),
        mb(end_rss),
        secs_ = duration.as_secs(),
        kinds = KINDS.join(", "),
    ));
    drop(router);
    drop(rt);
    Ok(out)
}
