use super::*;

const GO_EXAMPLE_YAML: &str = r#"
port: 8080
api_key: "your-api-key-here"

groups:
  - name: "gpt-4-turbo"
    models:
      - weight: 1
        provider: "openai"
        name: "gpt-4-turbo-preview"
      - weight: 2
        provider: "openai"
        name: "gpt-4"

  - name: "fast-model"
    models:
      - weight: 1
        provider: "openai"
        name: "gpt-3.5-turbo"
      - weight: 2
        provider: "openrouter"
        name: "openai/gpt-3.5-turbo"

providers:
  - name: "openai"
    base_url: "https://api.openai.com/v1"
    api_keys:
      - "sk-your-openai-key-here"

  - name: "openrouter"
    base_url: "https://openrouter.ai/api/v1"
    api_keys:
      - "sk-your-openrouter-key-here"
"#;

#[test]
fn the_go_routers_example_config_loads_unchanged() {
    let c = Config::parse(GO_EXAMPLE_YAML, Format::Yaml).unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(c.port, 8080);
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[1].models[1].name, "openai/gpt-3.5-turbo");
    assert_eq!(
        c.providers[1].api_keys[0].expose(),
        "sk-your-openrouter-key-here"
    );
    assert_eq!(c.error_penalty, 0);
    assert_eq!(c.retries.max_attempts, 3);
}

#[test]
fn json_config_with_penalties_loads() {
    let json = r#"{"port": 9000, "api_key": "k", "error_penalty": 500, "request_penalty": 10,
        "groups": [{"name": "g", "models": [{"weight": 0, "provider": "p", "name": "m"}]}],
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1", "api_keys": ["a", "b"]}]}"#;
    let c = Config::parse(json, Format::Json).unwrap();
    assert!(c.validate().is_empty());
    assert_eq!((c.error_penalty, c.request_penalty), (500, 10));
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let yaml = "api_key: k\nproviders:\n  - name: p\n    base_url: http://x\n    api_keys: [a]\n    apikey: typo\n";
    let err = Config::parse(yaml, Format::Yaml).unwrap_err();
    assert!(err.message.contains("apikey"), "{err}");
    assert_eq!(err.path, "providers[0].apikey");
    assert_eq!(err.line, Some(6), "{err}");

    let json = r#"{"api_key": "k", "groups": [{"name": "g", "modles": []}]}"#;
    let err = Config::parse(json, Format::Json).unwrap_err();
    assert!(err.message.contains("modles"), "{err}");
    assert!(err.path.starts_with("groups[0]"), "{err}");
}

#[test]
fn validation_lists_every_problem() {
    let yaml = r#"
api_key: k
groups:
  - name: a
    models:
      - {weight: -1, provider: nope, name: m}
  - name: a
    models: []
providers:
  - {name: p, base_url: "ftp://x", api_keys: []}
  - {name: p, base_url: "not a url", api_keys: ["k"]}
"#;
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    let problems: Vec<String> = c.validate().iter().map(ToString::to_string).collect();
    let all = problems.join("\n");
    for expected in [
        "groups[0].models[0].weight: must be 0 or more",
        "groups[0].models[0].provider: unknown provider \"nope\"",
        "groups[1].name: duplicate group name",
        "groups[1].models: group \"a\" has no models",
        "providers[0].base_url",
        "providers[0].api_keys: must list at least one key",
        "providers[1].name: duplicate provider name",
        "providers[1].base_url",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn missing_api_key_is_a_problem() {
    let c = Config::parse("groups: []", Format::Yaml).unwrap();
    assert!(c.validate().iter().any(|p| p.path == "api_key"));
}

#[test]
fn env_references_are_expanded_and_missing_ones_named() {
    // SAFETY: tests in this module use variable names unique to them.
    unsafe { std::env::set_var("LLM_ROUTER_TEST_KEY_A", "sk-from-env") };
    let yaml = "api_key: \"${LLM_ROUTER_TEST_KEY_A}\"\n";
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    assert_eq!(c.api_key.unwrap().expose(), "sk-from-env");

    let yaml = "api_key: k\nproviders:\n  - name: p\n    base_url: http://x\n    api_keys: [\"${LLM_ROUTER_TEST_UNSET_B}\"]\n";
    let err = Config::parse(yaml, Format::Yaml).unwrap_err();
    assert!(err.message.contains("LLM_ROUTER_TEST_UNSET_B"), "{err}");
    assert_eq!(err.line, Some(5), "{err}");
}

#[test]
fn durations_parse_as_humantime() {
    let yaml = "api_key: k\ntimeouts: {connect: 2s, first_byte: 1m}\n";
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    assert_eq!(c.timeouts.connect, Duration::from_secs(2));
    assert_eq!(c.timeouts.first_byte, Duration::from_secs(60));
    assert_eq!(c.timeouts.total, Duration::from_secs(1800));
    let err = Config::parse("timeouts: {idle: soon}\n", Format::Yaml).unwrap_err();
    assert!(err.message.contains("invalid duration"), "{err}");
}

#[test]
fn format_follows_the_extension() {
    assert_eq!(Format::of(Path::new("a/config.YML")), Some(Format::Yaml));
    assert_eq!(Format::of(Path::new("config.json")), Some(Format::Json));
    assert_eq!(Format::of(Path::new("config.toml")), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(5), ..Default::default() })]

    /// The loader never panics, whatever the file holds.
    #[test]
    fn arbitrary_config_text_never_panics(text in "\\PC{0,200}") {
        for format in [Format::Yaml, Format::Json] {
            if let Ok(c) = Config::parse(&text, format) {
                let _ = c.validate();
            }
        }
    }

    /// Structured but wrong configs: still no panic, and problems have paths.
    #[test]
    fn mutated_configs_report_problems_with_paths(weight in -5i64..5, url in "[a-z:/.]{0,20}", keys in 0usize..3) {
        let keys: Vec<String> = (0..keys).map(|i| format!("\"k{i}\"")).collect();
        let yaml = format!("api_key: k\ngroups:\n  - name: g\n    models: [{{weight: {weight}, provider: p, name: m}}]\nproviders:\n  - {{name: p, base_url: \"{url}\", api_keys: [{}]}}\n", keys.join(","));
        if let Ok(c) = Config::parse(&yaml, Format::Yaml) {
            for p in c.validate() {
                proptest::prop_assert!(!p.path.is_empty(), "{p}");
            }
        }
    }
}

