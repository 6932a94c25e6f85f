//! The command line: `check`, `--version`, `healthcheck`, and the shipped examples.

mod common;

use std::process::Command;

fn router() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-router"))
}

#[test]
fn shipped_example_configs_are_valid() {
    for file in ["config.example.yaml", "config.example.json"] {
        let out = router().args(["check", "--config", file]).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_lists_every_problem_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "api_key: k\ngroups:\n  - name: g\n    models: [{weight: -2, provider: nope, name: m}]\nproviders:\n  - {name: p, base_url: \"nope\", api_keys: []}\n",
    )
    .unwrap();
    let out = router()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("4 problems"), "{err}");
    for needle in [
        "groups[0].models[0].weight",
        "groups[0].models[0].provider",
        "providers[0].base_url",
        "providers[0].api_keys",
    ] {
        assert!(err.contains(needle), "missing {needle}: {err}");
    }
}

#[test]
fn check_names_the_line_of_a_parse_error_and_the_missing_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "api_key: k\nproviders:\n  - name: p\n    base_url: http://x\n    api_keys: [\"${LLM_ROUTER_TEST_NOT_SET}\"]\n").unwrap();
    let out = router().arg("check").arg("-c").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 5") && err.contains("LLM_ROUTER_TEST_NOT_SET"),
        "{err}"
    );

    // The env var can also name the config file.
    let out = router()
        .arg("check")
        .env("LLM_ROUTER_CONFIG", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("c.yaml"));
}

#[test]
fn version_and_help_work() {
    let out = router().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = router().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["check", "demo", "healthcheck"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[tokio::test]
async fn healthcheck_probes_a_running_router() {
    let up = common::MockUpstream::start().await;
    let cfg = common::config(&[("p", &up.base_url(), &["k"])], &[(1, "p", "m")], "");
    let r = common::RouterProcess::start(&cfg);
    let url = r.url("/health");
    let ok = router()
        .args(["healthcheck", "--url", &url])
        .output()
        .unwrap();
    assert!(ok.status.success());
    drop(r);
    let down = router()
        .args(["healthcheck", "--url", &url])
        .output()
        .unwrap();
    assert!(!down.status.success());
}

#[tokio::test]
async fn demo_serves_mock_completions_without_any_key() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = router()
        .args(["demo", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let body =
        serde_json::json!({"model": "demo", "messages": [{"role": "user", "content": "Hello"}]});
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = common::client()
            .post(&url)
            .bearer_auth("sk-demo")
            .json(&body)
            .send()
            .await
        {
            answer = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let v = answer.expect("demo never answered");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("mock"), "{text}");
    assert!(text.contains("Hello"), "{text}");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // Every endpoint the router serves, with usage.
    let call = async |path: &str, body: serde_json::Value| {
        let r = common::client()
            .post(format!("http://127.0.0.1:{port}/v1/{path}"))
            .bearer_auth("sk-demo")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    };
    let e: serde_json::Value = serde_json::from_str(
        &call(
            "embeddings",
            serde_json::json!({"model": "demo", "input": ["a", "b"]}),
        )
        .await,
    )
    .unwrap();
    assert_eq!(e["data"].as_array().unwrap().len(), 2);
    assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let c: serde_json::Value = serde_json::from_str(
        &call(
            "completions",
            serde_json::json!({"model": "demo", "prompt": "Say hi"}),
        )
        .await,
    )
    .unwrap();
    assert!(c["choices"][0]["text"].as_str().unwrap().contains("mock"));
    assert!(c["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let r: serde_json::Value = serde_json::from_str(
        &call(
            "responses",
            serde_json::json!({"model": "demo", "input": "Hi"}),
        )
        .await,
    )
    .unwrap();
    assert_eq!(r["status"], "completed");
    assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let stream = call(
        "responses",
        serde_json::json!({"model": "demo", "input": "Hi", "stream": true}),
    )
    .await;
    assert!(
        stream.contains("event: response.output_text.delta"),
        "{stream}"
    );
    assert!(stream.contains("event: response.completed"), "{stream}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn workers_share_the_port_and_a_second_router_cannot_take_it() {
    let up = common::MockUpstream::start().await;
    let cfg = common::config(&[("p", &up.base_url(), &["k"])], &[(1, "p", "m")], "");
    let first = common::RouterProcess::start_with(&cfg, &[], &[("LLM_ROUTER_WORKERS", "3")]);
    assert!(first.logs().contains("\"workers\":3"), "{}", first.logs());
    // Many connections at once: the kernel spreads them over the three
    // workers' sockets, and every one is served.
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let url = first.url("/v1/chat/completions");
            tokio::spawn(async move {
                // A fresh client per call: a connection of its own.
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(common::CLIENT_KEY)
                    .json(&common::hello("g"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }

    // Same port, same user: refused, not silently shared.
    let port = first.url("").rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, cfg.replace("port: 0", &format!("port: {port}"))).unwrap();
    let out = router().arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("cannot listen"), "{text}");
}
