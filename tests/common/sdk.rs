//! The official SDKs as clients: `tests/sdk/run.mjs <scenario>` drives the
//! `openai` or `@anthropic-ai/sdk` npm package against a router and prints
//! what the client made of its answers, as one JSON line.
//!
//! `scripts/test.sh` installs the packages and sets `LLM_ROUTER_REQUIRE_SDK`,
//! so in CI a missing SDK fails the test; elsewhere the check is skipped.

use serde_json::Value;

/// Runs `scenario` against `base_url` (an origin, `http://host:port`) with
/// `key` and `model`; `None` when the SDKs are not installed here.
pub fn run(
    scenario: &str,
    base_url: &str,
    key: &str,
    model: &str,
    env: &[(&str, &str)],
) -> Option<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let installed = dir.join("node_modules/@anthropic-ai/sdk").exists()
        && dir.join("node_modules/openai").exists();
    if !installed {
        assert!(
            std::env::var_os("LLM_ROUTER_REQUIRE_SDK").is_none(),
            "SDK tests required, but tests/sdk/node_modules is missing (run npm ci in tests/sdk)"
        );
        eprintln!("SKIPPED: {scenario}: the official SDKs are not installed (npm ci in tests/sdk)");
        return None;
    }
    let out = std::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(scenario)
        .env("BASE_URL", base_url)
        .env("API_KEY", key)
        .env("MODEL", model)
        .envs(env.iter().copied())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{scenario}: {e}: {}", String::from_utf8_lossy(&out.stdout))
        }),
    )
}

/// [`run`] on the blocking pool, for async tests.
pub async fn run_async(
    scenario: &'static str,
    base_url: String,
    key: &'static str,
    model: &'static str,
) -> Option<Value> {
    tokio::task::spawn_blocking(move || run(scenario, &base_url, key, model, &[]))
        .await
        .unwrap()
}
