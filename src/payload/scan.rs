//! Byte-level JSON scanning: skipping whole values without parsing them
//! (request shaping splices around them), and finding one top-level member
//! of an object without parsing the rest.
//!
//! A response body's `usage` is all the router reads of it; deserializing
//! the whole body to get there (every string validated, every value walked
//! through serde) cost more than the rest of the hot path's JSON work
//! together. This scan jumps over strings with `memchr` and only counts
//! brackets elsewhere; the one value it returns is then parsed properly.

use std::ops::Range;

/// The raw bytes of `key`'s value in the top-level object `body`. `None`
/// when `body` is not a well-formed object or the key is absent.
pub fn top_level_value<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let members = object_members(body, skip_ws(body, 0))?;
    members
        .iter()
        .find(|m| key_is(body, m, key))
        .map(|m| &body[m.value.clone()])
}

/// The raw bytes of `key`'s value when it is the *last* member of the
/// top-level object `body`, found from the end: the members before it are
/// not walked. OpenAI, and most providers that copy it, put `usage` last in
/// a whole answer, after the text. `None` when it is not last, or its key is
/// written with escapes; [`top_level_value`] then finds it wherever it is.
///
/// The key is the last `"key"` in the body, preceded by `{` or `,` (so its
/// first quote opens a string: an escaped quote follows a backslash) and
/// followed by `:`; after its value comes the `}` that ends the body. In a
/// well-formed body that `}` closes the top-level object, so the member is
/// one of its own, not a nested object's.
pub fn last_member_value<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    if body.get(skip_ws(body, 0)) != Some(&b'{') {
        return None;
    }
    // Quote by quote from the end (no substring searcher to build): where
    // `key` is last, only its value's few quotes come after it.
    let key = key.as_bytes();
    let open = memchr::memrchr_iter(b'"', body)
        .find(|&q| body[q + 1..].starts_with(key) && body.get(q + 1 + key.len()) == Some(&b'"'))?;
    let close = open + 1 + key.len();
    let before = body[..open].iter().rposition(|b| !is_ws(*b))?;
    if !matches!(body[before], b'{' | b',') {
        return None;
    }
    let value = value_after_key(body, close + 1)?;
    let last = skip_ws(body, value.end);
    (body.get(last) == Some(&b'}') && skip_ws(body, last + 1) == body.len()).then(|| &body[value])
}

/// `key_end` just past a member's key; the span of its value, after the
/// colon.
fn value_after_key(b: &[u8], key_end: usize) -> Option<Range<usize>> {
    let colon = skip_ws(b, key_end);
    if b.get(colon) != Some(&b':') {
        return None;
    }
    let start = skip_ws(b, colon + 1);
    Some(start..value_end(b, start)?)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

pub(super) fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// `i` at an opening quote; the index just past the closing quote.
pub(super) fn string_end(body: &[u8], i: usize) -> Option<usize> {
    let mut i = i + 1;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[j] == b'"' {
            return Some(j + 1);
        }
        i = j + 2; // the backslash and the character it escapes
    }
}

