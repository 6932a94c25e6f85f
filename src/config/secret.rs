//! Secrets from the config: provider API keys and client keys.
//!
//! A [`Secret`] never prints itself: `Debug` and `Display` show a redaction.
//! The only way to read the value is [`Secret::expose`], which keeps every
//! place that touches a raw key greppable. Anything that needs to *name* a
//! key (logs, metrics, the store, the dashboard) uses its [`fingerprint`]
//! or an alias such as `openai#0`.
//!
//! [`fingerprint`]: Secret::fingerprint

use std::fmt;

use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret string from the config, already `${ENV}`-expanded.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Call it only to put the key on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A stable, non-reversible name for this key: 12 hex digits of a
    /// domain-separated SHA-256. Stable across restarts and config reorders,
    /// so the usage store can key history by it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"llm-router/key-fingerprint/v1\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        let mut out = String::with_capacity(12);
        for byte in &digest[..6] {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Compares in constant time, without revealing the length of either
    /// side: both are hashed to 32 bytes first, then compared with `subtle`.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(candidate);
        ours.ct_eq(&theirs).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::env::expanded_string(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("sk-very"));
        assert!(!format!("{s}").contains("sk-very"));
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        let a = Secret::new("sk-a").fingerprint();
        assert_eq!(a, Secret::new("sk-a").fingerprint());
        assert_ne!(a, Secret::new("sk-b").fingerprint());
        assert_eq!(a.len(), 12);
    }

    #[test]
    fn matches_only_the_exact_value() {
        let s = Secret::new("key-123");
        assert!(s.matches(b"key-123"));
        assert!(!s.matches(b"key-12"));
        assert!(!s.matches(b"key-1234"));
        assert!(!s.matches(b""));
    }
}
