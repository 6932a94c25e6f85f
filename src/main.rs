//! The `llm-router` binary: parses the command line and wires the modules
//! together. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use llm_router::app::AppState;
use llm_router::config::StoreUrl;
use llm_router::config::overlay::Overlay;
use llm_router::config::{Config, Secret};
use llm_router::config::{ConfigError, ConfigSource, Effective, Problem};
use llm_router::mock::{self, MockOptions};
use llm_router::reload;
use llm_router::server::{self, ServerOptions};
use llm_router::tasks::{Tasks, Watched};
use llm_router::telemetry::{self, LogFormat, traces};
use llm_router::tls::{Tls, TlsFiles};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// mimalloc: glibc's allocator showed up in profiles as ~15% of CPU, much of
/// it arena-lock contention between the runtime's worker threads. See
/// `alloc` for why it is not `mimalloc::MiMalloc` itself.
#[global_allocator]
static GLOBAL: llm_router::alloc::Allocator = llm_router::alloc::Allocator;

/// mimalloc's default commits arena memory eagerly: in the benchmark that
/// cost ~30 KiB of RSS per open stream (~80 KiB in all, against ~51 KiB
/// without it). The option must be set before the first allocation, so this
/// runs from `.init_array`, before Rust's runtime starts. An operator's own
/// `MIMALLOC_ARENA_EAGER_COMMIT` still wins.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_MIMALLOC: extern "C" fn() = configure_mimalloc;

#[cfg(target_os = "linux")]
extern "C" fn configure_mimalloc() {
    unsafe extern "C" {
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }
    // The index in mimalloc v3's `mi_option_e` (libmimalloc-sys does not
    // export the name).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    // SAFETY: getenv with a NUL-terminated name, and a plain setter of
    // mimalloc's option table; both run once, before any allocation and
    // before any other thread exists.
    unsafe {
        if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }
}

/// Hands memory freed after a burst (large answers relayed at once, say)
/// back to the system. mimalloc purges freed pages after a delay, but only
/// when the allocator runs again on that thread; a worker that goes quiet
/// after a burst would keep its peak (a burst of sixteen 20 MB answers left
/// RSS 19 MB up; collected, it falls back within 10 MB). Each worker calls
/// this once a second.
fn collect_freed_memory() {
    // SAFETY: a plain call into the allocator. Forced: also purges what
    // freed pages hold in the arenas (about 1 ms, once a second).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[derive(Parser)]
#[command(
    name = "llm-router",
    version,
    about = "An OpenAI-compatible LLM router and gateway"
)]
struct Cli {
    /// Config file (.yaml, .yml or .json).
    #[arg(
        short,
        long,
        env = "LLM_ROUTER_CONFIG",
        default_value = "config.yaml",
        global = true
    )]
    config: PathBuf,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Threads serving the public listener, each with its own socket and
    /// runtime; 0 means one per CPU.
    #[arg(long, env = "LLM_ROUTER_WORKERS", default_value_t = 0, global = true)]
    workers: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the config file (the default when no command is given).
    Serve,
    /// Validate the config file, list every problem, and exit non-zero if any.
    Check,
    /// Serve a built-in demo config backed by the mock provider: no API key or network needed.
    Demo {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The key clients use against the demo router.
        #[arg(long, default_value = "sk-demo")]
        api_key: String,
        /// The key for the dashboard (/ui) and admin API.
        #[arg(long, default_value = "sk-demo-admin")]
        admin_key: String,
    },
    /// Probe a running router's /health (for container health checks).
    Healthcheck {
        /// Defaults to http://127.0.0.1:<port from the config>/health.
        #[arg(long)]
        url: Option<String>,
    },
    /// Run only the mock provider (used by the benchmark).
    Mock {
        #[arg(long, default_value_t = 9090)]
        port: u16,
        /// Content events per stream (default: one per word).
        #[arg(long)]
        chunks: Option<usize>,
        /// Gap between stream events.
        #[arg(long, default_value = "40ms", value_parser = humantime::parse_duration)]
        gap: Duration,
        /// Delay before response headers.
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        delay: Duration,
        /// Stamp each stream event with its send time (x_sent_us).
        #[arg(long)]
        stamp: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Check => check(&cli),
        Command::Healthcheck { url } => healthcheck(&cli, url.clone()),
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // The config is read before logging starts, as it says where
            // traces go; should it be invalid, that is logged just below.
            let source = ConfigSource::File(cli.config.clone());
            let loaded = match command {
                Command::Serve => Some(load(&source)),
                _ => None,
            };
            let traces = match (command, &loaded) {
                (Command::Mock { .. }, _) | (_, Some(Err(_))) => Ok(None),
                (_, Some(Ok((_, effective)))) => effective.applied.trace_settings(),
                // The demo: traces only if the environment asks.
                (_, None) => {
                    traces::Settings::resolve(Default::default(), |v| std::env::var(v).ok())
                }
            };
            // The trace exporter's task runs on this runtime.
            let _in_runtime = runtime.enter();
            let started = traces.and_then(|settings| {
                settings
                    .map(|s| traces::Pipeline::start(&s).map(|(p, tracer)| (p, tracer, s)))
                    .transpose()
            });
            let (pipeline, tracer, settings) = match started {
                Ok(Some((pipeline, tracer, settings))) => {
                    (Some(pipeline), Some(tracer), Some(settings))
                }
                Ok(None) => (None, None, None),
                Err(e) => {
                    eprintln!("tracing: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let flush_logs_on_exit = telemetry::init(cli.log_format, tracer);
            if let Some(s) = settings {
                tracing::info!(
                    endpoint = %s.describe_endpoint(),
                    protocol = ?s.protocol,
                    sample_ratio = s.sample_ratio,
                    capture_content = s.capture_content,
                    "exporting traces"
                );
            }
            let result = runtime.block_on(async {
                match command {
                    Command::Demo {
                        port,
                        host,
                        api_key,
                        admin_key,
                    } => demo(host, *port, api_key, admin_key, cli.workers).await,
                    Command::Mock {
                        port,
                        chunks,
                        gap,
                        delay,
                        stamp,
                    } => {
                        let options = MockOptions {
                            name: "mock".into(),
                            first_byte_delay: *delay,
                            chunk_gap: *gap,
                            chunks: *chunks,
                            stamp: *stamp,
                        };
                        run_mock(*port, options).await
                    }
                    _ => match loaded {
                        Some(Ok(loaded)) => run(source, Some(loaded), None, cli.workers).await,
                        Some(Err(e)) => Err(anyhow::anyhow!("invalid config: {e}")),
                        None => unreachable!("serve always loads its config"),
                    },
                }
            });
            if let Some(pipeline) = pipeline {
                pipeline.shutdown();
            }
            let code = match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            };
            drop(flush_logs_on_exit);
            code
        }
    }
}

