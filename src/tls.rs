//! TLS for the listeners: a certificate and key read from PEM files,
//! optionally a CA that client certificates must chain to (mTLS).
//!
//! The files are read again when asked ([`Tls::reload`], on SIGHUP and when
//! they change on disk, see `tasks`): the new certificate serves every
//! connection accepted from then on, and connections already open keep the
//! one they started with. A reload that fails (a key that does not match
//! its certificate, say, while a rotation is half written) changes nothing:
//! the old certificate keeps serving, and the next change is tried again.
//!
//! Each connection loads the current `ServerConfig` once, at accept: no
//! lock, and nothing per request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// A certificate this close to its end is reported by `check` and logged.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Where a listener's certificate, key and client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// What a certificate says about itself, for `check` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// The time left before it expires (zero once it has).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// Whether it expires within [`EXPIRY_WARNING`] of `now`.
    pub fn expires_soon(&self, now: SystemTime) -> bool {
        self.remaining(now) < EXPIRY_WARNING
    }
}

/// Reads and checks `files` as of `now`: present and readable, PEM that
/// parses, a key that matches the certificate, a certificate in its
/// validity period, and a client CA that holds a certificate. The result
/// is the server config to serve with, and what the certificate says.
pub fn load(files: &TlsFiles, now: SystemTime) -> Result<(ServerConfig, CertInfo), String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let cert_pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", files.cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: holds no certificate", files.cert.display()));
    };
    let info = cert_info(leaf).map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if info.not_after <= now {
        return Err(format!(
            "{}: the certificate expired at {}",
            files.cert.display(),
            humantime::format_rfc3339_seconds(info.not_after)
        ));
    }
    if info.not_before > now {
        return Err(format!(
            "{}: the certificate is not valid before {}",
            files.cert.display(),
            humantime::format_rfc3339_seconds(info.not_before)
        ));
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = read(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: holds no CA certificate", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and {} do not make a certificate and its key: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, info))
}

fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_before: time(validity.not_before),
        not_after: time(validity.not_after),
    })
}

/// A digest of each file's content (`None`: unreadable): what "changed on
/// disk" compares. The files are small; reading them once a second costs
/// nothing, and unlike modification times, a rewrite within the same
/// second is still seen.
type Stamp = Vec<Option<[u8; 32]>>;

fn stamp(files: &TlsFiles) -> Stamp {
    use sha2::Digest;
    files
        .paths()
        .map(|p| {
            std::fs::read(p)
                .ok()
                .map(|bytes| sha2::Sha256::digest(bytes).into())
        })
        .collect()
}

