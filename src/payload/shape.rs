//! Per-provider request shaping: rename roles a provider rejects (such as
//! `developer` → `system`) and drop parameters it does not accept.
//!
//! It runs only for providers that configure it, on a body already known to
//! be valid JSON, and it splices: members that stay keep their exact bytes.
//! The scanner below walks the top-level object and the `messages` (chat) or
//! `input` (Responses API) array; it never recurses further.

use std::ops::Range;

use bytes::Bytes;

use super::scan::{Member, array_items, key_is, object_members, skip_ws};

/// What a provider wants changed in request bodies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shaping {
    pub role_rewrites: Vec<(String, String)>,
    pub drop_params: Vec<String>,
}

impl Shaping {
    pub fn is_empty(&self) -> bool {
        self.role_rewrites.is_empty() && self.drop_params.is_empty()
    }

    /// The shaped body, or `None` when nothing had to change.
    pub fn apply(&self, body: &[u8]) -> Option<Bytes> {
        if self.is_empty() {
            return None;
        }
        let mut out: Option<Vec<u8>> = None;
        if !self.role_rewrites.is_empty() {
            out = self.rewrite_roles(body);
        }
        if !self.drop_params.is_empty() {
            let current = out.as_deref().unwrap_or(body);
            if let Some(dropped) = self.drop(current) {
                out = Some(dropped);
            }
        }
        out.map(Bytes::from)
    }

    fn rewrite_roles(&self, body: &[u8]) -> Option<Vec<u8>> {
        let top = object_members(body, skip_ws(body, 0))?;
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        for m in top
            .iter()
            .filter(|m| key_is(body, m, "messages") || key_is(body, m, "input"))
        {
            if body.get(m.value.start) != Some(&b'[') {
                continue;
            }
            for item in array_items(body, m.value.start)? {
                if body.get(item.start) != Some(&b'{') {
                    continue;
                }
                for field in object_members(body, item.start)? {
                    if !key_is(body, &field, "role") {
                        continue;
                    }
                    let Ok(role) = serde_json::from_slice::<String>(&body[field.value.clone()])
                    else {
                        continue;
                    };
                    if let Some((_, to)) = self.role_rewrites.iter().find(|(from, _)| *from == role)
                    {
                        edits.push((field.value.clone(), serde_json::to_vec(to).ok()?));
                    }
                }
            }
        }
        if edits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(body.len());
        let mut at = 0;
        for (range, replacement) in edits {
            out.extend_from_slice(&body[at..range.start]);
            out.extend_from_slice(&replacement);
            at = range.end;
        }
        out.extend_from_slice(&body[at..]);
        Some(out)
    }

    fn drop(&self, body: &[u8]) -> Option<Vec<u8>> {
        let open = skip_ws(body, 0);
        let members = object_members(body, open)?;
        let kept: Vec<&Member> = members
            .iter()
            .filter(|m| !self.drop_params.iter().any(|p| key_is(body, m, p)))
            .collect();
        if kept.len() == members.len() {
            return None;
        }
        let close = members.last().map_or(open + 1, |m| m.value.end);
        let close = close + body[close..].iter().position(|&b| b == b'}')?;
        let mut out = Vec::with_capacity(body.len());
        out.extend_from_slice(&body[..=open]);
        for (i, m) in kept.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&body[m.start..m.value.end]);
        }
        out.extend_from_slice(&body[close..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping(roles: &[(&str, &str)], drop: &[&str]) -> Shaping {
        Shaping {
            role_rewrites: roles
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            drop_params: drop.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn apply(s: &Shaping, body: &str) -> String {
        String::from_utf8(
            s.apply(body.as_bytes())
                .map_or(body.as_bytes().to_vec(), |b| b.to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn roles_are_rewritten_and_everything_else_kept() {
        let s = shaping(&[("developer", "system")], &[]);
        let body = r#"{"model":"m", "messages":[{"role":"developer","content":"be {brief} \"ok\""},{"content":"hi","role":"user"}],"x":1.50}"#;
        assert_eq!(
            apply(&s, body),
            body.replacen(r#""role":"developer""#, r#""role":"system""#, 1)
        );
        // Responses API input items too.
        let body = r#"{"input":[{"role":"developer","content":"x"}]}"#;
        assert_eq!(
            apply(&s, body),
            r#"{"input":[{"role":"system","content":"x"}]}"#
        );
    }

    #[test]
    fn dropped_params_disappear_wherever_they_are() {
        let s = shaping(&[], &["logprobs", "seed"]);
        assert_eq!(
            apply(&s, r#"{"seed":1,"model":"m","logprobs":true}"#),
            r#"{"model":"m"}"#
        );
        assert_eq!(
            apply(&s, r#"{ "model" : "m" , "seed" : [1,{"a":"}"}] }"#),
            r#"{"model" : "m"}"#
        );
        assert_eq!(apply(&s, r#"{"model":"m"}"#), r#"{"model":"m"}"#);
        let out = apply(&s, r#"{"a":"seed","seed":2,"b":{"seed":3}}"#);
        assert_eq!(
            out, r#"{"a":"seed","b":{"seed":3}}"#,
            "only top-level keys are dropped"
        );
    }

    #[test]
    fn nothing_to_do_returns_none() {
        assert!(shaping(&[], &[]).apply(b"{}").is_none());
        assert!(
            shaping(&[("developer", "system")], &[])
                .apply(br#"{"messages":[{"role":"user"}]}"#)
                .is_none()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(3), ..Default::default() })]
        /// Shaped output is always valid JSON, without the dropped keys.
        #[test]
        fn shaped_bodies_stay_valid_json(keys in proptest::collection::btree_map("[a-d]{1,2}", "[a-z\\\\\"{}\\[\\],:]{0,6}", 0..6)) {
            let mut obj = serde_json::Map::new();
            for (k, v) in keys { obj.insert(k, serde_json::Value::String(v)); }
            obj.insert("messages".into(), serde_json::json!([{"role": "developer", "content": "}"}]));
            let body = serde_json::to_vec(&obj).unwrap();
            let s = shaping(&[("developer", "system")], &["a", "b"]);
            let out = s.apply(&body).map_or(body.clone(), |b| b.to_vec());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert!(v.get("a").is_none() && v.get("b").is_none());
            proptest::prop_assert_eq!(&v["messages"][0]["role"], "system");
        }
    }
}
