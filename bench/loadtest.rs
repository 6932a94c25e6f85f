//! The load benchmark: llm-router against a direct call and nginx, side by
//! side in one run so the ratios hold on a noisy machine.
//!
//! Run it with `bash bench/run.sh` (which installs oha, nginx and Redis and
//! builds in release mode). It starts, on loopback only:
//! - the built-in mock provider (`llm-router mock`, events stamped with
//!   their send time),
//! - nginx as a plain reverse proxy in front of it,
//! - llm-router four times: memory, SQLite and Redis stores (logging at
//!   warn), and memory with the default per-request info lines,
//!
//! then measures throughput at fixed concurrency (each run cut into slices
//! taken in turn across the targets, `--slices`), latency at a fixed rate,
//! CPU per request (nginx's counted over its master and workers), memory,
//! stream time to first byte at light load, and for 1,000 concurrent
//! streams the delay added to each event and the memory per open stream.
//! Everything stops by itself.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use llm_router::relay::sse::EventSplitter;
use serde_json::Value;

#[path = "chaos.rs"]
mod chaos;
#[path = "rows.rs"]
mod rows;

const KEY: &str = "bench-client-key";
const BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#;

struct Opts {
    duration: Duration,
    streams: usize,
    rate: u32,
    soak: Option<Duration>,
    out: Option<PathBuf>,
    /// Only the 1,000-stream run (memory per stream, event delay).
    streams_only: bool,
    /// Each throughput run is cut into this many slices, taken in turn
    /// across the targets, so a slow minute of the machine hits them all.
    slices: u32,
    /// Only the chaos run, for this long (see `chaos.rs`).
    chaos: Option<Duration>,
    /// Only the rows of CPU per request by path (see `rows.rs`).
    rows: bool,
}

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        duration: Duration::from_secs(10),
        streams: 1000,
        rate: 1000,
        soak: None,
        out: None,
        streams_only: false,
        slices: 5,
        chaos: None,
        rows: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().context("missing value");
        match a.as_str() {
            "--duration" => o.duration = humantime::parse_duration(&val()?)?,
            "--streams" => o.streams = val()?.parse()?,
            "--rate" => o.rate = val()?.parse()?,
            "--soak" => o.soak = Some(humantime::parse_duration(&val()?)?),
            "--out" => o.out = Some(val()?.into()),
            "--streams-only" => o.streams_only = true,
            "--slices" => o.slices = val()?.parse::<u32>()?.max(1),
            "--chaos" => o.chaos = Some(humantime::parse_duration(&val()?)?),
            "--rows" => o.rows = true,
            "--quick" => {
                o.duration = Duration::from_secs(3);
                o.streams = 200;
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(15) {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers; a SIGKILLed
    /// master would orphan them), SIGKILL if still running after 2 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> anyhow::Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc(child))
}

/// The process and its direct children (nginx's master and its workers).
fn family(pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    std::iter::once(pid)
        .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
        .collect()
}

/// [`proc_stats`] summed over a process and its children.
fn family_stats(pid: u32) -> (f64, u64, u64) {
    family(pid)
        .into_iter()
        .map(proc_stats)
        .fold((0.0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// (user + system CPU seconds, RSS bytes, peak RSS bytes) of a process.
fn proc_stats(pid: u32) -> (f64, u64, u64) {
    let ticks = clock_ticks();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let cpu = fields.get(11).zip(fields.get(12)).map_or(0.0, |(u, s)| {
        (u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0)) / ticks
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Default, Clone)]
struct Oha {
    rps: f64,
    ok: u64,
    errors: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    /// Wall time the run took, in seconds.
    secs: f64,
}

impl Oha {
    /// Adds one slice of a sliced run.
    fn add(&mut self, slice: &Oha) {
        self.ok += slice.ok;
        self.errors += slice.errors;
        self.secs += slice.secs;
        self.rps = self.ok as f64 / self.secs.max(1e-9);
    }
}

fn oha(url: &str, args: &[&str]) -> anyhow::Result<Oha> {
    oha_with(url, BODY, args)
}

/// [`oha`] with another request body.
fn oha_with(url: &str, body: &str, args: &[&str]) -> anyhow::Result<Oha> {
    let out = Command::new(oha_bin())
        .args(args)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "-m",
            "POST",
            "-T",
            "application/json",
        ])
        // Like for like: nginx and the mock never compress, so ask nobody to.
        .args([
            "-H",
            &format!("Authorization: Bearer {KEY}"),
            "-H",
            "Accept-Encoding: identity",
            "-d",
            body,
            url,
        ])
        .output()
        .context("running oha")?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("oha output")?;
    let status = v["statusCodeDistribution"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let ok = status.get("200").and_then(Value::as_u64).unwrap_or(0);
    let all: u64 = status.values().filter_map(Value::as_u64).sum();
    // Requests still in flight when the run's time is up are cut off by oha
    // ("aborted due to deadline"); they are not failures.
    let errors = all - ok
        + v["errorDistribution"].as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        });
    let p = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN);
    let secs = v["summary"]["total"].as_f64().unwrap_or(1.0);
    Ok(Oha {
        secs,
        rps: ok as f64 / secs,
        ok,
        errors,
        p50: p("p50"),
        p99: p("p99"),
        p999: p("p99.9"),
    })
}

fn oha_bin() -> String {
    std::env::var("OHA").unwrap_or_else(|_| "oha".into())
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Default, Clone)]
struct StreamStats {
    completed: usize,
    ttfb_p50_ms: f64,
    ttfb_p99_ms: f64,
    event_p50_ms: f64,
    event_p99_ms: f64,
    events: usize,
    rss_during: u64,
    /// CPU µs per event received, all in: the streams' requests, their
    /// connections and every event relayed.
    cpu_us_per_event: Option<f64>,
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `n` concurrent streams; per event, the delay from the mock's send stamp
/// to its arrival here.
async fn stream_load(
    url: &str,
    n: usize,
    pid: Option<u32>,
    cpu_pid: Option<u32>,
) -> anyhow::Result<StreamStats> {
    let cpu_before = cpu_pid.map(family_stats);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .http1_only()
        .build()?;
    let body = BODY.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let start_gate = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, body, gate) = (
                client.clone(),
                url.to_string(),
                body.clone(),
                start_gate.clone(),
            );
            tokio::spawn(async move {
                gate.wait().await;
                let t0 = Instant::now();
                let r = client
                    .post(url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let mut s = r.bytes_stream();
                let mut splitter = EventSplitter::default();
                let mut ttfb = None;
                let mut delays = Vec::with_capacity(110);
                let mut done = false;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    let now = unix_us();
                    ttfb.get_or_insert_with(|| t0.elapsed());
                    splitter.push(&chunk);
                    while let Some(ev) = splitter.next_event() {
                        let Some(data) = llm_router::relay::sse::data(&ev) else {
                            continue;
                        };
                        if &*data == b"[DONE]" {
                            done = true;
                            continue;
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&data)
                            && let Some(sent) = v["x_sent_us"].as_u64()
                        {
                            delays.push(now.saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                }
                anyhow::Ok((done, ttfb.unwrap_or_default(), delays))
            })
        })
        .collect();
    // Sample memory while every stream is open (each lasts about 5 s).
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        pid.map(|p| proc_stats(p).1).unwrap_or(0)
    });
    let mut stats = StreamStats::default();
    let (mut ttfbs, mut delays) = (Vec::new(), Vec::new());
    for t in tasks {
        if let Ok(Ok((done, ttfb, d))) = t.await {
            stats.completed += usize::from(done);
            ttfbs.push(ttfb.as_secs_f64() * 1000.0);
            delays.extend(d);
        }
    }
    stats.rss_during = sampler.await.unwrap_or(0);
    ttfbs.sort_by(f64::total_cmp);
    delays.sort_by(f64::total_cmp);
    stats.events = delays.len();
    if let (Some(pid), Some(before)) = (cpu_pid, cpu_before) {
        let spent = family_stats(pid).0 - before.0;
        stats.cpu_us_per_event = Some(spent / stats.events.max(1) as f64 * 1e6);
    }
    stats.ttfb_p50_ms = pct(&ttfbs, 0.5);
    stats.ttfb_p99_ms = pct(&ttfbs, 0.99);
    stats.event_p50_ms = pct(&delays, 0.5);
    stats.event_p99_ms = pct(&delays, 0.99);
    Ok(stats)
}