/// `i` at a value's first byte; the index just past the value.
pub(super) fn value_end(body: &[u8], i: usize) -> Option<usize> {
    match body.get(i)? {
        b'"' => string_end(body, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match body.get(j)? {
                    b'"' => {
                        j = string_end(body, j)?;
                        continue;
                    }
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

/// One `"key": value` member: where it starts (the key's quote), the key's
/// raw bytes (between the quotes), and the value.
pub(super) struct Member {
    pub start: usize,
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// Whether the member's key is `name` (decoding escapes if it has any).
pub(super) fn key_is(body: &[u8], m: &Member, name: &str) -> bool {
    let raw = &body[m.key.clone()];
    if raw.contains(&b'\\') {
        serde_json::from_slice::<String>(&body[m.key.start - 1..m.key.end + 1])
            .is_ok_and(|k| k == name)
    } else {
        raw == name.as_bytes()
    }
}

/// The members of the object whose `{` is at `open`.
pub(super) fn object_members(b: &[u8], open: usize) -> Option<Vec<Member>> {
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i)?;
        let value = value_after_key(b, key_end)?;
        let end = value.end;
        out.push(Member {
            start: i,
            key: i + 1..key_end - 1,
            value,
        });
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// The items of the array whose `[` is at `open`.
pub(super) fn array_items(b: &[u8], open: usize) -> Option<Vec<Range<usize>>> {
    let mut out = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let end = value_end(b, i)?;
        out.push(i..end);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return Some(out),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find<'a>(body: &'a str, key: &str) -> Option<&'a str> {
        top_level_value(body.as_bytes(), key).map(|v| std::str::from_utf8(v).unwrap())
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
        // Keys are compared as JSON strings, escapes decoded.
        assert_eq!(find(r#"{"us\u0061ge":7,"b":1}"#, "usage"), Some("7"));
        assert_eq!(find(r#"{"\"usage\"":7}"#, "usage"), None);
    }

    fn last<'a>(body: &'a str, key: &str) -> Option<&'a str> {
        last_member_value(body.as_bytes(), key).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn the_last_member_is_found_from_the_end() {
        let body = "{\"choices\":[{\"usage\":1}],\"usage\" :\n {\"total_tokens\":3} }\n";
        assert_eq!(last(body, "usage"), Some(r#"{"total_tokens":3}"#));
        assert_eq!(last(r#"{"usage":7}"#, "usage"), Some("7"));
        assert_eq!(
            last(r#" {"a":1, "usage":[1,"}"]}"#, "usage"),
            Some(r#"[1,"}"]"#)
        );
    }

    #[test]
    fn a_member_that_is_not_the_top_levels_last_is_left_to_the_full_scan() {
        for body in [
            // Not last.
            r#"{"usage":{"a":1},"id":"x"}"#,
            // Last of a nested object.
            r#"{"a":{"usage":1}}"#,
            r#"{"a":[{"usage":1}]}"#,
            // The last "usage" is a value, or inside a string.
            r#"{"usage":1,"type":"usage"}"#,
            r#"{"usage":1,"t":"a,\"usage\":2}"}"#,
            r#"{"say \"usage":{"prompt_tokens":5}}"#,
            // Its key is spelled with an escape.
            r#"{"us\u0061ge":1}"#,
            // Not an object, or no closing brace, or something after it.
            r#"["usage":1}"#,
            r#"{"usage":1"#,
            r#"{"usage":1} x"#,
            r#"{"usage": }"#,
            r#"{"usage" 1}"#,
            r#"{"usages":1}"#,
            r#"{"xusage":1}"#,
            r#""usage":1}"#,
        ] {
            assert_eq!(last(body, "usage"), None, "{body}");
        }
    }

    #[test]
    fn a_member_with_no_value_has_none() {
        assert_eq!(find(r#"{"a":,"b":1}"#, "a"), None);
        assert_eq!(find(r#"{"a": }"#, "a"), None);
        assert_eq!(value_end(b"x,", 1), None);
        assert_eq!(value_end(b"x1,", 1), Some(2));
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
        crate::payload::nested_json::nested(leaf, "[a-z\"]{1,6}", 4)
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
                let raw = top_level_value(&body, key).expect("present");
                let parsed: serde_json::Value = serde_json::from_slice(raw).unwrap();
                prop_assert_eq!(&parsed, value);
            }
            prop_assert_eq!(top_level_value(&body, "absent-key"), None);
        }

        /// Put last, the member is found from the end, and is exactly what
        /// the full scan finds; put anywhere, the end-first lookup never
        /// disagrees with the full scan, it only gives up.
        #[test]
        fn the_end_first_lookup_agrees_with_the_full_scan(
            members in proptest::collection::btree_map("[a-z]{1,4}", json_value(), 0..5),
            usage in json_value(),
            pretty in any::<bool>(),
        ) {
            let mut fields: Vec<(String, serde_json::Value)> = members.into_iter().collect();
            fields.retain(|(k, _)| k != "usage");
            let sep = if pretty { ",\n  " } else { "," };
            let render = |fields: &[(String, serde_json::Value)]| {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("\"{k}\": {v}"))
                    .collect();
                format!("{{{}}}", inner.join(sep))
            };
            let mut last_usage = fields.clone();
            last_usage.push(("usage".into(), usage.clone()));
            let body = render(&last_usage);
            let raw = last_member_value(body.as_bytes(), "usage").expect("usage is last");
            prop_assert_eq!(Some(raw), top_level_value(body.as_bytes(), "usage"));
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(raw).unwrap(), usage.clone());

            let mut first_usage = vec![("usage".to_string(), usage)];
            first_usage.extend(fields.iter().cloned());
            let body = render(&first_usage);
            if let Some(raw) = last_member_value(body.as_bytes(), "usage") {
                prop_assert_eq!(Some(raw), top_level_value(body.as_bytes(), "usage"));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = top_level_value(&bytes, "usage");
            let _ = last_member_value(&bytes, "usage");
        }
    }
}
