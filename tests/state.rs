//! Usage that survives restarts (SQLite) and is shared between instances
//! (Redis), plus the admin API that shows and resets it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const ADMIN_KEY: &str = "test-admin-key-77aa";

fn state_config(up: &MockUpstream, store: &str) -> String {
    config(
        &[("p", &up.base_url(), &["k1", "k2"])],
        &[(1, "p", "m")],
        &format!("admin_key: {ADMIN_KEY}\nstore: \"{store}\""),
    )
}

async fn keys_of(up: &MockUpstream) -> Vec<String> {
    up.requests().into_iter().map(|r| r.key).collect()
}

async fn usage(router: &RouterProcess) -> Value {
    let r = admin_get(router, "/admin/usage", ADMIN_KEY).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn tokens_of(report: &Value, key: &str) -> u64 {
    report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["key"] == key)
        .map(|row| row["tokens"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_graceful_restart_resumes_the_key_alternation() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&state_config(&up, "sqlite://usage.db"));
    for _ in 0..3 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    router.signal("TERM");
    let router = router.start_again_after_exit();
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(keys_of(&up).await, ["k1", "k2", "k1", "k2"]);
    let report = usage(&router).await;
    assert_eq!(tokens_of(&report, "p#0"), 32);
    assert_eq!(tokens_of(&report, "p#1"), 32);
    assert!(router.dir().join("usage.db").exists());
}

#[tokio::test]
async fn a_kill_after_the_write_behind_loses_nothing() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&state_config(&up, "sqlite://usage.db"));
    for _ in 0..3 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    // The write-behind runs every second: after it, SIGKILL loses nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let router = router.restart();
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    assert_eq!(keys_of(&up).await, ["k1", "k2", "k1", "k2"]);
}

#[tokio::test]
async fn history_is_keyed_by_fingerprint_not_position() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&state_config(&up, "sqlite://usage.db"));
    for _ in 0..3 {
        chat(&router, hello("g")).await;
    }
    router.signal("TERM");
    assert!(
        router
            .start_again_after_exit()
            .wait_request_logs(0)
            .await
            .is_empty()
    );
    // Same store, keys listed in the other order: k1 still has more usage.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &[("p", &up.base_url(), &["k2", "k1"])],
        &[(1, "p", "m")],
        &format!(
            "admin_key: {ADMIN_KEY}\nstore: \"sqlite://{}\"",
            dir.path().join("u.db").display()
        ),
    );
    let first = RouterProcess::start(&cfg);
    for _ in 0..3 {
        chat(&first, hello("g")).await;
    }
    first.signal("TERM");
    let mut reordered = first.start_again_after_exit();
    let report = usage(&reordered).await;
    let k2_tokens = tokens_of(&report, "p#0");
    let k1_tokens = tokens_of(&report, "p#1");
    assert_eq!((k2_tokens, k1_tokens), (32, 16), "{report}");
    reordered.signal("TERM");
    reordered.wait_exit(Duration::from_secs(5));
}