/// Time to first byte of streams at light load: `workers` clients, each
/// opening one short stream (`max_tokens: 1`) after another on a kept-alive
/// connection for `run`. (p50, p99) in ms.
async fn stream_ttfb(url: &str, workers: usize, run: Duration) -> anyhow::Result<(f64, f64)> {
    let client = reqwest::Client::builder().http1_only().build()?;
    let body = BODY.replace(
        "\"messages\"",
        "\"stream\":true,\"max_tokens\":1,\"messages\"",
    );
    let end = Instant::now() + run;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let mut ttfbs = Vec::new();
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(KEY)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let mut s = r.bytes_stream();
                    if let Some(first) = s.next().await {
                        first?;
                        ttfbs.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    while let Some(chunk) = s.next().await {
                        chunk?;
                    }
                }
                anyhow::Ok(ttfbs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok((pct(&all, 0.5), pct(&all, 0.99)))
}

struct Target {
    name: &'static str,
    url: String,
    /// llm-router's process: memory is reported for it.
    pid: Option<u32>,
    /// The process (and children) whose CPU time is counted: the router,
    /// or nginx's master with its workers.
    cpu_pid: Option<u32>,
    /// The row this one is compared with ("vs nginx"): nginx, or nginx to
    /// the same HTTPS upstream.
    reference: usize,
}

#[derive(Default)]
struct Row {
    c32: Oha,
    c256: Oha,
    c1024: Oha,
    fixed: Oha,
    /// CPU µs per request at 256 connections (the headline figure).
    cpu_us_per_req: Option<f64>,
    cpu_c32: Option<f64>,
    cpu_c1024: Option<f64>,
    rss_idle: Option<u64>,
    rss_peak: Option<u64>,
    streams: Option<StreamStats>,
    /// Stream time to first byte at light load: (p50, p99) in ms.
    ttfb: Option<(f64, f64)>,
}

fn router_config(dir: &Path, port: u16, base_url: &str, store: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("router-{port}.yaml"));
    std::fs::write(
        &path,
        format!(
            "host: 127.0.0.1\nport: {port}\napi_key: {KEY}\nstore: \"{store}\"\ngroups:\n  - name: bench\n    models: [{{weight: 1, provider: mock, name: mock-model}}]\nproviders:\n  - {{name: mock, base_url: \"{base_url}\", api_keys: [mock-key-0, mock-key-1]}}\n"
        ),
    )?;
    Ok(path)
}