/// A listener's TLS: the config connections are accepted with, swapped
/// whole on reload.
pub struct Tls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    info: ArcSwap<CertInfo>,
    /// The files as last read (successfully or not).
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Reads the files; an error says what is wrong with which.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let seen = stamp(&files);
        let (config, info) = load(&files, SystemTime::now())?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(config),
            info: ArcSwap::from_pointee(info),
            seen: Mutex::new(seen),
        })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// What the serving certificate says.
    pub fn info(&self) -> Arc<CertInfo> {
        self.info.load_full()
    }

    /// Whether the files changed since they were last read.
    pub fn changed_on_disk(&self) -> bool {
        let now = stamp(&self.files);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reads the files again. On success, new connections get the new
    /// certificate; on failure nothing changes (the error says why).
    pub fn reload(&self) -> Result<Arc<CertInfo>, String> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = stamp(&self.files);
        let (config, info) = load(&self.files, SystemTime::now())?;
        self.current.store(Arc::new(config));
        let info = Arc::new(info);
        self.info.store(info.clone());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::Issuer<'static, rcgen::KeyPair>,
        ca_pem: String,
    }

    impl Pki {
        fn new() -> Self {
            let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "test ca");
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Self {
                dir: tempfile::tempdir().unwrap(),
                ca_pem: cert.pem(),
                ca: rcgen::Issuer::new(params, key),
            }
        }

        /// A leaf for localhost valid from `from` to `to` (seconds from now).
        fn leaf(&self, name: &str, from: i64, to: i64) -> TlsFiles {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now + time::Duration::seconds(from);
            params.not_after = now + time::Duration::seconds(to);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca).unwrap();
            let cert_path = self.dir.path().join(format!("{name}.crt"));
            let key_path = self.dir.path().join(format!("{name}.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            TlsFiles {
                cert: cert_path,
                key: key_path,
                client_ca: None,
            }
        }
    }

    const DAY: i64 = 24 * 3600;

    #[test]
    fn a_valid_pair_loads_with_http2_offered() {
        let pki = Pki::new();
        let files = pki.leaf("a", -DAY, 90 * DAY);
        let (config, info) = load(&files, SystemTime::now()).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(!info.expires_soon(SystemTime::now()));
        let days = info.remaining(SystemTime::now()).as_secs() / DAY as u64;
        assert!((88..=90).contains(&days), "{days}");
    }

    #[test]
    fn every_broken_file_is_named_with_its_problem() {
        let pki = Pki::new();
        let good = pki.leaf("good", -DAY, 90 * DAY);
        let other = pki.leaf("other", -DAY, 90 * DAY);
        let err = |files: &TlsFiles| load(files, SystemTime::now()).unwrap_err();

        let missing = TlsFiles {
            cert: pki.dir.path().join("nope.crt"),
            ..good.clone()
        };
        assert!(err(&missing).contains("cannot read") && err(&missing).contains("nope.crt"));

        let mismatched = TlsFiles {
            key: other.key.clone(),
            ..good.clone()
        };
        assert!(
            err(&mismatched).contains("do not make a certificate and its key"),
            "{}",
            err(&mismatched)
        );

        let garbage = pki.dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let not_pem = TlsFiles {
            cert: garbage.clone(),
            ..good.clone()
        };
        assert!(
            err(&not_pem).contains("holds no certificate"),
            "{}",
            err(&not_pem)
        );
        let not_key = TlsFiles {
            key: garbage.clone(),
            ..good.clone()
        };
        assert!(
            err(&not_key).contains("not a PEM private key"),
            "{}",
            err(&not_key)
        );
        let no_ca = TlsFiles {
            client_ca: Some(garbage),
            ..good.clone()
        };
        assert!(
            err(&no_ca).contains("holds no CA certificate"),
            "{}",
            err(&no_ca)
        );

        let expired = pki.leaf("expired", -10 * DAY, -DAY);
        assert!(err(&expired).contains("expired"), "{}", err(&expired));
        let future = pki.leaf("future", DAY, 10 * DAY);
        assert!(
            err(&future).contains("not valid before"),
            "{}",
            err(&future)
        );
    }

    #[test]
    fn a_certificate_near_its_end_is_flagged() {
        let pki = Pki::new();
        let files = pki.leaf("soon", -DAY, 3 * DAY);
        let (_, info) = load(&files, SystemTime::now()).unwrap();
        assert!(info.expires_soon(SystemTime::now()));
    }

    #[test]
    fn a_client_ca_loads() {
        let pki = Pki::new();
        let mut files = pki.leaf("m", -DAY, 90 * DAY);
        let ca = pki.dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        files.client_ca = Some(ca);
        // Loads; that it refuses clients without a certificate is
        // tested against the real binary (tests/tls.rs).
        assert!(load(&files, SystemTime::now()).is_ok());
    }

    #[test]
    fn a_failed_reload_keeps_the_old_certificate() {
        let pki = Pki::new();
        let files = pki.leaf("r", -DAY, 90 * DAY);
        let tls = Tls::load(files.clone()).unwrap();
        let before = tls.info();
        assert!(!tls.changed_on_disk());
        // A rotation half written: a new certificate, the old key.
        let next = pki.leaf("next", -DAY, 30 * DAY);
        std::fs::copy(&next.cert, &files.cert).unwrap();
        assert!(tls.changed_on_disk());
        assert!(tls.reload().is_err());
        assert_eq!(tls.info(), before);
        assert!(!tls.changed_on_disk(), "this state of the files was tried");
        // The key lands: the new certificate serves.
        std::fs::copy(&next.key, &files.key).unwrap();
        assert!(tls.changed_on_disk());
        let info = tls.reload().unwrap();
        assert_ne!(*info, *before);
        assert_eq!(tls.info(), info);
    }
}
