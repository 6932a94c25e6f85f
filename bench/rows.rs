//! Rows of CPU per request for paths beside the plain proxy hop
//! (`--rows`): the same router, the same mock, one run, each row's load
//! cut into slices taken in turn, so the rows compare like for like.
//!
//! - OpenAI to OpenAI, JSON and streamed: the byte-for-byte path, the
//!   reference the others are read against;
//! - Anthropic's Messages to an OpenAI provider, JSON and streamed;
//! - OpenAI to an Anthropic provider, JSON and streamed;
//! - cache hits (a group with `cache: true`, every request the same),
//!   JSON and streamed;
//! - tracing on: a second router, the same config plus `tracing:` with
//!   `sample_ratio: 1.0`, exporting every span to the mock's OTLP sink;
//! - TLS on the listener: a third router with `tls:` (a self-signed
//!   certificate made here), over HTTP/1.1 and HTTP/2. Connections are
//!   kept alive, so a row measures encryption per request, not handshakes.
//!
//! The mock answers at once (streams of 20 events, no gap), so a row
//! measures the router's work, not the mock's pacing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{KEY, Oha, family_stats, free_port, oha_with, spawn, wait_port};

/// One row: what is sent where, and to which router.
struct RowSpec {
    name: &'static str,
    path: &'static str,
    body: &'static str,
    on: On,
    /// Extra oha flags (`--http2`).
    flags: &'static [&'static str],
}

/// Which router a row is sent to: one config, with nothing more, with
/// `tracing:`, or with `tls:`.
#[derive(Clone, Copy, PartialEq)]
enum On {
    Plain,
    Traced,
    Tls,
}

const ROWS: [RowSpec; 12] = [
    RowSpec {
        name: "OpenAI → OpenAI, JSON (byte for byte)",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, stream of 20 events",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","stream":true,"messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "Messages → OpenAI, JSON",
        path: "/v1/messages",
        body: r#"{"model":"oai","max_tokens":256,"system":"Be brief.","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "Messages → OpenAI, stream of 20 events",
        path: "/v1/messages",
        body: r#"{"model":"oai","max_tokens":256,"stream":true,"system":"Be brief.","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → Anthropic, JSON",
        path: "/v1/chat/completions",
        body: r#"{"model":"claude","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → Anthropic, stream of 20 events",
        path: "/v1/chat/completions",
        body: r#"{"model":"claude","stream":true,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, JSON, cache hit",
        path: "/v1/chat/completions",
        body: r#"{"model":"cached","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, stream of 20 events, cache hit",
        path: "/v1/chat/completions",
        body: r#"{"model":"cached","stream":true,"messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Plain,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, JSON, tracing on (ratio 1.0)",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Traced,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, stream of 20 events, tracing on (ratio 1.0)",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","stream":true,"messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Traced,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, JSON, over TLS (HTTP/1.1)",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Tls,
        flags: &[],
    },
    RowSpec {
        name: "OpenAI → OpenAI, JSON, over TLS (HTTP/2)",
        path: "/v1/chat/completions",
        body: r#"{"model":"oai","messages":[{"role":"user","content":"Hello, how are you today? Tell me about routers."}]}"#,
        on: On::Tls,
        flags: &["--http2"],
    },
];