/// llm-router on a free port, in front of `base_url` with `store`, its
/// environment given `env`, compared with the row `reference`.
fn start_router(
    bin: &Path,
    dir: &Path,
    name: &'static str,
    (base_url, store): (&str, &str),
    env: &[(&str, &std::ffi::OsStr)],
    reference: usize,
) -> anyhow::Result<(Target, Proc)> {
    let port = free_port();
    let cfg = router_config(dir, port, base_url, store)?;
    let p = spawn(
        name,
        Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .args(["--log-format", "json"])
            .envs(env.iter().copied())
            .current_dir(dir),
    )?;
    wait_port(port)?;
    let target = Target {
        name,
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        pid: Some(p.pid()),
        cpu_pid: Some(p.pid()),
        reference,
    };
    Ok((target, p))
}

/// nginx as a plain reverse proxy: on `port` to the mock, and on
/// `https_port` to the mock behind TLS (`front`, HTTP/1.1), with keepalive,
/// verification against `pki`'s CA and session reuse.
fn nginx_config(
    dir: &Path,
    (port, https_port): (u16, u16),
    mock: u16,
    front: u16,
    pki: &UpstreamPki,
) -> anyhow::Result<PathBuf> {
    let d = dir.display();
    let ca = pki.ca.display();
    let path = dir.join("nginx.conf");
    let common = "proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off;";
    std::fs::write(
        &path,
        format!(
            "worker_processes auto;\npid {d}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 8192; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  upstream mock {{ server 127.0.0.1:{mock}; keepalive 512; }}\n  upstream mock_tls {{ server 127.0.0.1:{front}; keepalive 512; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://mock; {common} }}\n  }}\n  server {{\n    listen 127.0.0.1:{https_port};\n    location / {{ proxy_pass https://mock_tls; {common} proxy_ssl_session_reuse on; proxy_ssl_verify on; proxy_ssl_trusted_certificate {ca}; proxy_ssl_name localhost; proxy_ssl_server_name on; }}\n  }}\n}}\n"
        ),
    )?;
    Ok(path)
}

