//! A provider that misbehaves at the byte level: a raw TCP server whose
//! answer the test writes by hand (an endless event, a huge body, a head
//! too large, bytes one at a time), counting what it managed to send before
//! the router hung up on it. Also the router's memory, read from /proc.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw provider saw and did.
#[derive(Default)]
pub struct RawState {
    pub connections: AtomicUsize,
    /// Body bytes written, summed over connections.
    pub written: AtomicU64,
    /// A write failed: the router closed the connection on us.
    pub hung_up: AtomicBool,
}

pub struct RawUpstream {
    pub addr: SocketAddr,
    pub state: Arc<RawState>,
}

/// One accepted connection, its request already read.
pub struct RawConn {
    pub stream: TcpStream,
    pub request: String,
    state: Arc<RawState>,
}

impl RawConn {
    /// Writes `bytes`; `false` once the router has hung up.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        let ok = self.stream.write_all(bytes).await.is_ok();
        if ok {
            self.state
                .written
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        } else {
            self.state.hung_up.store(true, Ordering::SeqCst);
        }
        ok
    }

    /// Writes a response head; the body is up to the caller.
    pub async fn head(&mut self, status: &str, headers: &[(&str, String)]) -> bool {
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let ok = self.stream.write_all(head.as_bytes()).await.is_ok();
        if !ok {
            self.state.hung_up.store(true, Ordering::SeqCst);
        }
        ok
    }
}

impl RawUpstream {
    /// Serves every connection with `answer`.
    pub async fn start<F, Fut>(answer: F) -> Self
    where
        F: Fn(RawConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(RawState::default());
        let answer = Arc::new(answer);
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let (answer, state) = (answer.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    answer(RawConn {
                        stream,
                        request,
                        state,
                    })
                    .await;
                });
            }
        });
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Reads one request (head, and a body by its Content-Length).
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

/// A process's resident memory, in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples a process's RSS every few milliseconds until stopped, keeping
/// the highest.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    pub fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_bytes(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops watching; the highest RSS seen.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::SeqCst)
    }
}
