//! Finding one top-level member of a JSON object without parsing the rest.
//!
//! A response body's `usage` is all the router reads of it; deserializing
//! the whole body to get there (every string validated, every value walked
//! through serde) cost more than the rest of the hot path's JSON work
//! together. This scan jumps over strings with `memchr` and only counts
//! brackets elsewhere; the one value it returns is then parsed properly.

/// The raw bytes of `key`'s value in the top-level object `body`. `None`
/// when `body` is not an object, the key is absent, or the scan meets
/// malformed JSON before finding it. Keys are compared as written: a key
/// spelled with escapes does not match.
pub fn top_level_value<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        if body.get(i) != Some(&b'"') {
            return None; // `}` (absent) or malformed
        }
        let key_start = i + 1;
        let key_end = string_end(body, key_start)?;
        i = skip_ws(body, key_end + 1);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(body, i + 1);
        let value_end = value_end(body, value_start)?;
        if &body[key_start..key_end] == key {
            return Some(&body[value_start..value_end]);
        }
        i = skip_ws(body, value_end);
        if body.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The index of the quote closing a string whose content starts at `i`.
fn string_end(body: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[j] == b'"' {
            return Some(j);
        }
        i = j + 2; // the backslash and the character it escapes
    }
}

/// The index just past the value starting at `i`.
fn value_end(body: &[u8], i: usize) -> Option<usize> {
    match body.get(i)? {
        b'"' => Some(string_end(body, i + 1)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match body.get(j)? {
                    b'"' => j = string_end(body, j + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let rest = &body[i..];
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (len > 0).then_some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find<'a>(body: &'a str, key: &str) -> Option<&'a str> {
        top_level_value(body.as_bytes(), key.as_bytes()).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn finds_top_level_members_only() {
        let body = r#" { "choices": [{"usage": 1, "t": "a \"usage\": 2 }"}], "x": {"usage": 3},
            "usage" : {"prompt_tokens": 5, "n": [1, {"a": "]"}]} , "z": null }"#;
        assert_eq!(
            find(body, "usage"),
            Some(r#"{"prompt_tokens": 5, "n": [1, {"a": "]"}]}"#)
        );
        assert_eq!(find(body, "z"), Some("null"));
        assert_eq!(find(body, "missing"), None);
        assert_eq!(find(r#"{"a":"\\"}"#, "a"), Some(r#""\\""#));
        assert_eq!(find(r#"{"a":-1.5e3}"#, "a"), Some("-1.5e3"));
    }

    #[test]
    fn malformed_or_non_objects_give_none() {
        for body in [
            "",
            "[]",
            r#""usage""#,
            "{",
            r#"{"usage""#,
            r#"{"usage":"#,
            r#"{"usage":{"a":1}"#.trim_end_matches('}'),
            r#"{"a":1 "usage":2}"#,
            r#"{"a":"\"#,
        ] {
            assert_eq!(find(body, "usage"), None, "{body}");
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            "\\PC{0,12}".prop_map(Into::into),
            "[\"\\\\{}\\[\\],:]{0,6}".prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
                proptest::collection::btree_map("[a-z\"]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() })]

        /// Whatever the object holds, and however it is formatted, the scan
        /// returns exactly the member's value, as serde reads it.
        #[test]
        fn agrees_with_serde(
            members in proptest::collection::btree_map("[a-z]{1,4}", json_value(), 0..6),
            pretty in any::<bool>(),
        ) {
            let object: serde_json::Map<_, _> = members.clone().into_iter().collect();
            let body = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            for (key, value) in &members {
                let raw = top_level_value(&body, key.as_bytes()).expect("present");
                let parsed: serde_json::Value = serde_json::from_slice(raw).unwrap();
                prop_assert_eq!(&parsed, value);
            }
            prop_assert_eq!(top_level_value(&body, b"absent-key"), None);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = top_level_value(&bytes, b"usage");
        }
    }
}
