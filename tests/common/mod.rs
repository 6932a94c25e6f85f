//! Test harness: a mock upstream the test controls, and the real router
//! binary started on a loopback port with a config the test writes.
#![allow(dead_code, reason = "each test crate uses a part of the harness")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub mod anthropic;
pub mod otlp;
pub mod pki;

pub mod raw;
pub mod sdk;
pub mod tls_upstream;

/// Serves `app` on a free loopback port, for as long as the test runs;
/// returns its address.
pub async fn serve_on_loopback(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

// ---------------------------------------------------------------- upstream

/// What the mock upstream does for requests made with one API key.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// A normal completion (JSON or SSE, as the request asks).
    Ok,
    /// This status and body, with extra headers.
    Status {
        code: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
    },
    /// Never send response headers.
    Hang,
    /// Wait, then behave normally.
    Delay(Duration),
    /// For streams: send `after` content events, then fail the connection.
    DropAfter(usize),
    /// For streams: send `after` content events, then go silent.
    StallAfter(usize),
    /// For streams: omit the usage chunk even when asked for it.
    NoUsage,
}

impl Behavior {
    /// This status with a `{}` body and no extra headers.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            body: "{}".into(),
            headers: vec![],
        }
    }
}

/// A request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub key: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
}

#[derive(Default)]
pub struct UpstreamState {
    pub requests: Mutex<Vec<Recorded>>,
    behaviors: Mutex<HashMap<String, Behavior>>,
    /// Streams whose client went away before the stream ended.
    pub cancelled: AtomicUsize,
    /// Content events per stream, and the gap between them.
    pub chunks: AtomicUsize,
    pub gap_ms: AtomicUsize,
    /// Status `/v1/models` answers with (health checks); 0 means 200.
    pub models_status: std::sync::atomic::AtomicU16,
    pub models_probes: AtomicUsize,
}

impl UpstreamState {
    /// What the mock does for requests made with `key`.
    pub fn set(&self, key: &str, behavior: Behavior) {
        self.behaviors.lock().unwrap().insert(key.into(), behavior);
    }
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
}

impl MockUpstream {
    pub async fn start() -> Self {
        let (app, state) = Self::app();
        let addr = serve_on_loopback(app).await;
        Self { addr, state }
    }

    /// The mock's routes and their state, to serve some other way (see
    /// `tls_upstream`).
    pub fn app() -> (Router, Arc<UpstreamState>) {
        let state = Arc::new(UpstreamState::default());
        state.chunks.store(5, Ordering::Relaxed);
        let app = Router::new()
            .route("/v1/chat/completions", post(upstream_chat))
            .route("/v1/models", get(upstream_models))
            .route("/v1/completions", post(upstream_other))
            .route("/v1/embeddings", post(upstream_other))
            .route("/v1/responses", post(upstream_other))
            .with_state(state.clone());
        (app, state)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, key: &str, behavior: Behavior) {
        self.state.set(key, behavior);
    }