/// The mock behind TLS, as every real provider is: nginx terminating TLS
/// for `localhost` (certificate from `pki`) on `h1` (HTTP/1.1 only) and
/// `h2` (HTTP/2 offered by ALPN), passing to the mock. Its own CPU is not
/// counted; it is the "provider".
fn front_config(
    dir: &Path,
    (h1, h2): (u16, u16),
    mock: u16,
    pki: &UpstreamPki,
) -> anyhow::Result<PathBuf> {
    let d = dir.join("front");
    std::fs::create_dir_all(&d)?;
    let d = d.display();
    let (cert, key) = (pki.cert.display(), pki.key.display());
    let path = dir.join("front.conf");
    let tls = format!(
        "ssl_certificate {cert}; ssl_certificate_key {key}; ssl_session_cache shared:front:10m; keepalive_requests 1000000;"
    );
    let pass = "location / { proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }";
    std::fs::write(
        &path,
        format!(
            "worker_processes auto;\npid {d}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 8192; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n  upstream mock {{ server 127.0.0.1:{mock}; keepalive 512; }}\n  server {{ listen 127.0.0.1:{h1} ssl; {tls} {pass} }}\n  server {{ listen 127.0.0.1:{h2} ssl http2; http2_max_requests 1000000; {tls} {pass} }}\n}}\n"
        ),
    )?;
    Ok(path)
}

/// A CA made for the run, and a certificate for `localhost` it signed.
struct UpstreamPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn upstream_pki(dir: &Path) -> anyhow::Result<UpstreamPki> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench upstream CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params = rcgen::CertificateParams::new(vec!["localhost".into()])?;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let pki = UpstreamPki {
        ca: dir.join("upstream-ca.pem"),
        cert: dir.join("upstream.crt"),
        key: dir.join("upstream.key"),
    };
    std::fs::write(&pki.ca, ca_cert.pem())?;
    std::fs::write(&pki.cert, cert.pem())?;
    std::fs::write(&pki.key, key.serialize_pem())?;
    Ok(pki)
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.2}", v * 1000.0)
    }
}

