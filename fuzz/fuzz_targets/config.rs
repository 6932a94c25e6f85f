//! The config loader: never panics on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_router::config::{Config, Format};

fuzz_target!(|text: &str| {
    for format in [Format::Yaml, Format::Json] {
        if let Ok(c) = Config::parse(text, format) {
            let _ = c.validate();
        }
    }
});
