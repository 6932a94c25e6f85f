//! Arbitrary JSON for the property tests of the byte scanners: `leaf`
//! values nested in arrays and objects up to `depth` levels, with keys
//! drawn from the regex `keys`. Each test brings the leaves and keys that
//! can trip its own scanner (quotes, backslashes, brackets).

use proptest::prelude::*;
use serde_json::Value;

pub fn nested(
    leaf: impl Strategy<Value = Value> + 'static,
    keys: &'static str,
    depth: u32,
) -> impl Strategy<Value = Value> {
    leaf.prop_recursive(depth, depth * 8, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
            proptest::collection::btree_map(keys, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
