use super::*;
use proptest::prelude::*;

fn rewrite(body: &str, model: &str) -> String {
    let p = parse(body.as_bytes()).unwrap();
    let json = serde_json::to_vec(model).unwrap();
    String::from_utf8(p.rewrite(body.as_bytes(), &json).to_vec()).unwrap()
}

#[test]
fn only_the_model_changes_for_non_streams() {
    let body = r#"{ "model" : "group",  "messages":[{"role":"user","content":"hi"}], "x_vendor": {"a": 1.50e3}, "tools": [] }"#;
    assert_eq!(
        rewrite(body, "gpt-4o"),
        body.replace(r#""group""#, r#""gpt-4o""#)
    );
}

#[test]
fn model_names_are_json_escaped_when_spliced() {
    let out = rewrite(r#"{"model":"g"}"#, "a\"b");
    assert_eq!(out, r#"{"model":"a\"b"}"#);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "a\"b");
}

#[test]
fn streams_get_include_usage_added() {
    assert_eq!(
        rewrite(r#"{"model":"g","stream":true}"#, "m"),
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        rewrite(r#"{"model":"g","stream":true,"stream_options":null}"#, "m"),
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        rewrite(r#"{"stream_options":{},"model":"g","stream":true}"#, "m"),
        r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#
    );
    assert_eq!(
        rewrite(
            r#"{"stream_options":{"x":1},"model":"g","stream":true}"#,
            "m"
        ),
        r#"{"stream_options":{"include_usage":true,"x":1},"model":"m","stream":true}"#
    );
    assert_eq!(
        rewrite(
            r#"{"model":"g","stream":true,"stream_options":{"include_usage":false}}"#,
            "m"
        ),
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
    );
}

#[test]
fn a_client_that_asked_for_usage_keeps_its_body() {
    let body = r#"{"model":"g","stream":true,"stream_options":{"include_usage":true}}"#;
    let p = parse(body.as_bytes()).unwrap();
    assert!(p.include_usage && !p.router_requested_usage());
    assert_eq!(rewrite(body, "g"), body);
}

#[test]
fn bad_bodies_are_rejected_with_the_param() {
    let err = |b: &str| parse(b.as_bytes()).unwrap_err();
    assert!(err("{not json").message.contains("could not parse"));
    // An unterminated string is a parse error, whatever it holds.
    assert!(
        err(r#"{"model":"g","x":"[[{"#)
            .message
            .contains("could not parse")
    );
    assert!(err("[1,2]").message.contains("could not parse"));
    assert_eq!(err(r#"{"messages":[]}"#).param, Some("model"));
    assert_eq!(err(r#"{"model":42}"#).param, Some("model"));
    assert_eq!(err(r#"{"model":"g","stream":"yes"}"#).param, Some("stream"));
    assert_eq!(
        err(r#"{"model":"g","stream":true,"stream_options":[]}"#).param,
        Some("stream_options")
    );
    assert!(
        err(r#"{"model":"a","model":"b"}"#)
            .message
            .contains("duplicate key `model`")
    );
    assert!(
        err(r#"{"model":"a","stream":true,"stream":false}"#)
            .message
            .contains("duplicate")
    );
    assert_eq!(err("{\"model\":\"a\\r\\nb\"}").param, Some("model"));
    assert_eq!(err("{\"model\":\"a\\u0000\"}").param, Some("model"));
    assert!(
        err(r#"{"model":"g"} trailing"#)
            .message
            .contains("could not parse")
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"model":"g","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(
        parse(deep.as_bytes())
            .unwrap_err()
            .message
            .contains("nests deeper")
    );
    // Brackets inside strings do not count.
    let fine = format!(r#"{{"model":"g","x":"{}\\\"[["}}"#, "[".repeat(1000));
    assert!(parse(fine.as_bytes()).is_ok());
    let ok = format!(
        r#"{{"model":"g","x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(parse(ok.as_bytes()).is_ok());
}

#[test]
fn model_names_are_read_as_json_strings() {
    let model = |b: &str| parse(b.as_bytes()).map(|p| p.model);
    assert_eq!(model(r#"{"model":"gpt-4o"}"#).unwrap(), "gpt-4o");
    assert_eq!(model(r#"{"model":"été/模型"}"#).unwrap(), "été/模型");
    // Escapes are decoded, whichever character they stand for.
    assert_eq!(model(r#"{"model":"a\u0041\/b\"c"}"#).unwrap(), "aA/b\"c");
    assert_eq!(model(r#"{"model":"\\"}"#).unwrap(), "\\");
    assert_eq!(model(r#"{"model":""}"#).unwrap(), "");
    // A raw C1 control character is valid JSON but no model name.
    assert_eq!(
        model("{\"model\":\"a\u{85}b\"}").unwrap_err().param,
        Some("model")
    );
    for not_a_string in ["null", "true", "[\"g\"]", "{\"a\":\"g\"}"] {
        let err = model(&format!(r#"{{"model":{not_a_string}}}"#)).unwrap_err();
        assert_eq!(err.message, "model must be a string", "{not_a_string}");
    }
}

/// How deep `v` nests arrays and objects (a scalar is 0).
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn nested_json() -> impl Strategy<Value = serde_json::Value> {
    // Strings full of what a careless scan would count or stop at.
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(Into::into),
        "[\\[\\]{}\"\\\\a]{0,8}".prop_map(Into::into),
    ];
    super::nested_json::nested(leaf, "[a-z\\[{\"]{1,4}", 8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(13), ..ProptestConfig::default() })]

    /// The nesting scan counts exactly the brackets the JSON parser sees,
    /// none of those inside strings, escaped quotes and all.
    #[test]
    fn the_nesting_scan_agrees_with_the_parser(value in nested_json(), pretty in any::<bool>()) {
        let body = if pretty { serde_json::to_vec_pretty(&value) } else { serde_json::to_vec(&value) }.unwrap();
        let d = depth(&value);
        prop_assert!(!too_deep(&body, d));
        if d > 0 {
            prop_assert!(too_deep(&body, d - 1));
        }
    }
}

#[test]
fn escaped_keys_still_match() {
    let p = parse(br#"{"mod\u0065l":"g"}"#).unwrap();
    assert_eq!(p.model, "g");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

    /// Any JSON object with a string model: the rewrite changes `model`
    /// (and stream_options for streams) and preserves every other field.
    #[test]
    fn rewrite_preserves_all_other_fields(
        extra in proptest::collection::btree_map("[a-z_]{1,8}", any::<i64>(), 0..6),
        stream in any::<bool>(),
        model in "\\PC{0,16}",
    ) {
        let mut obj = serde_json::Map::new();
        for (k, v) in &extra {
            if k != "model" && k != "stream" && k != "stream_options" { obj.insert(k.clone(), (*v).into()); }
        }
        obj.insert("model".into(), "group".into());
        obj.insert("stream".into(), stream.into());
        let body = serde_json::to_vec(&obj).unwrap();
        let p = parse(&body).unwrap();
        let out = p.rewrite(&body, &serde_json::to_vec(&model).unwrap());
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(v.remove("model"), Some(model.into()));
        if stream {
            prop_assert_eq!(v.remove("stream_options"), Some(serde_json::json!({"include_usage": true})));
        }
        obj.remove("model");
        prop_assert_eq!(v, obj);
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(p) = parse(&bytes) { let _ = p.rewrite(&bytes, b"\"m\""); }
    }
}

#[test]
fn paths_under_messages_are_anthropics() {
    for path in [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/messages/batches",
    ] {
        assert_eq!(Api::of_path(path), Api::Anthropic, "{path}");
    }
    for path in ["/v1/messagesx", "/v1/chat/completions", "/v1/models", "/"] {
        assert_eq!(Api::of_path(path), Api::OpenAi, "{path}");
    }
}
