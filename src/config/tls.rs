//! `tls:` and `admin_tls:`: certificate files for the listeners (see the
//! `tls` module, which reads them). Relative paths are read beside the
//! config file.

use std::path::Path;

use serde::Deserialize;

use super::env;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    #[serde(deserialize_with = "env::expanded_string")]
    pub cert: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[serde(deserialize_with = "env::expanded_string")]
    pub key: String,
    /// CA certificates (PEM) that client certificates must chain to: set,
    /// every client must present one (mTLS).
    #[serde(default, deserialize_with = "env::expanded_opt_string")]
    pub client_ca: Option<String>,
}

impl TlsConfig {
    /// The same, with relative paths made relative to `dir`.
    pub fn resolved(&self, dir: &Path) -> Self {
        let at = |p: &str| dir.join(p).to_string_lossy().into_owned();
        Self {
            cert: at(&self.cert),
            key: at(&self.key),
            client_ca: self.client_ca.as_deref().map(at),
        }
    }

    /// Problems visible without reading the files.
    pub(super) fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, value) in [("cert", &self.cert), ("key", &self.key)] {
            if value.trim().is_empty() {
                out.push((format!("{at}.{field}"), "must name a file".into()));
            }
        }
        if self
            .client_ca
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            out.push((format!("{at}.client_ca"), "must name a file".into()));
        }
        out
    }
}