fn main() -> anyhow::Result<()> {
    let opts = parse_opts()?;
    let dir = tempfile::tempdir()?;
    let bin =
        std::env::var("LLM_ROUTER_BIN").unwrap_or_else(|_| "target/release/llm-router".into());
    let bin = std::fs::canonicalize(&bin)
        .with_context(|| format!("{bin}: build it with cargo build --release"))?;
    let secs = format!("{}s", opts.duration.as_secs());

    if opts.rows {
        let report = rows::run(&bin, dir.path(), opts.duration, opts.slices)?;
        println!("{report}");
        if let Some(path) = &opts.out {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }
    if let Some(duration) = opts.chaos {
        let report = chaos::run(&bin, dir.path(), duration)?;
        println!("{report}");
        if let Some(path) = &opts.out {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    let mock_port = free_port();
    let _mock = spawn(
        "mock",
        Command::new(&bin).args([
            "mock",
            "--port",
            &mock_port.to_string(),
            "--chunks",
            "100",
            "--gap",
            "50ms",
            "--stamp",
        ]),
    )?;
    wait_port(mock_port)?;

    let redis_port = free_port();
    let _redis = spawn(
        "redis",
        Command::new("redis-server").args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    )?;
    wait_port(redis_port)?;

    let pki = upstream_pki(dir.path())?;
    let (front_h1, front_h2) = (free_port(), free_port());
    let _front = spawn(
        "nginx (TLS front)",
        Command::new("nginx")
            .args(["-e", "stderr", "-g", "daemon off;", "-c"])
            .arg(front_config(
                dir.path(),
                (front_h1, front_h2),
                mock_port,
                &pki,
            )?),
    )?;
    wait_port(front_h1)?;
    wait_port(front_h2)?;

    let (nginx_port, nginx_https_port) = (free_port(), free_port());
    let nginx_conf = nginx_config(
        dir.path(),
        (nginx_port, nginx_https_port),
        mock_port,
        front_h1,
        &pki,
    )?;
    let nginx = spawn(
        "nginx",
        Command::new("nginx")
            .args(["-e", "stderr", "-g", "daemon off;", "-c"])
            .arg(&nginx_conf),
    )?;
    wait_port(nginx_port)?;

    let mut routers = Vec::new();
    let mut targets = vec![
        Target {
            name: "direct (floor)",
            url: format!("http://127.0.0.1:{mock_port}/v1/chat/completions"),
            pid: None,
            cpu_pid: None,
            reference: 1,
        },
        Target {
            name: "nginx",
            url: format!("http://127.0.0.1:{nginx_port}/v1/chat/completions"),
            pid: None,
            cpu_pid: Some(nginx.pid()),
            reference: 1,
        },
    ];
    // The store rows log at warn, to compare the proxy path alone; the last
    // row is the default (a JSON line per request at info, formatted and
    // written, though to /dev/null).
    for (name, store, log) in [
        ("llm-router memory", "memory".to_string(), "warn"),
        (
            "llm-router sqlite",
            format!("sqlite://{}/usage.db", dir.path().display()),
            "warn",
        ),
        (
            "llm-router redis",
            format!("redis://127.0.0.1:{redis_port}/0"),
            "warn",
        ),
        ("llm-router memory, info logs", "memory".to_string(), "info"),
    ] {
        let base_url = format!("http://127.0.0.1:{mock_port}/v1");
        let (target, p) = start_router(
            &bin,
            dir.path(),
            name,
            (&base_url, &store),
            &[("RUST_LOG", log.as_ref())],
            1,
        )?;
        targets.push(target);
        routers.push(p);
    }
    // To an HTTPS upstream: nginx, then the router over HTTP/1.1 (the
    // front offers nothing else) and over HTTP/2 (chosen by ALPN).
    let https_reference = targets.len();
    targets.push(Target {
        name: "nginx → HTTPS upstream",
        url: format!("http://127.0.0.1:{nginx_https_port}/v1/chat/completions"),
        pid: None,
        cpu_pid: Some(nginx.pid()),
        reference: https_reference,
    });
    for (name, front) in [
        ("llm-router → HTTPS upstream, HTTP/1.1", front_h1),
        ("llm-router → HTTPS upstream, HTTP/2", front_h2),
    ] {
        let base_url = format!("https://localhost:{front}/v1");
        let env = [
            ("RUST_LOG", "warn".as_ref()),
            ("SSL_CERT_FILE", pki.ca.as_os_str()),
        ];
        let (target, p) = start_router(
            &bin,
            dir.path(),
            name,
            (&base_url, "memory"),
            &env,
            https_reference,
        )?;
        targets.push(target);
        routers.push(p);
    }
    std::thread::sleep(Duration::from_secs(1));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows: Vec<Row> = targets
        .iter()
        .map(|t| Row {
            rss_idle: t.pid.map(|p| proc_stats(p).1),
            ..Row::default()
        })
        .collect();
    // Streams first, on fresh processes, so per-stream memory is not hidden
    // by (or blamed on) heap retained from the throughput runs.
    for (t, row) in targets.iter().zip(&mut rows) {
        eprintln!("== {}: {} streams", t.name, opts.streams);
        row.streams = Some(rt.block_on(stream_load(&t.url, opts.streams, t.pid, t.cpu_pid))?);
    }
    if !opts.streams_only {
        for t in &targets {
            oha(&t.url, &["-z", "2s", "-c", "32"])?; // warm-up
        }
        // Saturation, sliced: every target gets the same total time, spread
        // over the same stretch of the run.
        let slice = format!("{}ms", opts.duration.as_millis() / u128::from(opts.slices));
        for concurrency in ["32", "256", "1024"] {
            for n in 0..opts.slices {
                for (t, row) in targets.iter().zip(&mut rows) {
                    eprintln!(
                        "== {}: c={concurrency}, slice {}/{}",
                        t.name,
                        n + 1,
                        opts.slices
                    );
                    let before = t.cpu_pid.map(family_stats);
                    let r = oha(&t.url, &["-z", &slice, "-c", concurrency])?;
                    let (runs, cpu) = match concurrency {
                        "32" => (&mut row.c32, &mut row.cpu_c32),
                        "256" => (&mut row.c256, &mut row.cpu_us_per_req),
                        _ => (&mut row.c1024, &mut row.cpu_c1024),
                    };
                    if let (Some(pid), Some(b)) = (t.cpu_pid, before) {
                        let after = family_stats(pid);
                        *cpu.get_or_insert(0.0) += after.0 - b.0;
                        row.rss_peak = t.pid.map(|_| after.2.max(row.rss_peak.unwrap_or(0)));
                    }
                    runs.add(&r);
                }
            }
        }
        for row in &mut rows {
            for (cpu, ok) in [
                (&mut row.cpu_c32, row.c32.ok),
                (&mut row.cpu_us_per_req, row.c256.ok),
                (&mut row.cpu_c1024, row.c1024.ok),
            ] {
                if let Some(cpu) = cpu {
                    *cpu = *cpu / ok.max(1) as f64 * 1e6;
                }
            }
        }
        for (t, row) in targets.iter().zip(&mut rows) {
            eprintln!("== {}: fixed rate, stream TTFB", t.name);
            row.fixed = oha(
                &t.url,
                &[
                    "-z",
                    &secs,
                    "-c",
                    "64",
                    "-q",
                    &opts.rate.to_string(),
                    "--latency-correction",
                ],
            )?;
            row.ttfb = Some(rt.block_on(stream_ttfb(&t.url, 16, Duration::from_secs(3)))?);
        }
    }

    let report = render(&targets, &rows, &opts);
    println!("{report}");
    if let Some(path) = &opts.out {
        std::fs::write(path, &report)?;
    }

    if let Some(soak) = opts.soak {
        let t = &targets[2];
        let pid = t.pid.unwrap_or(0);
        eprintln!("== soak: {} for {soak:?} at 500 req/s", t.name);
        let url = t.url.clone();
        let secs = format!("{}s", soak.as_secs());
        let load = std::thread::spawn(move || oha(&url, &["-z", &secs, "-c", "32", "-q", "500"]));
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed() < soak {
            samples.push((start.elapsed().as_secs(), proc_stats(pid).1));
            std::thread::sleep(Duration::from_secs(10));
        }
        let r = load
            .join()
            .map_err(|_| anyhow::anyhow!("soak load panicked"))??;
        println!(
            "\nSoak ({} requests, {} errors), RSS over time:",
            r.ok, r.errors
        );
        for (at, rss) in &samples {
            println!("  t={at:>4}s  RSS {:.1} MB", *rss as f64 / 1e6);
        }
    }
    Ok(())
}

fn render(targets: &[Target], rows: &[Row], opts: &Opts) -> String {
    let direct = &rows[0];
    let mb = |b: Option<u64>| b.map_or("–".into(), |b| format!("{:.1}", b as f64 / 1e6));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {} cores, {}; load generator, mock and proxies share it. {}s per throughput run, taken in {} slices interleaved across the targets; {} streams of 100 events at 20/s; fixed rate {}/s; stream TTFB at light load: 16 clients opening one short stream after another for 3 s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default(),
        opts.duration.as_secs(),
        opts.slices,
        opts.streams,
        opts.rate
    );
    if !opts.streams_only {
        let _ = writeln!(
            s,
            "| target | req/s c=32 | req/s c=256 | req/s c=1024 | vs direct | vs nginx | p50 ms @{r}/s | p99 ms | p99.9 ms | added p50 µs | added p99 µs | CPU µs/req c=256 | CPU vs nginx | CPU µs/req c=32 | CPU µs/req c=1024 | RSS idle MB | RSS peak MB | errors |",
            r = opts.rate
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (t, r) in targets.iter().zip(rows) {
            let added = |a: f64, b: f64| {
                if a.is_nan() || b.is_nan() {
                    "–".into()
                } else {
                    format!("{:.0}", (a - b) * 1e6)
                }
            };
            let nginx = &rows[t.reference];
            let us = |c: Option<f64>| c.map_or("–".into(), |c| format!("{c:.1}"));
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.name,
                r.c32.rps,
                r.c256.rps,
                r.c1024.rps,
                r.c256.rps / direct.c256.rps,
                r.c256.rps / nginx.c256.rps,
                ms(r.fixed.p50),
                ms(r.fixed.p99),
                ms(r.fixed.p999),
                added(r.fixed.p50, direct.fixed.p50),
                added(r.fixed.p99, direct.fixed.p99),
                us(r.cpu_us_per_req),
                r.cpu_us_per_req
                    .zip(nginx.cpu_us_per_req)
                    .map_or("–".into(), |(a, b)| format!("{:.2}×", a / b)),
                us(r.cpu_c32),
                us(r.cpu_c1024),
                mb(r.rss_idle),
                mb(r.rss_peak),
                r.c32.errors + r.c256.errors + r.c1024.errors + r.fixed.errors,
            );
        }
    }
    let _ = writeln!(
        s,
        "\n| streams | TTFB p50 ms, light load | TTFB p99 ms, light load | TTFB added p50 µs | completed (1,000 at once) | TTFB p50 ms | TTFB p99 ms | event delay p50 ms | event delay p99 ms | events | CPU µs/event | RSS with streams open MB | per open stream KiB |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let direct_ttfb = direct.ttfb.map_or(f64::NAN, |t| t.0);
    let ms3 = |v: f64| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{v:.3}")
        }
    };
    for (t, r) in targets.iter().zip(rows) {
        if let Some(st) = &r.streams {
            let per = match (r.rss_idle, t.pid) {
                (Some(idle), Some(_)) if st.rss_during > idle => format!(
                    "{:.1}",
                    (st.rss_during - idle) as f64 / 1024.0 / opts.streams as f64
                ),
                _ => "–".into(),
            };
            let (ttfb50, ttfb99) = r.ttfb.unwrap_or((f64::NAN, f64::NAN));
            let added = if ttfb50.is_nan() || direct_ttfb.is_nan() {
                "–".to_string()
            } else {
                format!("{:.0}", (ttfb50 - direct_ttfb) * 1000.0)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}/{} | {:.2} | {:.2} | {:.3} | {:.3} | {} | {} | {} | {} |",
                t.name,
                ms3(ttfb50),
                ms3(ttfb99),
                added,
                st.completed,
                opts.streams,
                st.ttfb_p50_ms,
                st.ttfb_p99_ms,
                st.event_p50_ms,
                st.event_p99_ms,
                st.events,
                st.cpu_us_per_event
                    .map_or("–".into(), |c| format!("{c:.1}")),
                if t.pid.is_some() {
                    format!("{:.1}", st.rss_during as f64 / 1e6)
                } else {
                    "–".into()
                },
                per
            );
        }
    }
    s
}