#[test]
fn new_keys_are_validated_with_paths() {
    let yaml = r#"
api_key: k
admin_key: k
aliases: {g: g, other: missing}
client_keys:
  - {name: a, key: k}
  - {name: a, key: c2, groups: [nope], rpm: 0}
groups:
  - name: g
    endpoints: [chat, images]
    models: [{weight: 1, provider: p, name: m}]
providers:
  - name: p
    base_url: http://x
    api_keys: [pk]
    headers: {Authorization: "x", "Bad Header": "v"}
    drop_params: [model]
store: "mongodb://x"
usage_window: "sometimes"
admin_listen: "not an address"
"#;
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    let all: Vec<String> = c.validate().iter().map(ToString::to_string).collect();
    let all = all.join("\n");
    for expected in [
        "admin_key: must differ from api_key",
        "aliases.g: is already a group name",
        "aliases.other: points to unknown group",
        "client_keys[0].key: must differ",
        "client_keys[1].name: duplicate client name",
        "client_keys[1].groups[0]: unknown group",
        "client_keys[1].rpm: must be at least 1",
        "groups[0].endpoints[1]: unknown endpoint \"images\"",
        "providers[0].headers.Authorization: is set by the router",
        "providers[0].headers.Bad Header: is not a valid header name",
        "providers[0].drop_params[0]: \"model\" cannot be dropped",
        "store: must be",
        "usage_window:",
        "admin_listen:",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn client_keys_alone_are_enough_to_authenticate() {
    let yaml = "client_keys: [{name: a, key: ck}]\n";
    let c = Config::parse(yaml, Format::Yaml).unwrap();
    assert!(c.validate().iter().all(|p| p.path != "api_key"));
}

#[test]
fn the_tracing_section_loads_and_is_validated() {
    let base = "api_key: k\ngroups: []\nproviders: []\n";
    let ok = format!(
        "{base}tracing:\n  otlp_endpoint: http://collector:4318\n  protocol: grpc\n  sample_ratio: 0.5\n  service_name: edge\n  headers: {{x-api-key: secret-collector-key}}\n  capture_content: true\n"
    );
    let c = Config::parse(&ok, Format::Yaml).unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let t = c.tracing.as_ref().unwrap();
    assert_eq!(t.otlp_endpoint.as_deref(), Some("http://collector:4318"));
    assert!(t.capture_content);
    // The collector's key stays a secret.
    assert!(!format!("{c:?}").contains("secret-collector-key"));
    let bad = format!("{base}tracing:\n  otlp_endpoint: collector\n  sample_ratio: 2\n");
    let c = Config::parse(&bad, Format::Yaml).unwrap();
    let all: Vec<String> = c.validate().iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|p| p.starts_with("tracing: ") && p.contains("http://")),
        "{all:?}"
    );
    let unknown = format!("{base}tracing:\n  endpoint: http://c:4318\n");
    assert!(Config::parse(&unknown, Format::Yaml).is_err());
}
