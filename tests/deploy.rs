//! Keeps the deployment files in `deploy/` honest.
//!
//! - The Kubernetes manifests parse; the Deployment's probes, ports and
//!   grace period agree with the router config in the ConfigMap and with the
//!   Services; that config passes the real binary's `check`, with every
//!   `${VAR}` it references supplied by the Secret.
//! - Every metric the Grafana dashboard and the Prometheus alert rules query
//!   exists in a live scrape of the real binary, after requests that make
//!   each family appear (a price, a client key, a cached group, a failing
//!   key, a refused request, a reload).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Metrics another change is adding: accepted as missing from the scrape
/// (with a note) until the router exports them.
const PENDING: &[&str] = &[];

fn deploy(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a YAML file (empty ones dropped).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read(path))
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Every document of every `.yaml` file under `deploy/kubernetes`.
fn manifests() -> Vec<Value> {
    let mut docs = Vec::new();
    for dir in ["kubernetes", "kubernetes/redis-example"] {
        for entry in std::fs::read_dir(deploy(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                docs.extend(yaml_docs(&path));
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

/// The router config the ConfigMap holds, as text.
fn router_config(docs: &[Value]) -> String {
    let cm = find(docs, "ConfigMap", "llm-router-config");
    cm["data"]["config.yaml"].as_str().unwrap().to_string()
}

/// `25s`, `2m`, `500ms` in seconds.
fn seconds(d: &str) -> f64 {
    let (n, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len()));
    let scale = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .into_iter()
        .find(|(u, _)| *u == unit)
        .unwrap_or_else(|| panic!("unknown unit in {d:?}"));
    n.parse::<f64>().unwrap() * scale.1
}

/// Calls `f(key, string)` for every string in `v`, with the key it is under.
fn strings(v: &Value, key: &str, f: &mut impl FnMut(&str, &str)) {
    match v {
        Value::String(s) => f(key, s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, key, f)),
        Value::Object(o) => o.iter().for_each(|(k, x)| strings(x, k, f)),
        _ => {}
    }
}

#[test]
fn every_manifest_parses_and_has_a_kind() {
    let docs = manifests();
    assert!(docs.len() >= 8, "too few manifests: {}", docs.len());
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string(), "{d}");
    }
}

#[test]
fn the_deployment_agrees_with_its_config_and_services() {
    let docs = manifests();
    let config: Value = serde_saphyr::from_str(&router_config(&docs)).unwrap();
    let deployment = find(&docs, "Deployment", "llm-router");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let ports = container["ports"].as_array().unwrap();
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };

    // The config's listeners are the container's named ports.
    assert_eq!(port_of("http"), config["port"].as_u64().unwrap_or(8080));
    let admin = config["admin_listen"].as_str().unwrap().rsplit(':').next();
    assert_eq!(Some(&*port_of("admin").to_string()), admin);

    // Probes: liveness on /health, readiness on /ready, both on `http`.
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "http", "{probe}");
    }

    // SIGTERM drains for timeouts.drain: the kubelet must wait longer.
    let drain = seconds(config["timeouts"]["drain"].as_str().unwrap());
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_f64();
    assert!(
        grace > Some(drain),
        "grace period {grace:?} <= drain {drain}s"
    );

    // The Services selecting the pod target exactly the container's ports.
    let labels = &pod["metadata"]["labels"];
    let mut targeted = BTreeSet::new();
    for svc in docs.iter().filter(|d| d["kind"] == "Service") {
        let selector = svc["spec"]["selector"].as_object().unwrap();
        if !selector.iter().all(|(k, v)| &labels[k] == v) {
            continue;
        }
        for p in svc["spec"]["ports"].as_array().unwrap() {
            targeted.insert(match &p["targetPort"] {
                Value::String(name) => port_of(name),
                n => n.as_u64().unwrap(),
            });
        }
    }
    let exposed = ports.iter().map(|p| p["containerPort"].as_u64().unwrap());
    assert_eq!(targeted, exposed.collect(), "Services' targetPorts");

    // Prometheus scrapes the port that serves /metrics.
    let scrape = &pod["metadata"]["annotations"];
    assert_eq!(scrape["prometheus.io/port"], port_of("admin").to_string());
    assert_eq!(scrape["prometheus.io/path"], "/metrics");
}

#[test]
fn the_configmap_holds_a_config_the_router_accepts() {
    let docs = manifests();
    let text = router_config(&docs);
    let secret = &find(&docs, "Secret", "llm-router-secrets")["stringData"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &text).unwrap();
    let mut check = Command::new(env!("CARGO_BIN_EXE_llm-router"));
    check.args(["check", "--config"]).arg(&path);
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    strings(&config, "", &mut |_, s| {
        for reference in s.split("${").skip(1) {
            let name = &reference[..reference.find('}').unwrap()];
            assert!(secret[name].is_string(), "${{{name}}} is not in the Secret");
            // Distinct values: the router refuses an admin key equal to the api key.
            check.env(name, format!("placeholder-{name}"));
        }
    });
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Identifiers starting `llm_router_` in a PromQL expression, outside
/// its double-quoted strings (the only kind these files use).
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    for code in expr.split('"').step_by(2) {
        let words = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        out.extend(
            words
                .filter(|w| w.starts_with("llm_router_"))
                .map(String::from),
        );
    }
}