    pub fn stream_shape(&self, chunks: usize, gap: Duration) {
        self.state.chunks.store(chunks, Ordering::Relaxed);
        self.state
            .gap_ms
            .store(gap.as_millis() as usize, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests each key received.
    pub fn count_by_key(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.requests() {
            *out.entry(r.key).or_default() += 1;
        }
        out
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

async fn upstream_models(State(state): State<Arc<UpstreamState>>) -> Response {
    state.models_probes.fetch_add(1, Ordering::SeqCst);
    match state.models_status.load(Ordering::SeqCst) {
        0 => axum::Json(json!({"object": "list", "data": []})).into_response(),
        code => StatusCode::from_u16(code).unwrap().into_response(),
    }
}

fn usage_json() -> Value {
    json!({"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
}

struct CancelGuard {
    state: Arc<UpstreamState>,
    finished: bool,
}

impl CancelGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn upstream_chat(
    State(state): State<Arc<UpstreamState>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (key, body) = record(&state, "/v1/chat/completions", headers, &raw);
    let behavior = state
        .behaviors
        .lock()
        .unwrap()
        .get(&key)
        .cloned()
        .unwrap_or(Behavior::Ok);
    match behavior {
        Behavior::Status {
            code,
            body,
            headers,
        } => {
            let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            return r;
        }
        Behavior::Hang => {
            let mut guard = CancelGuard {
                state: state.clone(),
                finished: false,
            };
            tokio::time::sleep(Duration::from_secs(3600)).await;
            guard.finish();
            return StatusCode::OK.into_response();
        }
        Behavior::Delay(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let model = body["model"].clone();
    if body["stream"] != json!(true) {
        let mut v = json!({
            "id": "chatcmpl-test", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from upstream"}, "finish_reason": "stop"}],
            "usage": usage_json(),
            "x_upstream_extra": {"kept": true},
        });
        if matches!(behavior, Behavior::NoUsage) {
            v.as_object_mut().unwrap().remove("usage");
        }
        return axum::Json(v).into_response();
    }

    let chunks = state.chunks.load(Ordering::Relaxed);
    let gap = Duration::from_millis(state.gap_ms.load(Ordering::Relaxed) as u64);
    let include_usage = body["stream_options"]["include_usage"] == json!(true)
        && !matches!(behavior, Behavior::NoUsage);
    let cut = match behavior {
        Behavior::DropAfter(n) => Some((n, true)),
        Behavior::StallAfter(n) => Some((n, false)),
        _ => None,
    };
    let chunk = move |i: usize| {
        let v = json!({"id": "c", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": {"content": format!("w{i} ")}, "finish_reason": null}]});
        Bytes::from(format!("data: {v}\n\n"))
    };
    let guard = CancelGuard {
        state: state.clone(),
        finished: false,
    };
    let stream = futures_util::stream::unfold((0usize, guard), move |(i, mut guard)| {
        let chunk = chunk.clone();
        async move {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if let Some((n, drop_it)) = cut
                && i == n
            {
                if drop_it {
                    guard.finish();
                    let err = std::io::Error::other("injected drop");
                    return Some((Err(err), (i + 1, guard)));
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if i > n_total(chunks, include_usage) {
                guard.finish();
                return None;
            }
            let event = if i < chunks {
                chunk(i)
            } else if i == chunks && include_usage {
                let v = json!({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage_json()});
                Bytes::from(format!("data: {v}\n\n"))
            } else {
                Bytes::from_static(b"data: [DONE]\n\n")
            };
            Some((Ok::<_, std::io::Error>(event), (i + 1, guard)))
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

/// Records a request; returns the API key it used and its parsed body.
fn record(state: &UpstreamState, path: &str, headers: HeaderMap, raw: &Bytes) -> (String, Value) {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(Recorded {
        path: path.into(),
        key: key.clone(),
        headers,
        raw: raw.clone(),
        body: body.clone(),
    });
    (key, body)
}

/// `/v1/completions`, `/v1/embeddings` and `/v1/responses`: canned answers
/// in each endpoint's shape, with usage, streaming where the endpoint does.
async fn upstream_other(
    State(state): State<Arc<UpstreamState>>,
    uri: http::Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let (_, body) = record(&state, uri.path(), headers, &raw);
    let stream = body["stream"] == json!(true);
    match (uri.path(), stream) {
        ("/v1/embeddings", _) => axum::Json(json!({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }))
        .into_response(),
        ("/v1/completions", false) => axum::Json(json!({
            "id": "cmpl-1", "object": "text_completion", "model": body["model"],
            "choices": [{"index": 0, "text": "legacy hello", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }))
        .into_response(),
        ("/v1/responses", false) => axum::Json(json!({
            "id": "resp_1", "object": "response", "model": body["model"],
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        }))
        .into_response(),
        ("/v1/responses", true) => {
            let events = [
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n".to_string(),
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n".to_string(),
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":3,\"total_tokens\":8}}}\n\n".to_string(),
            ];
            let s = futures_util::stream::iter(events.into_iter().map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
            let mut r = Response::new(Body::from_stream(s));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        (_, true) => {
            let events = [
                format!("data: {}\n\n", json!({"choices": [{"index": 0, "text": "legacy", "finish_reason": null}]})),
                format!("data: {}\n\n", json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}})),
                "data: [DONE]\n\n".to_string(),
            ];
            let s = futures_util::stream::iter(events.into_iter().map(|e| Ok::<_, std::io::Error>(Bytes::from(e))));
            let mut r = Response::new(Body::from_stream(s));
            r.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            r
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Index of the last event: chunks, then the usage chunk if any, then [DONE].
fn n_total(chunks: usize, include_usage: bool) -> usize {
    chunks + usize::from(include_usage)
}

// ------------------------------------------------------------------ router

pub const CLIENT_KEY: &str = "test-client-key-5f2c";

pub struct RouterProcess {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
    pub dir: Option<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl RouterProcess {
    /// Writes `config` (YAML) and starts the binary on a free loopback port.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[], &[])
    }

    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(dir, args, env)
    }

    /// Like [`RouterProcess::start_with`], in a directory the test has
    /// already put files in (certificates, say).
    pub fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let args = args.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(dir, args, env)
    }

    /// Stops the process (SIGKILL) and starts it again in the same directory,
    /// with the same config file, store file and arguments.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.take().unwrap();
        Self::spawn(
            dir,
            std::mem::take(&mut self.args),
            std::mem::take(&mut self.env),
        )
    }

    /// Waits for an exit already requested, then starts again in the same directory.
    pub fn start_again_after_exit(mut self) -> Self {
        assert!(
            self.wait_exit(Duration::from_secs(10)).is_some(),
            "router did not exit"
        );
        self.restart()
    }

    fn spawn(dir: tempfile::TempDir, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let path = dir.path().join("config.yaml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_llm-router"))
            .arg("--config")
            .arg(&path)
            .args(["--log-format", "json"])
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut l = logs.lock().unwrap();
                        l.push_str(&line);
                        l.push('\n');
                    }
                    // Announced after the line is in `logs`, so a test that
                    // reads the logs once started sees it.
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "listening"
                    {
                        let _ = tx.send(v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap());
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("router did not start; logs:\n{}", logs.lock().unwrap());
            }
        };
        Self {
            child,
            addr,
            logs,
            dir: Some(dir),
            args,
            env,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle` (lines reach them through a
    /// writer thread and a pipe, after the response the test holds).
    pub async fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {needle:?}; logs:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Request log lines (one per request), parsed.
    pub fn request_logs(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "llm_router::request")
            .collect()
    }

    /// Waits until `n` request log lines exist (streams log at their end).
    pub async fn wait_request_logs(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let logs = self.request_logs();
            if logs.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------- redis

/// A real `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GETs an admin route with `key`.
pub async fn admin_get(router: &RouterProcess, path: &str, key: &str) -> reqwest::Response {
    client()
        .get(router.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// The router's Prometheus text.
pub async fn metrics_text(router: &RouterProcess) -> String {
    client()
        .get(router.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One sample's value in Prometheus text: `name{labels}` exactly as written.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The ids `/v1/models` lists, in order.
pub async fn model_ids(router: &RouterProcess) -> Vec<String> {
    let v: Value = client()
        .get(router.url("/v1/models"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// A config with one group `g` over the given providers and models.
/// `providers`: (name, base_url, keys); `models`: (weight, provider, model).
pub fn config(
    providers: &[(&str, &str, &[&str])],
    models: &[(i64, &str, &str)],
    extra: &str,
) -> String {
    let mut out = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\n{extra}\ngroups:\n  - name: g\n    models:\n"
    );
    for (w, p, m) in models {
        out.push_str(&format!(
            "      - {{weight: {w}, provider: {p}, name: {m:?}}}\n"
        ));
    }
    out.push_str("providers:\n");
    for (name, url, keys) in providers {
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        out.push_str(&format!(
            "  - {{name: {name}, base_url: {url:?}, api_keys: [{}]}}\n",
            keys.join(", ")
        ));
    }
    out
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// POSTs a chat body with the client key.
pub async fn chat(router: &RouterProcess, body: Value) -> reqwest::Response {
    client()
        .post(router.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Starts a streaming chat request in the background; resolves to the text.
pub fn spawn_stream(router: &RouterProcess, body: Value) -> tokio::task::JoinHandle<String> {
    let url = router.url("/v1/chat/completions");
    tokio::spawn(async move {
        let r = client()
            .post(url)
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    })
}

/// Polls `check` until it holds, failing the test after `within`.
pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads an SSE response, returning each chunk with the time it arrived.
pub async fn read_timed(mut response: reqwest::Response) -> Vec<(Instant, Bytes)> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        out.push((Instant::now(), chunk));
    }
    out
}

/// `data:` payloads of a complete SSE text.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}
