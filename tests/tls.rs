//! HTTPS on the listeners, through the real binary, with certificates made
//! in the test: the official openai client over TLS, HTTP/2 by ALPN, a
//! certificate rotated without a restart (and a broken rotation that keeps
//! the old one), mTLS, `check` on bad files, the dashboard's Secure cookie,
//! and the lockout after repeated wrong admin keys.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::pki::{Ca, Pair};
use common::tls_upstream::TlsUpstream;
use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-for-tls-tests";

struct Served {
    router: RouterProcess,
    _up: MockUpstream,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.router.addr.port())
    }
}

/// A router serving HTTPS with `pair` (files beside the config, named by
/// relative paths), plus `tls_extra` lines under `tls:`.
async fn https_router(pair: &Pair, tls_extra: &str, files: &[(&str, &str)]) -> Served {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    pair.write(dir.path(), "server");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let cfg = config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        &format!("admin_key: {ADMIN}\ntls:\n  cert: server.crt\n  key: server.key\n{tls_extra}"),
    );
    let router = RouterProcess::start_in(dir, &cfg, &[], &[]);
    Served { router, _up: up }
}

/// A client that trusts `ca` only.
fn trusting(ca: &Ca) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
}

async fn chat_over(client: &reqwest::Client, served: &Served) -> reqwest::Response {
    client
        .post(served.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await
        .unwrap()
}

/// The certificate the server presented, DER.
fn presented(r: &reqwest::Response) -> Vec<u8> {
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("a TLS response")
        .to_vec()
}

/// Waits until a new connection to `served` is shown `cert`.
async fn wait_until_serving(ca: &Ca, served: &Served, cert: &Pair, what: &str) {
    wait_for(what, Duration::from_secs(10), async || {
        let r = chat_over(&trusting(ca).build().unwrap(), served).await;
        presented(&r) == cert.der
    })
    .await;
}

#[tokio::test]
async fn https_serves_http2_and_http1_and_the_openai_sdk() {
    let ca = Ca::new("test ca");
    let pair = ca.server("router one", 90);
    let served = https_router(&pair, "", &[]).await;
    assert!(served.router.logs().contains("\"scheme\":\"https\""));

    // HTTP/2, chosen by ALPN.
    let h2 = trusting(&ca).build().unwrap();
    let r = chat_over(&h2, &served).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(presented(&r), pair.der);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hello from upstream");
    // A stream, over HTTP/2, arrives event by event.
    let r = h2
        .post(served.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(
            &json!({"model": "g", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let chunks = read_timed(r).await;
    let text: String = chunks
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(chunks.len() > 1, "events arrive as they come");

    // HTTP/1.1 when that is all the client offers.
    let h1 = trusting(&ca).http1_only().build().unwrap();
    let r = chat_over(&h1, &served).await;
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_11)
    );

    // Plain HTTP on the TLS port is not served.
    let plain = client()
        .post(format!(
            "http://127.0.0.1:{}/v1/chat/completions",
            served.router.addr.port()
        ))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // The official client, trusting our CA through NODE_EXTRA_CA_CERTS.
    let ca_file = served.router.dir().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let base = served.url("");
    let ca_path = ca_file.to_string_lossy().into_owned();
    // (Streams over TLS are checked above; the mock's streams lack the
    // finish_reason the SDK's stream helper insists on.)
    for scenario in ["openai-chat"] {
        let (base, ca_path) = (base.clone(), ca_path.clone());
        let out = tokio::task::spawn_blocking(move || {
            common::sdk::run(
                scenario,
                &base,
                CLIENT_KEY,
                "g",
                &[("NODE_EXTRA_CA_CERTS", &ca_path)],
            )
        })
        .await
        .unwrap();
        if let Some(out) = out {
            assert_eq!(out["ok"], true, "{scenario}: {out}");
            assert_eq!(out["content"], "hello from upstream");
            assert_eq!(out["finish_reason"], "stop");
        }
    }
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_connections_without_a_restart() {
    let ca = Ca::new("test ca");
    let first = ca.server("first", 90);
    let served = https_router(&first, "", &[]).await;
    let pid = served.router.pid();
    let r = chat_over(&trusting(&ca).build().unwrap(), &served).await;
    assert_eq!(presented(&r), first.der);

    // A rotation half done: a new certificate beside the old key. The old
    // certificate keeps serving, and the failure is counted.
    let second = ca.server("second", 90);
    let dir = served.router.dir().to_path_buf();
    std::fs::write(dir.join("server.crt"), &second.cert).unwrap();
    served.router.wait_log("certificate not reloaded").await;
    let r = chat_over(&trusting(&ca).build().unwrap(), &served).await;
    assert_eq!(r.status(), 200);
    assert_eq!(presented(&r), first.der);
    let https = trusting(&ca).build().unwrap();
    let text = metrics_text_over(&https, &served).await;
    assert!(metric(&text, "llm_router_tls_reloads_total{code=\"error\"}").unwrap() >= 1.0);

    // The key lands: new connections get the new certificate.
    std::fs::write(dir.join("server.key"), &second.key).unwrap();
    wait_until_serving(&ca, &served, &second, "the new certificate served").await;
    assert_eq!(served.router.pid(), pid, "no restart");
    let text = metrics_text_over(&https, &served).await;
    assert!(metric(&text, "llm_router_tls_reloads_total{code=\"ok\"}").unwrap() >= 1.0);
    let expiry = metric(
        &text,
        "llm_router_tls_certificate_expiry_timestamp_seconds{listener=\"public\"}",
    )
    .unwrap();
    let in_days = (expiry - unix_now()) / 86_400.0;
    assert!((89.0..=90.5).contains(&in_days), "{in_days}");

    // SIGHUP reads the files again too (here: a third certificate).
    let third = ca.server("third", 30);
    std::fs::write(dir.join("server.key"), &third.key).unwrap();
    std::fs::write(dir.join("server.crt"), &third.cert).unwrap();
    served.router.signal("HUP");
    wait_until_serving(&ca, &served, &third, "the third certificate served").await;
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_ca() {
    let ca = Ca::new("server ca");
    let clients = Ca::new("client ca");
    let stranger_ca = Ca::new("other ca");
    let served = https_router(
        &ca.server("router", 90),
        "  client_ca: clients.pem\n",
        &[("clients.pem", &clients.pem)],
    )
    .await;

    let anonymous = trusting(&ca).build().unwrap();
    let refused = anonymous
        .post(served.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");

    let identity = |pair: &Pair| {
        reqwest::Identity::from_pem(format!("{}{}", pair.cert, pair.key).as_bytes()).unwrap()
    };
    let stranger = trusting(&ca)
        .identity(identity(&stranger_ca.client("mallory")))
        .build()
        .unwrap();
    assert!(chat_over_result(&stranger, &served).await.is_err());

    let known = trusting(&ca)
        .identity(identity(&clients.client("alice")))
        .build()
        .unwrap();
    let r = chat_over(&known, &served).await;
    assert_eq!(r.status(), 200);
}

async fn chat_over_result(
    client: &reqwest::Client,
    served: &Served,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(served.url("/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&hello("g"))
        .send()
        .await
}

#[tokio::test]
async fn the_dashboard_cookie_is_secure_and_wrong_admin_keys_lock_the_address_out() {
    let ca = Ca::new("test ca");
    let served = https_router(&ca.server("router", 90), "", &[]).await;
    let from = |ip: &str| {
        trusting(&ca)
            .local_address(ip.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let login = async |client: &reqwest::Client, key: &str| {
        client
            .post(served.url("/ui/login"))
            .json(&json!({"key": key}))
            .send()
            .await
            .unwrap()
    };

    let admin = from("127.0.0.1");
    let r = login(&admin, ADMIN).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // Ten wrong keys from one address, then that address is refused.
    let attacker = from("127.0.0.2");
    for i in 0..10 {
        let r = login(&attacker, &format!("guess-{i}")).await;
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = login(&attacker, "guess-10").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failed_logins");
    // Even the right key, and the admin API's bearer check too.
    assert_eq!(login(&attacker, ADMIN).await.status(), 429);
    let r = attacker
        .get(served.url("/admin/usage"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // Other addresses are not affected.
    let r = admin
        .get(served.url("/admin/usage"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The admin API's bearer check counts wrong keys the same way.
    let other = from("127.0.0.3");
    for _ in 0..10 {
        let r = other
            .get(served.url("/admin/usage"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = other
        .get(served.url("/admin/usage"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    let text = metrics_text_over(&admin, &served).await;
    assert_eq!(
        metric(
            &text,
            "llm_router_admin_auth_failures_total{code=\"wrong_key\"}"
        ),
        Some(20.0)
    );
    assert!(
        metric(
            &text,
            "llm_router_admin_auth_failures_total{code=\"locked_out\"}"
        )
        .unwrap()
            >= 4.0
    );
    // No key in the logs or the metrics.
    for secret in [ADMIN, "guess-3"] {
        assert!(!served.router.logs().contains(secret));
        assert!(!text.contains(secret));
    }
}

async fn metrics_text_over(client: &reqwest::Client, served: &Served) -> String {
    client
        .get(served.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `check` on a config whose TLS files are as given.
fn check(files: &[(&str, &str)], tls: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let cfg = format!(
        "api_key: k\ngroups: [{{name: g, models: [{{provider: p, name: m}}]}}]\nproviders: [{{name: p, base_url: \"http://127.0.0.1:9/v1\", api_keys: [pk]}}]\n{tls}"
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-router"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn check_validates_the_certificate_files() {
    let ca = Ca::new("test ca");
    let good = ca.server("good", 90);
    let soon = ca.server("soon", 5);
    let other = ca.server("other", 90);
    let tls = "tls: {cert: server.crt, key: server.key}\n";

    let (code, text) = check(
        &[("server.crt", &good.cert), ("server.key", &good.key)],
        tls,
    );
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("warning"), "{text}");

    let (code, text) = check(
        &[("server.crt", &soon.cert), ("server.key", &soon.key)],
        tls,
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("warning: tls: the certificate expires in"),
        "{text}"
    );

    let (code, text) = check(
        &[("server.crt", &good.cert), ("server.key", &other.key)],
        tls,
    );
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("do not make a certificate and its key"),
        "{text}"
    );

    let (code, text) = check(&[("server.crt", &good.cert)], tls);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("cannot read") && text.contains("server.key"),
        "{text}"
    );

    let (code, text) = check(
        &[("server.crt", &good.cert), ("server.key", &good.key)],
        "tls: {cert: server.crt, key: server.key}\nadmin_tls: {cert: server.crt, key: server.key}\n",
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("admin_tls: needs admin_listen"), "{text}");

    // The router does not start with a broken certificate either.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.crt"), &good.cert).unwrap();
    std::fs::write(dir.path().join("server.key"), &other.key).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("api_key: k\nport: 0\nhost: 127.0.0.1\n{tls}groups: []\nproviders: []\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-router"))
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("do not make a certificate and its key"),
        "{text}"
    );
}

#[tokio::test]
async fn the_admin_listener_has_its_own_certificate() {
    let ca = Ca::new("test ca");
    let public = ca.server("public", 90);
    let admin = ca.server("admin", 90);
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    public.write(dir.path(), "public");
    admin.write(dir.path(), "admin");
    // A free port for the admin listener.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        &format!(
            "admin_key: {ADMIN}\nadmin_listen: 127.0.0.1:{port}\ntls: {{cert: public.crt, key: public.key}}\nadmin_tls: {{cert: admin.crt, key: admin.key}}\n"
        ),
    );
    let router = RouterProcess::start_in(dir, &cfg, &[], &[]);
    router.wait_log("admin listening").await;
    let client = trusting(&ca).build().unwrap();
    let r = client
        .get(format!("https://localhost:{port}/admin/usage"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(presented(&r), admin.der);
    let r = client
        .get(format!(
            "https://localhost:{}/v1/models",
            router.addr.port()
        ))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(presented(&r), public.der);
}

/// A router whose two groups go to `two` and `one`, trusting the roots in
/// `ca_file` (through `SSL_CERT_FILE`, as rustls-native-certs reads it).
fn upstream_router(
    two: &str,
    one: &str,
    ca_file: Option<&std::path::Path>,
    workers: &str,
) -> RouterProcess {
    let cfg = format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\ngroups:\n  - name: two\n    models: [{{weight: 1, provider: two, name: m}}]\n  - name: one\n    models: [{{weight: 1, provider: one, name: m}}]\nproviders:\n  - {{name: two, base_url: \"{two}\", api_keys: [sk-upstream-two-3f9]}}\n  - {{name: one, base_url: \"{one}\", api_keys: [sk-upstream-one-8c1]}}\n"
    );
    let ca = ca_file.map(|f| f.to_str().unwrap().to_string());
    let mut env: Vec<(&str, &str)> = ca.iter().map(|f| ("SSL_CERT_FILE", f.as_str())).collect();
    env.push(("LLM_ROUTER_WORKERS", workers));
    RouterProcess::start_in(tempfile::tempdir().unwrap(), &cfg, &[], &env)
}

/// Providers speak HTTPS. The router verifies them against the system's
/// roots (here a test CA given by `SSL_CERT_FILE`), speaks HTTP/2 to an
/// upstream that chooses it by ALPN and HTTP/1.1 to one that offers only
/// that, and keeps its connections: a run of answers, whole and streamed,
/// costs at most one TLS connection per worker thread.
#[tokio::test]
async fn https_upstreams_over_http2_and_http1_keep_their_connections() {
    let ca = Ca::new("upstream CA");
    let pair = ca.server("upstream", 30);
    let two = TlsUpstream::start(&pair, &[b"h2", b"http/1.1"]).await;
    let one = TlsUpstream::start(&pair, &[b"http/1.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let router = upstream_router(&two.base_url(), &one.base_url(), Some(&ca_file), "0");
    for (group, upstream, version) in [
        ("two", &two, http::Version::HTTP_2),
        ("one", &one, http::Version::HTTP_11),
    ] {
        for i in 0..6 {
            let stream = i % 2 == 1;
            let mut body = hello(group);
            body["stream"] = json!(stream);
            let r = chat(&router, body).await;
            assert_eq!(r.status(), 200, "{group} #{i}");
            let text = r.text().await.unwrap();
            if stream {
                assert!(text.trim_end().ends_with("data: [DONE]"), "{group}: {text}");
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["object"], "chat.completion", "{group}: {text}");
            }
        }
        assert_eq!(upstream.versions(), vec![version; 6], "{group}");
        let workers = std::thread::available_parallelism().unwrap().get();
        let opened = upstream.connections();
        assert!(
            (1..=workers).contains(&opened),
            "{group}: {opened} TLS connections for 6 requests in a row"
        );
    }
}

/// A provider whose certificate no trusted root signed is never talked
/// to: the client gets a 502 in its format, and the log names neither
/// key.
#[tokio::test]
async fn an_upstream_with_an_untrusted_certificate_is_unreachable() {
    let ca = Ca::new("a CA nobody trusts");
    let pair = ca.server("upstream", 30);
    let up = TlsUpstream::start(&pair, &[b"h2", b"http/1.1"]).await;
    let router = upstream_router(&up.base_url(), &up.base_url(), None, "0");
    let r = chat(&router, hello("two")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(up.versions().is_empty(), "no request reached the upstream");
    let logs = router.wait_log("upstream attempt failed").await;
    assert!(logs.contains("certificate"), "{logs}");
    assert!(
        !logs.contains("sk-upstream-") && !logs.contains(CLIENT_KEY),
        "{logs}"
    );
}

/// An HTTP/2 upstream allows so many concurrent streams per connection
/// (here 2). Streams that end give their place back, and streams beyond
/// the limit open another connection instead of queueing behind ones that
/// may run for minutes: four streams that never end all get their first
/// event.
#[tokio::test]
async fn http2_streams_past_the_peers_limit_open_another_connection() {
    let ca = Ca::new("upstream CA");
    let pair = ca.server("upstream", 30);
    let up = TlsUpstream::start_with(&pair, &[b"h2"], Some(2)).await;
    up.set("sk-upstream-two-3f9", Behavior::StallAfter(1));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    // One worker, so one pool: every stream asks the same one.
    let cfg_router = upstream_router(&up.base_url(), &up.base_url(), Some(&ca_file), "1");
    // Streams that end give their place back: six in a row fit on one
    // connection.
    for i in 0..6 {
        let mut body = hello("one");
        body["stream"] = json!(i % 2 == 0);
        let r = chat(&cfg_router, body).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert_eq!(up.connections(), 1, "six requests in a row");
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut body = hello("two");
        body["stream"] = json!(true);
        let r = chat(&cfg_router, body);
        // Each stream's first content event, within a generous bound: a
        // queued stream would never get one (the others never end).
        streams.push(tokio::time::timeout(Duration::from_secs(15), async move {
            let mut r = r.await;
            assert_eq!(r.status(), 200);
            let mut seen = String::new();
            while let Some(chunk) = r.chunk().await.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("\"content\"") {
                    return r;
                }
            }
            panic!("stream ended without content: {seen}");
        }));
    }
    let mut open = Vec::new();
    for s in streams {
        open.push(s.await.expect("a stream waited behind the others"));
    }
    assert_eq!(up.versions(), vec![http::Version::HTTP_2; 10]);
    assert!(up.connections() >= 2, "{} connections", up.connections());
    drop(open);
}