/// Metric names in every `expr`/`query` string of the dashboard.
fn dashboard_metrics() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(&read(&deploy("grafana/llm-router.json"))).unwrap();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    for panel in dashboard["panels"].as_array().unwrap() {
        let uid = &panel["datasource"]["uid"];
        assert!(
            panel["type"] == "row" || uid == "${DS_PROMETHEUS}",
            "{panel}"
        );
    }
    let mut out = BTreeSet::new();
    strings(&dashboard, "", &mut |key, s| {
        if matches!(key, "expr" | "query" | "definition") {
            metric_names(s, &mut out);
        }
    });
    out
}

fn alert_metrics() -> BTreeSet<String> {
    let rules = yaml_docs(&deploy("prometheus/alerts.yaml"));
    let mut out = BTreeSet::new();
    for group in rules[0]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let documented = rule["annotations"]["summary"].is_string();
            assert!(
                documented && rule["labels"]["severity"].is_string(),
                "{rule}"
            );
            metric_names(rule["expr"].as_str().unwrap(), &mut out);
        }
    }
    out
}

/// Sample names of a Prometheus text scrape (histograms as `_bucket` etc.).
fn scraped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_string())
        .collect()
}

/// Fails unless `names` has `llm_router_` + each of `needed`.
fn assert_uses(what: &str, names: &BTreeSet<String>, needed: &str) {
    for n in needed.split_whitespace() {
        let name = format!("llm_router_{n}");
        assert!(names.contains(&name), "the {what} do not use {name}");
    }
}

async fn send(router: &RouterProcess, key: &str, model: &str) -> reqwest::Response {
    let request = client().post(router.url("/v1/chat/completions"));
    request
        .bearer_auth(key)
        .json(&hello(model))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let dashboard = dashboard_metrics();
    let alerts = alert_metrics();
    assert_uses(
        "dashboard",
        &dashboard,
        "requests_total request_duration_seconds_bucket time_to_first_token_seconds_bucket \
         tokens_total cost_usd_total cache_requests_total cooldown_active provider_up \
         in_flight_requests open_streams store_healthy",
    );
    assert_uses(
        "alerts",
        &alerts,
        "requests_total store_healthy provider_up cooldown_active key_cooldown_active \
         client_cost_usd_total client_budget_used_ratio config_reloads_total \
         trace_export_failures_total",
    );

    // A failing key (upstream errors, failover, cooldown), a price (cost), a
    // client key at its rpm (client metrics), a cached group (cache metrics),
    // a refused request, a stream, a reload; the key's budget (its share used).
    let up = MockUpstream::start().await;
    up.set("k-bad", Behavior::status(500));
    let url = up.base_url();
    let router = RouterProcess::start(&format!(
        "host: 127.0.0.1\nport: 0\napi_key: {CLIENT_KEY}\nadmin_key: admin-key-deploy\nstore: memory\n\
         client_keys: [{{name: team, key: team-key-1, rpm: 2, budget_usd: 100}}]\n\
         groups:\n  - {{name: g, models: [{{provider: bad, name: m}}, {{weight: 1, provider: p, name: m}}]}}\n  \
         - {{name: cached, cache: true, models: [{{provider: p, name: m}}]}}\n\
         providers:\n  - {{name: p, base_url: {url:?}, api_keys: [k1], prices: {{m: {{input: 1, output: 1}}}}}}\n  \
         - {{name: bad, base_url: {url:?}, api_keys: [k-bad]}}\n"
    ));
    assert_eq!(send(&router, CLIENT_KEY, "g").await.status(), 200); // after failing over
    for expected in [200, 200, 429] {
        assert_eq!(send(&router, "team-key-1", "g").await.status(), expected);
    }
    assert_eq!(send(&router, "not-a-key", "g").await.status(), 401);
    // The cache stores an answer once it has ended: ask until one is a hit.
    wait_for("a cache hit", Duration::from_secs(10), async || {
        let r = send(&router, CLIENT_KEY, "cached").await;
        r.headers()["x-llm-router-cache"] == "hit"
    })
    .await;
    let mut body = hello("g");
    body["stream"] = true.into();
    spawn_stream(&router, body).await.unwrap();
    router.signal("HUP");

    // Counters appear as requests settle: scrape until all are there.
    let used: BTreeSet<String> = dashboard.union(&alerts).cloned().collect();
    let pending = |n: &String| PENDING.contains(&n.as_str());
    let start = Instant::now();
    let mut missing: Vec<String> = used.iter().cloned().collect();
    while !missing.iter().all(pending) && start.elapsed() < Duration::from_secs(10) {
        let have = scraped(&metrics_text(&router).await);
        missing = used.difference(&have).cloned().collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in missing.iter().filter(|n| pending(n)) {
        eprintln!("note: {name} is not exported yet (pending); the rules keep it");
    }
    missing.retain(|n| !pending(n));
    assert!(missing.is_empty(), "not in the scrape: {missing:?}");
}
