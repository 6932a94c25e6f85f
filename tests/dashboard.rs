//! The dashboard in a real headless Chromium (Debian's chromium, driven by
//! playwright-core from npm): log in, see live usage, change a weight and
//! watch routing follow, disable a key, restart, find the edits still there.
//!
//! `scripts/test.sh` installs chromium, node and the npm package. Elsewhere,
//! without them, this test says so and passes only if
//! `LLM_ROUTER_REQUIRE_BROWSER` is unset.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ADMIN_KEY: &str = "ui-admin-key-90";

fn browser_available() -> bool {
    let ok = Path::new("/usr/bin/chromium").exists()
        && Path::new("tests/ui/node_modules/playwright-core").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("LLM_ROUTER_REQUIRE_BROWSER").is_none(),
            "browser tests required, but chromium, node or tests/ui/node_modules is missing"
        );
        eprintln!(
            "SKIPPED: dashboard browser test (run scripts/test.sh to install chromium and playwright-core)"
        );
    }
    ok
}

fn run_phase(router: &RouterProcess, phase: &str, artifacts: &Path) {
    let out = Command::new("node")
        .arg("tests/ui/dashboard.mjs")
        .env("ROUTER_URL", router.url(""))
        .env("ADMIN_KEY", ADMIN_KEY)
        .env("CLIENT_KEY", CLIENT_KEY)
        .env("PHASE", phase)
        .env("ARTIFACTS", artifacts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser phase {phase} failed:\n{}\n{}\nrouter logs:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        router.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_monitors_and_configures_the_router() {
    if !browser_available() {
        return;
    }
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-artifacts");
    let up = MockUpstream::start().await;
    let cfg = config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "a"), (1, "p", "b")],
        &format!("admin_key: {ADMIN_KEY}\nstore: memory"),
    );
    let router = RouterProcess::start(&cfg);
    run_phase(&router, "first", &artifacts);

    // The edits live in the overlay file beside the config, owner-only.
    let overlay = router.dir().join("config.overlay.json");
    let text = std::fs::read_to_string(&overlay).unwrap();
    assert!(
        text.contains("\"weight\": 0") && text.contains("disabled_keys"),
        "{text}"
    );
    // The config file itself is untouched.
    assert_eq!(
        std::fs::read_to_string(router.dir().join("config.yaml")).unwrap(),
        cfg
    );
    let after_disable: Vec<String> = up
        .requests()
        .iter()
        .rev()
        .take(6)
        .map(|r| r.key.clone())
        .collect();
    assert!(after_disable.iter().all(|k| k == "k1"), "{after_disable:?}");

    let router = router.restart();
    run_phase(&router, "after-restart", &artifacts);
    assert!(artifacts.join("dashboard.png").exists());
    let logs = router.logs();
    assert!(!logs.contains(ADMIN_KEY) && !logs.contains("\"k2\""));
}