/// The config file and its dashboard overlay, as `serve` runs them.
fn load(source: &ConfigSource) -> Result<(Overlay, Effective), ConfigError> {
    let overlay = source.load_overlay()?;
    let effective = source.load(&overlay)?;
    Ok((overlay, effective))
}

/// Validates what `serve` would run: the file plus its dashboard overlay.
fn check(cli: &Cli) -> ExitCode {
    let source = ConfigSource::File(cli.config.clone());
    let loaded = source
        .load_overlay()
        .and_then(|overlay| source.load(&overlay))
        .map(|effective| effective.routable);
    match loaded {
        Ok(config) => {
            // The certificates: present, readable, matching, in date.
            let now = std::time::SystemTime::now();
            let mut warnings = config.warnings();
            let mut problems = Vec::new();
            for (at, tls) in [("tls", &config.tls), ("admin_tls", &config.admin_tls)] {
                let Some(tls) = tls else { continue };
                match llm_router::tls::load(&tls_files(tls), now) {
                    Ok((_, info)) if info.expires_soon(now) => warnings.push(Problem::new(
                        at,
                        format!(
                            "the certificate expires in {} days ({})",
                            info.remaining(now).as_secs() / 86_400,
                            humantime::format_rfc3339_seconds(info.not_after)
                        ),
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(Problem::new(at, e)),
                }
            }
            if !problems.is_empty() {
                let file = cli.config.clone();
                eprint!("{}", ConfigError { file, problems });
                return ExitCode::from(2);
            }
            println!(
                "{}: OK ({} groups, {} providers)",
                cli.config.display(),
                config.groups.len(),
                config.providers.len()
            );
            for warning in warnings {
                println!("  warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(2)
        }
    }
}

fn healthcheck(cli: &Cli, url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let port = Config::load(&cli.config).map_or(8080, |c| c.port);
        format!("http://127.0.0.1:{port}/health")
    });
    let probe = async {
        let upstream = llm_router::upstream::Upstream::new(&Default::default())?;
        let mut request = http::Request::new(llm_router::upstream::RequestBody::default());
        *request.uri_mut() = url.parse()?;
        let response = tokio::time::timeout(Duration::from_secs(3), upstream.send(request))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 3 s"))??;
        anyhow::ensure!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        anyhow::Ok(())
    };
    let ok = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(probe));
    match ok {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, serves until SIGTERM/SIGINT, drains, then flushes usage.
async fn run(
    source: ConfigSource,
    loaded: Option<(Overlay, Effective)>,
    store: Option<StoreUrl>,
    workers: usize,
) -> anyhow::Result<()> {
    let invalid = |e: llm_router::config::ConfigError| anyhow::anyhow!("invalid config: {e}");
    let watched = match &source {
        ConfigSource::File(path) => Some(Watched {
            loaded: reload::file_fingerprint(path),
            path: path.clone(),
            every: Duration::from_secs(1),
        }),
        ConfigSource::Fixed(_) => None,
    };
    let (overlay, effective) = match loaded {
        Some(loaded) => loaded,
        None => load(&source).map_err(invalid)?,
    };
    let store = match store {
        Some(s) => s,
        None => effective.applied.store_url().map_err(anyhow::Error::msg)?,
    };
    tracing::info!(config = %source.describe(), store = %store.describe(), "config loaded");
    let config = effective.routable.clone();
    let public_tls = listener_tls(config.tls.as_ref(), "tls")?;
    let admin_tls = match (&config.admin_listen, &config.admin_tls) {
        (Some(_), Some(own)) => listener_tls(Some(own), "admin_tls")?,
        (Some(_), None) => public_tls.clone(),
        (None, _) => None,
    };
    let addr = format!("{}:{}", config.host, config.port);
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let listeners = server::bind_workers(&addr, workers)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listeners[0].local_addr()?;
    let groups = config.groups.len();
    let drain = config.timeouts.drain;
    let options = ServerOptions {
        drain,
        header_read_timeout: config.timeouts.header_read,
        housekeeping: Some(collect_freed_memory),
        tls: public_tls.clone(),
        ..ServerOptions::default()
    };
    let admin_listener = match &config.admin_listen {
        Some(addr) => Some(
            server::bind(addr)
                .await
                .with_context(|| format!("cannot listen on admin_listen {addr}"))?,
        ),
        None => None,
    };
    let app = AppState::with_effective(source, effective, overlay, &store)?;
    let streams_stop = app.streams_stop.clone();
    let mut tasks = Tasks::start(&app, watched);
    let mut certs = Vec::new();
    if let Some(tls) = &public_tls {
        certs.push(("public", tls.clone()));
    }
    if let Some(tls) = admin_tls.as_ref().filter(|_| config.admin_tls.is_some()) {
        certs.push(("admin", tls.clone()));
    }
    tasks.watch_certificates(certs, app.metrics.clone(), Duration::from_secs(1));
    let scheme = if public_tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(addr = %local, scheme, groups, workers, version = env!("CARGO_PKG_VERSION"), "listening");
    let (public, operator) = llm_router::routes::routers(app.clone());
    let admin = async {
        if let (Some(listener), Some(router)) = (admin_listener, operator) {
            let scheme = if admin_tls.is_some() { "https" } else { "http" };
            tracing::info!(addr = %listener.local_addr()?, scheme, "admin listening");
            let options = ServerOptions {
                drain: Duration::from_secs(1),
                tls: admin_tls.clone(),
                ..ServerOptions::default()
            };
            server::serve(
                listener,
                llm_router::http::Service::router_only(router),
                options,
                server::shutdown_signal(),
                CancellationToken::new(),
            )
            .await;
        }
        anyhow::Ok(())
    };
    // Each worker gets its own upstream client, so its pool (and the tasks
    // driving its connections) stay on its thread.
    let mut served = Vec::with_capacity(listeners.len());
    for listener in listeners {
        let upstream = app.upstream.new_pool();
        let service = llm_router::http::Service::public(public.clone(), app.clone(), upstream);
        served.push((listener, service));
    }
    let shutdown = CancellationToken::new();
    let main = async {
        let workers = server::serve_workers(served, options, shutdown.clone(), streams_stop);
        tokio::pin!(workers);
        tokio::select! {
            ended = &mut workers => return ended,
            () = server::shutdown_signal() => {}
        }
        tracing::info!(drain = ?drain, "shutting down: draining in-flight requests");
        shutdown.cancel();
        workers.await
    };
    let (served, admin) = tokio::join!(main, admin);
    tasks.stop().await;
    served?;
    admin?;
    tokio::task::spawn_blocking(move || app.flush_and_stop_store()).await?;
    tracing::info!("usage flushed; stopped");
    Ok(())
}

/// A listener's certificate, read and checked (the error names the file
/// and what is wrong with it).
fn listener_tls(
    config: Option<&llm_router::config::TlsConfig>,
    at: &str,
) -> anyhow::Result<Option<Arc<Tls>>> {
    let Some(config) = config else {
        return Ok(None);
    };
    let tls = Tls::load(tls_files(config)).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    let info = tls.info();
    tracing::info!(
        listener = at,
        subject = %info.subject,
        expires = %humantime::format_rfc3339_seconds(info.not_after),
        mtls = config.client_ca.is_some(),
        "certificate loaded"
    );
    Ok(Some(Arc::new(tls)))
}

fn tls_files(config: &llm_router::config::TlsConfig) -> TlsFiles {
    TlsFiles {
        cert: config.cert.clone().into(),
        key: config.key.clone().into(),
        client_ca: config.client_ca.clone().map(Into::into),
    }
}

async fn demo(
    host: &str,
    port: u16,
    api_key: &str,
    admin_key: &str,
    workers: usize,
) -> anyhow::Result<()> {
    let mut upstreams = Vec::new();
    for name in ["mock-a", "mock-b"] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let options = MockOptions {
            name: name.into(),
            ..MockOptions::default()
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, mock::router(options)).await;
        });
        upstreams.push((name, addr));
    }
    let yaml = format!(
        r#"
host: "{host}"
port: {port}
groups:
  - name: demo
    models:
      - {{weight: 1, provider: mock-a, name: mock-large}}
      - {{weight: 2, provider: mock-b, name: mock-small}}
  - name: demo-fast
    models:
      - {{weight: 0, provider: mock-b, name: mock-small}}
  - name: claude
    models:
      - {{weight: 1, provider: mock-anthropic, name: mock-claude}}
      - {{weight: 2, provider: mock-a, name: mock-large}}
aliases:
  gpt-4o-mini: demo-fast
  claude-sonnet-4-5: claude
providers:
  - {{name: mock-a, base_url: "http://{a}/v1", api_keys: [mock-key-a0, mock-key-a1]}}
  - {{name: mock-b, base_url: "http://{b}/v1", api_keys: [mock-key-b0], direct: true}}
  - {{name: mock-anthropic, type: anthropic, base_url: "http://{b}/v1", api_keys: [mock-key-c0]}}
"#,
        a = upstreams[0].1,
        b = upstreams[1].1,
    );
    let mut config = Config::parse(&yaml, llm_router::config::Format::Yaml)
        .map_err(|p| anyhow::anyhow!("demo config: {p}"))?;
    config.api_key = Some(Secret::new(api_key));
    config.admin_key = Some(Secret::new(admin_key));
    // The demo keeps usage in memory unless told otherwise.
    let store = match std::env::var("LLM_ROUTER_STORE") {
        Ok(raw) if !raw.is_empty() => StoreUrl::parse(&raw).map_err(anyhow::Error::msg)?,
        _ => StoreUrl::Memory,
    };
    tracing::info!(
        "demo mode: mock providers only. Dashboard: http://{host}:{port}/ui (admin key {admin_key}). Try:\n  curl http://{host}:{port}/v1/chat/completions -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' -d '{{\"model\":\"demo\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\nor point an Anthropic client at it: ANTHROPIC_BASE_URL=http://{host}:{port} ANTHROPIC_AUTH_TOKEN={api_key}, model claude-sonnet-4-5"
    );
    run(
        ConfigSource::Fixed(Box::new(config)),
        None,
        Some(store),
        workers,
    )
    .await
}

async fn run_mock(port: u16, options: MockOptions) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let listener = server::bind(&format!("127.0.0.1:{port}")).await?;
    tracing::info!(addr = %listener.local_addr()?, "mock provider listening");
    // Events leave as written: with Nagle's algorithm on, a stream's
    // second small write would wait for the router's delayed ACK (40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, mock::router(options))
        .with_graceful_shutdown(server::shutdown_signal())
        .await?;
    Ok(())
}