#[tokio::test]
async fn an_unwritable_database_fails_no_request_and_recovers() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("usage.db");
    let router = RouterProcess::start(&state_config(&up, &format!("sqlite://{}", db.display())));
    assert_eq!(chat(&router, hello("g")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(usage(&router).await["store"]["healthy"], true);

    // The data directory disappears (a failed or unmounted disk).
    let moved = dir.path().join("data.moved");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    for _ in 0..5 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let start = Instant::now();
    loop {
        let report = usage(&router).await;
        if report["store"]["healthy"] == false {
            assert!(report["store"]["last_error"].is_string());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "store failure never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The disk comes back: pending usage is written, and survives a restart.
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    let start = Instant::now();
    while usage(&router).await["store"]["healthy"] == false {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "store never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let router = router.restart();
    let report = usage(&router).await;
    assert_eq!(
        tokens_of(&report, "p#0") + tokens_of(&report, "p#1"),
        6 * 16
    );
}

#[tokio::test]
async fn two_instances_on_one_redis_balance_keys_jointly() {
    let redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let cfg = state_config(&up, &redis.url());
    let a = RouterProcess::start(&cfg);
    let b = RouterProcess::start(&cfg);
    for i in 0..12 {
        let router = if i % 2 == 0 { &a } else { &b };
        assert_eq!(chat(router, hello("g")).await.status(), 200);
        // Shared usage is visible to the other instance within a sync tick.
        tokio::time::sleep(Duration::from_millis(450)).await;
    }
    let counts = up.count_by_key();
    assert_eq!((counts["k1"], counts["k2"]), (6, 6), "{counts:?}");
    // Each instance reports the joint totals.
    let report = usage(&a).await;
    assert_eq!(
        tokens_of(&report, "p#0") + tokens_of(&report, "p#1"),
        12 * 16
    );
    assert_eq!(report["store"]["kind"], "redis");
}

#[tokio::test]
async fn redis_dying_mid_run_fails_no_request_and_reconciles() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&state_config(&up, &redis.url()));
    for _ in 0..4 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited on Redis"
        );
    }
    let start = Instant::now();
    while usage(&router).await["store"]["healthy"] == true {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "Redis outage never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis returns empty: the router re-sends everything it counted.
    redis.restart();
    let client = ::redis::Client::open(redis.url()).unwrap();
    let start = Instant::now();
    loop {
        let mut con = client.get_connection().unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("llm-router:usage:*")
            .query(&mut con)
            .unwrap();
        let mut total = 0u64;
        for k in keys {
            let t: Option<u64> = ::redis::cmd("HGET")
                .arg(&k)
                .arg("tokens")
                .query(&mut con)
                .unwrap();
            total += t.unwrap_or(0);
        }
        if total == 10 * 16 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never reconciled: redis has {total}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(usage(&router).await["store"]["healthy"], true);
}

#[tokio::test]
async fn admin_routes_need_the_admin_key_never_the_client_key() {
    let up = MockUpstream::start().await;
    let router = RouterProcess::start(&state_config(&up, "memory"));
    for (method, path) in [("GET", "/admin/usage"), ("POST", "/admin/usage/reset")] {
        let call = |key: Option<&str>| {
            let mut req = client().request(method.parse().unwrap(), router.url(path));
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            req.send()
        };
        assert_eq!(
            call(None).await.unwrap().status(),
            401,
            "{path} without a key"
        );
        assert_eq!(
            call(Some("nope")).await.unwrap().status(),
            401,
            "{path} with a wrong key"
        );
        assert_eq!(
            call(Some(CLIENT_KEY)).await.unwrap().status(),
            403,
            "{path} with the client key"
        );
        assert_eq!(
            call(Some(ADMIN_KEY)).await.unwrap().status(),
            200,
            "{path} with the admin key"
        );
    }
    // Without admin_key, the admin API does not exist.
    let cfg = config(
        &[("p", &up.base_url(), &["k1"])],
        &[(1, "p", "m")],
        "store: memory",
    );
    let router = RouterProcess::start(&cfg);
    assert_eq!(
        admin_get(&router, "/admin/usage", CLIENT_KEY)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn admin_usage_shows_keys_by_alias_and_reset_clears_one_key() {
    let up = MockUpstream::start().await;
    let secret_key = "sk-admin-view-secret-42";
    let cfg = config(
        &[("p", &up.base_url(), &[secret_key, "k2"])],
        &[(1, "p", "m")],
        &format!("admin_key: {ADMIN_KEY}\nstore: memory"),
    );
    let router = RouterProcess::start(&cfg);
    up.set(
        secret_key,
        Behavior::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![("retry-after", "60".into())],
        },
    );
    for _ in 0..4 {
        assert_eq!(chat(&router, hello("g")).await.status(), 200);
    }
    let r = admin_get(&router, "/admin/usage", ADMIN_KEY).await;
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(secret_key),
        "a key leaked into the admin API"
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    let row0 = report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "p#0")
        .unwrap()
        .clone();
    assert_eq!(row0["errors"], 1);
    assert_eq!(row0["health"]["cooling_down"], true);
    assert_eq!(row0["health"]["reason"], "rate_limited");
    assert_eq!(tokens_of(&report, "p#1"), 4 * 16);
    assert_eq!(row0["fingerprint"].as_str().unwrap().len(), 12);

    let r = client()
        .post(router.url("/admin/usage/reset"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({"key": "p#1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["reset"], 1);
    let report = usage(&router).await;
    assert_eq!(tokens_of(&report, "p#1"), 0);
    assert_eq!(
        report["usage"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "p#0")
            .unwrap()["errors"],
        1
    );
}