/// A self-signed certificate for 127.0.0.1, written into `dir`; the `tls:`
/// section that serves it.
fn tls_section(dir: &Path) -> anyhow::Result<String> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let (cert, key) = (dir.join("rows.crt"), dir.join("rows.key"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok(format!("tls:\n  cert: {cert:?}\n  key: {key:?}\n"))
}

/// Runs the rows for `duration` each (in `slices`) and returns the table.
pub fn run(bin: &Path, dir: &Path, duration: Duration, slices: u32) -> anyhow::Result<String> {
    let mock_port = free_port();
    let _mock = spawn(
        "mock",
        Command::new(bin).args([
            "mock",
            "--port",
            &mock_port.to_string(),
            "--chunks",
            "20",
            "--gap",
            "0ms",
        ]),
    )?;
    wait_port(mock_port)?;
    let mock = format!("http://127.0.0.1:{mock_port}/v1");
    let start = |name: &'static str, extra: &str| -> anyhow::Result<(super::Proc, u16)> {
        let port = free_port();
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "host: 127.0.0.1\nport: {port}\napi_key: {KEY}\nstore: memory\n{extra}groups:\n  - name: oai\n    models: [{{provider: openai, name: mock-model}}]\n  - name: cached\n    cache: true\n    models: [{{provider: openai, name: mock-model}}]\n  - name: claude\n    models: [{{provider: anthropic, name: mock-claude}}]\nproviders:\n  - {{name: openai, base_url: {mock:?}, api_keys: [k1, k2]}}\n  - {{name: anthropic, type: anthropic, base_url: {mock:?}, api_keys: [k3, k4]}}\n"
            ),
        )?;
        let router = spawn(
            name,
            Command::new(bin)
                .arg("--config")
                .arg(&cfg)
                .env("RUST_LOG", "warn")
                .current_dir(dir),
        )?;
        wait_port(port)?;
        Ok((router, port))
    };
    let (plain, plain_port) = start("rows", "")?;
    let (traced, traced_port) = start(
        "rows-traced",
        &format!("tracing:\n  otlp_endpoint: http://127.0.0.1:{mock_port}\n  sample_ratio: 1.0\n"),
    )?;
    let (secure, secure_port) = start("rows-tls", &tls_section(dir)?)?;
    let target = |row: &RowSpec| match row.on {
        On::Plain => (plain.pid(), plain_port),
        On::Traced => (traced.pid(), traced_port),
        On::Tls => (secure.pid(), secure_port),
    };
    let url = |row: &RowSpec| {
        let scheme = if row.on == On::Tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{}", target(row).1, row.path)
    };
    // The certificate is self-signed: oha is told not to check it.
    let load = |row: &RowSpec, length: &str| {
        let mut args = vec!["-z", length, "-c", "32"];
        args.extend_from_slice(row.flags);
        if row.on == On::Tls {
            args.push("--insecure");
        }
        oha_with(&url(row), row.body, &args)
    };
    for row in &ROWS {
        load(row, "1s")?; // warm-up
    }
    let slice = format!("{}ms", duration.as_millis() / u128::from(slices.max(1)));
    let mut totals: Vec<(Oha, f64)> = ROWS.iter().map(|_| (Oha::default(), 0.0)).collect();
    for n in 0..slices.max(1) {
        for (row, total) in ROWS.iter().zip(&mut totals) {
            eprintln!("== rows: {}, slice {}/{}", row.name, n + 1, slices);
            let pid = target(row).0;
            let before = family_stats(pid).0;
            let r = load(row, &slice)?;
            total.1 += family_stats(pid).0 - before;
            total.0.add(&r);
        }
    }
    let reference = totals[0].1 / totals[0].0.ok.max(1) as f64;
    let mut out = String::from(
        "| path | req/s (c=32) | CPU µs/req | vs OpenAI → OpenAI JSON | errors |\n|---|---|---|---|---|\n",
    );
    for (row, (oha, cpu)) in ROWS.iter().zip(&totals) {
        let per = cpu / oha.ok.max(1) as f64;
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.2}× | {} |\n",
            row.name,
            oha.rps,
            per * 1e6,
            per / reference,
            oha.errors
        ));
    }
    // Spans the traced router dropped would be work it did not do: say so.
    let dropped = trace_export_failures(traced_port)?;
    out.push_str(&format!(
        "\nSpans the traced router lost on the way to the collector: {dropped}.\n"
    ));
    Ok(out)
}

/// The sum of `llm_router_trace_export_failures_total` on the router at
/// `port` (spans dropped, whatever the reason).
fn trace_export_failures(port: u16) -> anyhow::Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await?
            .text()
            .await
    })?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("llm_router_trace_export_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
